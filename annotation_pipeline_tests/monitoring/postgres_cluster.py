"""A throwaway PostgreSQL cluster for tests that stop and start the server.

Restarting the machine's shared Postgres would break every other test and session using it,
so a test that needs a restart starts its own cluster: ``initdb`` into a temporary folder,
``pg_ctl`` on a free loopback port, removed afterwards. The server binaries come from the
distribution's packages (``/usr/lib/postgresql/<version>/bin``). ``initdb`` refuses to run
as root: as root, the cluster is run by the ``postgres`` system account.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from dagster._core.run_coordinator import QueuedRunCoordinator


def server_binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One cluster in its own folder; ``start``/``stop`` as often as a test likes."""

    def __init__(self, folder: Path, port: int | None = None, bin_dir: Path | None = None):
        self.folder, self.data = Path(folder), Path(folder) / "data"
        self.port = port or _free_port()
        self.bin = bin_dir or server_binaries()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @classmethod
    def create(cls) -> PostgresCluster:
        folder = Path(tempfile.mkdtemp(prefix="ap-pg-"))
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(folder, account.pw_uid, account.pw_gid)
        cluster = cls(folder)
        cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return cluster

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def remove(self) -> None:
        if self.is_running():
            self.stop("immediate")
        if not os.environ.get("AP_KEEP_PG"):
            shutil.rmtree(self.folder, ignore_errors=True)

    def instance_yaml(self, run_coordinator: str = "") -> str:
        return ("telemetry:\n  enabled: false\n"
                "storage:\n  postgres:\n"
                f"    postgres_url: postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres\n" + run_coordinator)


class StopsPostgresAfterTheFirstRun(QueuedRunCoordinator):
    """Queues runs as Dagster's QueuedRunCoordinator does; right after the first run is queued,
    it stops the instance's Postgres server (``data_dir``): the outage falls exactly between a
    sensor tick creating its run and storing its cursor, the moment that could lose a cursor or
    double a campaign. Configured in the instance's YAML, as any run coordinator is."""

    def __init__(self, data_dir: str, inst_data=None):
        super().__init__(inst_data=inst_data)
        self._data_dir = data_dir

    @classmethod
    def config_type(cls):
        return {"data_dir": str}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def submit_run(self, context):
        run = super().submit_run(context)
        done = Path(self._data_dir).parent / "stopped-after-first-run"
        if not done.exists():
            done.touch()
            folder = Path(self._data_dir).parent
            PostgresCluster(folder, port=0).stop("immediate")
        return run

    @staticmethod
    def yaml(cluster: PostgresCluster) -> str:
        return (f"run_coordinator:\n  module: {__name__}\n  class: StopsPostgresAfterTheFirstRun\n"
                f"  config:\n    data_dir: {cluster.data}\n")
