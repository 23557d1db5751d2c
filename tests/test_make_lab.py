"""`make lab` (the README's first command) seeds the learner's workspace from notebooks/ and
starts JupyterLab on it from .venv; a learner's answers in the workspace are never overwritten."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(), reason="needs the .venv that `make` sets up")
def test_make_lab_serves_a_workspace_seeded_from_the_student_notebooks_keeping_the_learners_answers(tmp_path):
    port, token = _free_port(), "workbook-test"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    answered = workspace / "00_setup.ipynb"
    answered.write_text('{"learner": "my answers"}')
    arguments = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    environment = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path), LAB_ARGS=arguments, WORKSPACE=str(workspace))
    server = subprocess.Popen(["make", "--no-print-directory", "lab"], cwd=ROOT, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        listing = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=2) as reply:
                    listing = json.load(reply)
                break
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "JupyterLab did not answer within 60 s"
        served = {entry["name"] for entry in listing["content"]}
        assert {path.name for path in (ROOT / "notebooks").glob("*.ipynb")} <= served
        assert answered.read_text() == '{"learner": "my answers"}'
        assert ((workspace / "01_interoperability.ipynb").read_bytes()
                == (ROOT / "notebooks" / "01_interoperability.ipynb").read_bytes())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}", timeout=5) as reply:
            kernelspecs = json.load(reply)
        assert kernelspecs["default"] == "python3"
        # the kernel JupyterLab offers is .venv's own, not one registered globally
        listed = subprocess.run([str(ROOT / ".venv" / "bin" / "jupyter"), "kernelspec", "list", "--json"],
                                capture_output=True, text=True, check=True)
        assert json.loads(listed.stdout)["kernelspecs"]["python3"]["resource_dir"].startswith(str(ROOT / ".venv"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
