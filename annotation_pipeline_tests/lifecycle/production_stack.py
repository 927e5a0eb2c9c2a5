"""The production stack for the ``production_e2e`` tests: real Postgres and RabbitMQ, a loopback
S3 server (moto), two Celery workers; each piece started fresh and torn down by its fixture.

A missing service fails the test with its name and how to start it (deselect with
``-m "not production_e2e"``), so a green run always means the stack was really there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "annotation-program"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
RABBITMQ = ("127.0.0.1", 5672)

SERVICES = {
    "PostgreSQL": ((PG["host"], PG["port"]), "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"),
    "RabbitMQ": (RABBITMQ, "rabbitmq-server -detached"),
}


def require_services() -> None:
    for name, ((host, port), start) in SERVICES.items():
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError:
            pytest.fail(f"production_e2e needs {name} on {host}:{port}, which is not answering: start it with "
                        f"`{start}` (or .ci/run), or deselect these tests with -m \"not production_e2e\"",
                        pytrace=False)


def _psql(sql: str, db: str = PG["dbname"]) -> None:
    import psycopg2

    conn = psycopg2.connect(host=PG["host"], port=PG["port"], user=PG["user"], dbname=db)
    conn.autocommit = True  # CREATE/DROP DATABASE refuse to run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def fresh_database() -> str:
    name = f"ap_e2e_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_vhost() -> str:
    """A RabbitMQ virtual host of our own, so no other Celery worker on the machine takes our steps."""
    vhost = f"ap-e2e-{uuid.uuid4().hex[:8]}"
    for args in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
    return vhost


def drop_vhost(vhost: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


@dataclass
class Workers:
    """Celery worker processes started by ``dagster-celery worker start``, one process group each."""

    env: dict
    config_yaml: Path
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        # the README's command; --concurrency 1: one step at a time, so two workers are two processes
        cmd = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(self.config_yaml),
               "-n", f"{name}@%h", "--", "--concurrency", "1", "--pool", "prefork"]
        self.procs[name] = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_ready(self, names: list[str], timeout_s: float = 120) -> None:
        from celery import Celery

        app = Celery(broker=self.env["ANNOTATION_PIPELINE_CELERY_BROKER"])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=2.0) or []
            up = {host.split("@")[0] for reply in replies for host in reply}
            if set(names) <= up:
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"celery worker {name} exited: see {self.log_dir / (name + '.log')}")
        raise TimeoutError(f"celery workers {names} did not answer a ping within {timeout_s:.0f}s; "
                           f"see the logs in {self.log_dir}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)  # the group: dagster-celery, celery's main process and its pool child
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)


def stack_env(base: dict, *, root: Path, home: Path, s3_endpoint: str, broker: str) -> dict:
    return {
        **base,
        "ANNOTATION_PIPELINE_PROFILE": "production", "ANNOTATION_PIPELINE_ROOT": str(root),
        "ANNOTATION_PIPELINE_S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL": s3_endpoint,
        "ANNOTATION_PIPELINE_SIMULATE_VENDOR": "1", "ANNOTATION_PIPELINE_CELERY_BROKER": broker,
        "ANNOTATION_PIPELINE_PSEUDONYM_SECRET": "e2e-test-key-for-generated-sample-data-only-0123",
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
        "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO),  # the checkout under test, not an installed copy
        "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",  # dagster-celery starts `celery` from the PATH
        "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "1",
    }


def write_instance(home: Path, database: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "storage:\n  postgres:\n"
        f"    postgres_url: postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{database}\n")


# The run is launched from its own process, as the daemon would: the code location is loaded
# there from the environment (profile production), not from this test process's imports.
LAUNCH_SCRIPT = """
import json, sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

partition, parent = sys.argv[1], sys.argv[2] or None
extra_tags = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
job = ReconstructableRepository.for_module("annotation_pipeline.definitions", "defs",
                                           working_directory=".").get_reconstructable_job(sys.argv[3])
with dg.DagsterInstance.get() as instance:
    options = dg.ReexecutionOptions.from_failure(parent, instance) if parent else None
    tags = {**({"dagster/partition": partition} if partition else {}), **extra_tags}
    # a re-execution names its partition too: execute_job does not carry the parent's tags over
    result = dg.execute_job(job, instance, tags=tags, reexecution_options=options)
    print(json.dumps({"run_id": result.run_id, "success": result.success}))
"""


def launch(env: dict, job: str, partition: str = "", from_failure_of: str = "", timeout_s: float = 600):
    """Run a job of the production code location; returns (run_id, success)."""
    out = subprocess.run([sys.executable, "-c", LAUNCH_SCRIPT, partition, from_failure_of, job], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=timeout_s)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"launching {job} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["run_id"], result["success"]


def step_workers(instance, run_id: str) -> dict[str, str]:
    """step key -> the Celery worker that executed it, from the run's engine events."""
    placed = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.is_engine_event or not event.step_key:
            continue
        meta = event.engine_event_data.metadata or {}
        if "Celery worker" in meta:
            placed[event.step_key] = meta["Celery worker"].value
    return placed
