"""`make lab` (the README's first command) starts JupyterLab on notebooks/ from .venv."""

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
def test_make_lab_serves_the_student_notebooks(tmp_path):
    port, token = _free_port(), "workbook-test"
    arguments = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    environment = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path), LAB_ARGS=arguments)
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
