"""The Label Studio server of the ``label_studio`` tests, started by the tests themselves.

When the server does not answer, ``start_server`` runs ``.ci/label-studio start`` (the first
time it installs Label Studio 1.23.2 into its own venv, then starts it and waits), as the
production tests start their own Celery workers. Concurrent callers (pytest-xdist workers) are
serialized by the script's lock on ``LABEL_STUDIO_HOME/start.lock``: one installs and starts,
the others wait and find the server answering.

A server the tests started is left running: a later session reuses it at no cost (a cold start
is half a minute, a first install minutes), and under xdist no worker knows it is the last one
using it, so a worker's teardown could stop the server under another's tests.
``.ci/label-studio stop`` stops it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "label-studio"


def label_studio_home(env: dict | None = None) -> Path:
    """Where ``.ci/label-studio`` keeps its venv, data and logs (the script's own default)."""
    env = os.environ if env is None else env
    return Path(env.get("LABEL_STUDIO_HOME") or Path.home() / ".cache" / "annotation-pipeline" / "label-studio")


def start_server(env: dict | None = None, timeout_s: float = 1200) -> str | None:
    """Run ``.ci/label-studio start``; None once the server answers, else a one-line reason naming the log."""
    env = dict(os.environ if env is None else env)
    home = label_studio_home(env)
    home.mkdir(parents=True, exist_ok=True)
    log = home / "start.log"
    with log.open("ab") as out:
        try:
            done = subprocess.run(["bash", str(SCRIPT), "start"], stdout=out, stderr=subprocess.STDOUT,
                                  env=env, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return f"`.ci/label-studio start` did not finish within {timeout_s:.0f} s; see {log}"
    if done.returncode == 0:
        return None
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "no output"
    return f"`.ci/label-studio start` failed (exit {done.returncode}: {last}); see {log}"
