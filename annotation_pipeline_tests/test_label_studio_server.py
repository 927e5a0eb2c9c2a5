"""``.ci/label-studio start`` as the label_studio tests call it: once for concurrent callers, and
a one-line reason naming the log when it cannot start. A stand-in server (a static HTTP server
answering the two URLs the script polls) takes Label Studio's place, so these run without it."""

import os
import socket
import stat
import subprocess
import sys
import threading

from annotation_pipeline_tests.label_studio_server import SCRIPT, start_server

FAKE_SERVER = """#!/usr/bin/env bash
# stands in for `label-studio start ... -p PORT ...`: counts its starts, serves api/version and api/projects
while [ $# -gt 0 ]; do [ "$1" = -p ] && PORT=$2; shift; done
echo started >> "$(dirname "$0")/../../starts"
sleep 1  # a real server takes a while to answer: the second caller must wait, not start another
exec {python} -m http.server "$PORT" --bind 127.0.0.1 --directory "$(dirname "$0")/../../site"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home, port) -> dict:
    return {**os.environ, "LABEL_STUDIO_HOME": str(home), "LABEL_STUDIO_URL": f"http://127.0.0.1:{port}"}


def test_two_callers_at_once_start_one_server_and_both_get_it(tmp_path):
    home, port = tmp_path / "ls", _free_port()
    (home / "site" / "api").mkdir(parents=True)
    for name in ("version", "projects"):
        (home / "site" / "api" / name).write_text("{}")
    bin_dir = home / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in {"label-studio": FAKE_SERVER.format(python=sys.executable),
                       "python": "#!/bin/sh\nexit 0\n"}.items():  # "installed": the import check passes
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = _env(home, port)
    problems = []
    try:
        callers = [threading.Thread(target=lambda: problems.append(start_server(env, timeout_s=60))) for _ in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert problems == [None, None]
        assert (home / "starts").read_text().splitlines() == ["started"]
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, check=False)


def test_a_server_that_cannot_be_installed_fails_in_one_line_naming_the_log(tmp_path):
    home, port = tmp_path / "ls", _free_port()
    env = {**_env(home, port), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}  # as with no network: pip finds nothing
    problem = start_server(env, timeout_s=120)
    assert problem is not None and "\n" not in problem
    assert problem.startswith("`.ci/label-studio start` failed (exit 1") and problem.endswith(f"see {home / 'start.log'}")
    assert "installing Label Studio 1.23.2" in (home / "start.log").read_text()
