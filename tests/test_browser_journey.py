"""The learner's journey in a real browser: lab 00 in JupyterLab, driven through headless Chromium.

JupyterLab starts on a loopback port with a token, on a scratch copy of the workspace (autosave
writes outputs into the notebook it opens), with its runtime, config and data folders, IPython's
folder and the progress file all in the test's temporary folder: nothing global is touched. The
browser is Debian's Chromium driven by Playwright (never a browser download). The test runs every
cell, finds the rendered outcomes (Not attempted, then Correct after typing the answer into the
first exercise) and the checklist table, and saves screenshots for humans to look at (their paths
are printed: ``pytest -rP`` or ``-s`` shows them). JupyterLab and its kernels are shut down at the
end, also on failure.

Without Chromium or Playwright the test is skipped with the reason, except under ``CI=true``,
where that is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from labsupport import progress, web
from labsupport.exercises import lab00
from labsupport.exercises.lab13 import in_ci

ROOT = Path(__file__).resolve().parent.parent
JUPYTER = ROOT / ".venv" / "bin" / "jupyter"
NOTEBOOK = "00_setup.ipynb"
NEWS_TOAST = "Would you like to get notified about official Jupyter news?"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _processes_mentioning(text: str) -> list[int]:
    """Process ids whose command line contains ``text`` (the kernels name their connection file in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in command_line:
                found.append(int(entry.name))
    return found


class _JupyterLab:
    """``jupyter lab`` on ``workspace``, bound to 127.0.0.1 with a token, everything it writes under ``scratch``."""

    def __init__(self, workspace: Path, scratch: Path) -> None:
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.runtime_dir = scratch / "jupyter-runtime"
        self.progress_dir = scratch / "progress"
        self.log = scratch / "jupyterlab.log"
        environment = {name: value for name, value in os.environ.items()
                       if name not in {"LABSUPPORT_STRICT", "LABSUPPORT_EXPECT_SOLVED", "JUPYTER_PATH"}}
        environment.update(JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
                           JUPYTER_CONFIG_DIR=str(scratch / "jupyter-config"),
                           JUPYTER_DATA_DIR=str(scratch / "jupyter-data"), IPYTHONDIR=str(scratch / "ipython"),
                           LABSUPPORT_DATA_DIR=str(self.progress_dir))
        arguments = [str(JUPYTER), "lab", str(workspace), "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                     f"--IdentityProvider.token={self.token}"]
        if os.geteuid() == 0:
            arguments.append("--allow-root")  # JupyterLab refuses to start as root unless told; containers run as root
        with self.log.open("w") as log:
            self.process = subprocess.Popen(arguments, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_ready(self, timeout: float = 60) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                pytest.fail(f"JupyterLab exited with status {self.process.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.origin}/api/status?token={self.token}", timeout=2):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> list[int]:
        """Shut JupyterLab down (its API first, then signals to its process group) and any kernel still running.

        Kernels run in sessions of their own, so signalling JupyterLab's group does not reach them:
        the ones left are found by their connection file, which lies in this server's runtime folder.
        Returns the kernels that had to be killed (none when JupyterLab shut them down itself).
        """
        if self.process.poll() is None:
            request = urllib.request.Request(f"{self.origin}/api/shutdown?token={self.token}", method="POST")
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except OSError:
                pass
            for signal_number, grace in ((None, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                if signal_number is not None:
                    try:
                        os.killpg(self.process.pid, signal_number)
                    except ProcessLookupError:
                        pass
                try:
                    self.process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        left = _processes_mentioning(f"{self.runtime_dir}/")
        for pid in left:
            try:
                os.killpg(pid, signal.SIGKILL)  # a kernel leads its own process group
            except (ProcessLookupError, PermissionError):
                pass
        return left


@pytest.fixture
def browser_ready():
    try:
        chromium = web.find_chromium()
        if importlib.util.find_spec("playwright") is None:
            raise web.WebRuntimeError("the Python package playwright is not installed; run `make setup`.")
    except web.WebRuntimeError as error:
        if in_ci():
            pytest.fail(f"CI=true, and the browser journey cannot run: {error}")
        pytest.skip(f"the browser journey cannot run: {error}")
    if not JUPYTER.exists():
        pytest.skip("needs the .venv that `make` sets up")
    return chromium


@pytest.fixture
def jupyterlab(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy2(ROOT / "notebooks" / NOTEBOOK, workspace / NOTEBOOK)
    server = _JupyterLab(workspace, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _emoji_font_installed() -> bool:
    fc_list = shutil.which("fc-list")
    return bool(fc_list and subprocess.run([fc_list, ":charset=2705", "family"], capture_output=True,
                                           text=True).stdout.strip())


def _fonts_rendering(page, context, selector: str) -> list[str]:
    """The font families Chromium actually drew the first element matching ``selector`` with."""
    devtools = context.new_cdp_session(page)
    devtools.send("DOM.enable")
    devtools.send("CSS.enable")
    root = devtools.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = devtools.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    return [font["familyName"] for font in devtools.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]]


def test_a_learner_runs_lab_00_in_jupyterlab_and_sees_the_outcomes_and_the_checklist(browser_ready, jupyterlab,
                                                                                       tmp_path):
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    tracked = (ROOT / "notebooks" / NOTEBOOK).read_bytes()
    real_progress = progress.progress_path()  # the learner's own file, which must stay as it is
    real_progress_before = real_progress.read_bytes() if real_progress.exists() else None
    answer = lab00.CpuProvider.solution
    screenshots = []
    ready_after = jupyterlab.wait_until_ready()

    with tempfile.TemporaryDirectory(prefix="journey-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(browser_ready), headless=True, args=list(web.CHROMIUM_ARGUMENTS),
            viewport={"width": 1280, "height": 900}, timeout=60_000)
        try:
            requests = []
            context.on("request", lambda request: requests.append(request.url))
            page = context.new_page()
            page.set_default_timeout(60_000)

            def screenshot(name: str) -> None:
                path = tmp_path / f"{len(screenshots) + 1:02d}-{name}.png"
                page.screenshot(path=str(path))
                screenshots.append(path)

            page.goto(f"{jupyterlab.origin}/lab/tree/{NOTEBOOK}?token={jupyterlab.token}")
            page.locator(".jp-Notebook").wait_for()
            page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for()
            assert page.locator(".jp-Dialog").count() == 0, "no dialog (kernel choice or other) should ask anything"
            toast = page.get_by_text(NEWS_TOAST)
            try:
                toast.wait_for(timeout=5_000)
                toast_shown = True
            except Exception:  # Playwright's TimeoutError: this JupyterLab did not ask
                toast_shown = False
            if toast_shown:
                page.locator(".Toastify__toast").filter(has_text=NEWS_TOAST).get_by_role(
                    "button", name="No", exact=True).click()
                toast.wait_for(state="hidden")
            screenshot("opened")

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            checklist = page.locator(".jp-RenderedMarkdown table").filter(
                has=page.locator("th", has_text="self-assessment item"))
            checklist.wait_for()
            # name the exercise cell and the check cell after it, which keep their DOM nodes while edited and re-run
            page.locator(".jp-Notebook .jp-Cell").filter(
                has=page.locator(".cm-content", has_text="cpu_provider = ____")).evaluate(
                "cell => { cell.dataset.journey = 'exercise'; cell.nextElementSibling.dataset.journey = 'check'; }")
            exercise_cell, check_cell = page.locator("[data-journey=exercise]"), page.locator("[data-journey=check]")
            assert check_cell.locator(".cm-content").inner_text().strip() == "q1.check()"
            outcome = check_cell.locator(".jp-OutputArea-output")
            outcome.locator("strong", has_text="Not attempted").wait_for()
            assert "Not attempted (q1)" in outcome.inner_text()
            check_cell.scroll_into_view_if_needed()
            screenshot("all-cells-run")

            exercise_cell.locator(".cm-content").click()
            page.keyboard.press("Control+A")
            page.keyboard.type(answer)
            assert exercise_cell.locator(".cm-content").inner_text() == answer
            page.keyboard.press("Shift+Enter")  # runs the answer and moves to the check
            page.keyboard.press("Shift+Enter")  # runs q1.check()
            outcome.locator("strong", has_text="Correct").wait_for()
            assert "Correct (q1)" in outcome.inner_text() and "Incorrect" not in outcome.inner_text()
            check_cell.scroll_into_view_if_needed()
            screenshot("correct")
            fonts = _fonts_rendering(page, context, "[data-journey=check] .jp-OutputArea-output p")
            if _emoji_font_installed() or in_ci():  # without fonts-noto-color-emoji, every emoji is an empty box
                assert any("Emoji" in family for family in fonts), f"the ✅ was drawn with {fonts}, no emoji font"

            checklist.scroll_into_view_if_needed()
            assert checklist.locator("tbody tr").count() == len(progress.checklist_status({}))
            assert "not yet" in checklist.inner_text()
            screenshot("checklist")
        finally:
            context.close()

    stopped_at = time.monotonic()
    killed_kernels = jupyterlab.stop()
    assert killed_kernels == [], "JupyterLab should have shut its kernel down itself"
    assert _processes_mentioning(f"{jupyterlab.runtime_dir}/") == []
    print(f"JupyterLab ready after {ready_after:.1f} s; news toast shown: {toast_shown}; the outcome drawn with "
          f"{', '.join(dict.fromkeys(fonts))}; journey {stopped_at - started:.1f} s, "
          f"shut down in {time.monotonic() - stopped_at:.1f} s")
    print("screenshots:\n  " + "\n  ".join(str(path) for path in screenshots))

    assert requests and all(url.startswith(jupyterlab.origin + "/") for url in requests), \
        sorted({urlsplit(url).netloc for url in requests})
    # asking for news or updates would make the server fetch from the internet
    assert not [url for url in requests if urlsplit(url).path in {"/lab/api/news", "/lab/api/update"}]
    assert "00_setup.CpuProvider" in (jupyterlab.progress_dir / "progress.json").read_text()
    assert (real_progress.read_bytes() if real_progress.exists() else None) == real_progress_before
    assert (ROOT / "notebooks" / NOTEBOOK).read_bytes() == tracked
    assert all(path.stat().st_size > 10_000 for path in screenshots)
