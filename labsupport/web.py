"""The same model in a web browser: onnxruntime-web (WebAssembly) in headless Chromium, driven from Python.

Introduced in lab 15 (the capstone): the fourth runtime after Python, C++
and Node.js. ``python -m labsupport web setup`` installs the npm package ``onnxruntime-web`` once
into ``cache_dir()/npm`` (with ``npm install --ignore-scripts``, like lab 13's onnxruntime-node);
at lab time nothing is downloaded.

How a run works (:func:`run_in_browser`, or :func:`open_browser` for several runs in one browser):

* A loopback HTTP server (a thread, always stopped) serves one origin, ``http://127.0.0.1:<port>``:
  the page ``web_src/index.html`` with its script ``web_src/run_model.js`` (read them: they are
  short), the package's ``dist/`` folder under ``/ort/``, and the model under ``/models/``.
* Playwright drives the system's Chromium (never a browser download) headless, with a fresh
  profile and background networking off. Every request the page makes passes a guard: one that
  is not for the loopback server is blocked, and the run fails naming it. Nothing is fetched
  from anywhere else.
* The page loads ``ort.min.js`` and sets ``ort.env.wasm.wasmPaths = "/ort/"``, an *absolute*
  path. A relative one fails, and in two different ways, because onnxruntime-web resolves its
  two files against two different bases: ``"ort/"`` makes the ``.mjs`` module a bare specifier
  that the browser refuses to resolve; ``"./"`` finds the ``.mjs`` beside ``ort.min.js`` but
  then fetches the ``.wasm`` beside the *page*, which is not there.
* Tensors travel as base64 of their little-endian bytes, so every value arrives exactly. The
  WebAssembly backend runs on one thread: more need ``SharedArrayBuffer``, which only a
  cross-origin-isolated page has.

onnxruntime-web trails the Python wheel (npm's newest is 1.30; the course pins onnxruntime 1.32),
and the newest IR version and opset it loads trail too: :func:`version_skew` measures both.
"""

from __future__ import annotations

import base64
import concurrent.futures
import importlib.metadata as metadata
import importlib.util
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np

from labsupport.native import cache_dir
from labsupport.node import SETUP_COMMAND as NODE_SETUP_COMMAND
from labsupport.node import NodeRuntimeError, install_npm_package, mixed_types_model, npm_package

__all__ = [
    "BROWSER_PACKAGES",
    "CHROMIUM_ARGUMENTS",
    "CHROMIUM_VARIABLE",
    "ORT_WEB_PACKAGE",
    "ORT_WEB_VERSION",
    "PAGE_FOLDER",
    "SETUP_COMMAND",
    "WASM_PATHS",
    "VersionSupport",
    "WebBrowser",
    "WebRun",
    "WebRuntimeError",
    "check_prerequisites",
    "check_web_runtime",
    "find_chromium",
    "install_ort_web",
    "open_browser",
    "ort_web_dist",
    "run_in_browser",
    "version_skew",
]

ORT_WEB_PACKAGE = "onnxruntime-web"
ORT_WEB_VERSION = "1.30.0"  # npm's newest when lab 15 was written, as for onnxruntime-node: there is no 1.31 or 1.32
SETUP_COMMAND = "python -m labsupport web setup"
BROWSER_PACKAGES = "chromium fonts-noto-color-emoji"  # Debian's browser, and the font its emoji need
CHROMIUM_VARIABLE = "LABSUPPORT_CHROMIUM"
PAGE_FOLDER = Path(__file__).parent / "web_src"
WASM_PATHS = "/ort/"  # absolute: a relative path is resolved against two different bases (see the module docstring)

# Chromium with nothing running in the background (no sync, no component or safe-browsing updates, no QUIC
# probes): without them Chromium tries the network on its own. The browser journey test launches with them too.
CHROMIUM_ARGUMENTS = ("--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
                  ".wasm": "application/wasm", ".onnx": "application/octet-stream"}
# NumPy dtype → onnxruntime-web's tensor type (run_model.js turns the bytes into the matching typed array)
_WEB_TYPES = {"float32": "float32", "float64": "float64", "float16": "float16", "int8": "int8", "uint8": "uint8",
              "int16": "int16", "uint16": "uint16", "int32": "int32", "uint32": "uint32", "int64": "int64",
              "uint64": "uint64", "bool": "bool"}
# onnxruntime-web's errors: what failed and a code, the C++ source line and function that raised, the message
_ERROR_PREFIX = re.compile(r"^(?:Can't create a session|failed to call \w+\(\))\. ERROR_CODE: \d+, ERROR_MESSAGE: ")
_SOURCE_LOCATION = re.compile(r"\S*/onnxruntime/\S+:\d+ [^()]*\(.*?\)\s+(?=[A-Z])")
_EMSCRIPTEN_NOTE = re.compile(r"\.? Build with -sASSERTIONS for more info")
# ONNX Runtime's paragraph on an opset newer than it supports, reduced to its two facts
_NEWER_OPSET = re.compile(r"ONNX Runtime only \*guarantees\*.*?(Opset \d+ is under development).*?"
                          r"(Current official support for domain \S+ is till opset \d+)")


class WebRuntimeError(RuntimeError):
    """Chromium, Playwright or onnxruntime-web is missing, or the browser could not run the model; one line."""


class _ModelRefused(WebRuntimeError):
    """onnxruntime-web started but refused this model or its inputs (what :func:`version_skew` probes for)."""


@dataclass(frozen=True)
class WebRun:
    """What :func:`run_in_browser` returns: the outputs by name, what computed them, and what the page fetched."""

    outputs: dict[str, np.ndarray]
    ort_web_version: str
    browser_version: str
    backend: str            # the execution provider the page asked for and got: "wasm"
    wasm_file: str          # the WebAssembly build onnxruntime-web chose, e.g. ort-wasm-simd-threaded.jsep.wasm
    threads: int
    session_ms: float       # creating the session: fetching and parsing the model (and, first, starting WASM)
    run_ms: float           # one session.run, timed in the page
    requests: tuple[str, ...]  # every URL the browser requested for this run (the page's too, when it was loaded)


@dataclass(frozen=True)
class VersionSupport:
    """The newest IR version and default-domain opset a runtime loads (for ``onnx``: what it writes by default)."""

    name: str
    version: str
    max_ir_version: int
    max_opset: int


# ---------------------------------------------------------------------------
# Prerequisites: the npm package, Chromium, Playwright (nothing is downloaded here)
# ---------------------------------------------------------------------------

def ort_web_dist() -> Path:
    """The ``dist/`` folder of the installed onnxruntime-web (``ort.min.js`` and its ``.mjs``/``.wasm`` files).

    Raises:
        WebRuntimeError: the package is not in the cache; the message names the setup command.
    """
    try:
        package = npm_package(ORT_WEB_PACKAGE, ORT_WEB_VERSION)
    except NodeRuntimeError:
        raise WebRuntimeError(f"the npm package {ORT_WEB_PACKAGE} {ORT_WEB_VERSION} is not installed in "
                              f"{cache_dir() / 'npm'}; run `{SETUP_COMMAND}` once (it runs "
                              "`npm install --ignore-scripts`).") from None
    if not (package / "dist" / "ort.min.js").is_file():
        raise WebRuntimeError(f"{package} has no dist/ort.min.js: the install is incomplete; delete "
                              f"{package.parent.parent} and run `{SETUP_COMMAND}` again.")
    return package / "dist"


def install_ort_web() -> tuple[Path, bool]:
    """Install onnxruntime-web into the cache with ``npm install --ignore-scripts`` (once).

    Returns the package's folder and whether it was installed now (False: it already was).

    Raises:
        WebRuntimeError: npm is missing or the install failed (npm's first error line is given).
    """
    try:
        return install_npm_package(ORT_WEB_PACKAGE, ORT_WEB_VERSION)
    except NodeRuntimeError as error:
        raise WebRuntimeError(str(error).replace(NODE_SETUP_COMMAND, SETUP_COMMAND)) from None


def find_chromium() -> Path:
    """The Chromium executable Playwright drives: ``$LABSUPPORT_CHROMIUM``, else ``chromium`` on PATH.

    Raises:
        WebRuntimeError: none is found; the message names the Debian packages that install it.
    """
    named = os.environ.get(CHROMIUM_VARIABLE, "").strip()
    if named:
        path = Path(named).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise WebRuntimeError(f"{CHROMIUM_VARIABLE}={named} is not an executable file; point it at a Chromium "
                                  "or Google Chrome executable, or unset it to use `chromium` from PATH.")
        return path
    for command in ("chromium", "chromium-browser"):
        found = shutil.which(command)
        if found:
            return Path(found)
    raise WebRuntimeError(f"Chromium is not installed (no `chromium` on PATH): install it with "
                          f"`sudo apt-get install {BROWSER_PACKAGES}`, or set {CHROMIUM_VARIABLE} to a Chromium or "
                          "Google Chrome executable.")


def _require_playwright() -> str:
    if importlib.util.find_spec("playwright") is None:
        raise WebRuntimeError("the Python package playwright is not installed in this environment; run `make setup` "
                              "(requirements-lock.txt pins it). Do not run `playwright install`: the course drives "
                              "the system's Chromium.")
    return metadata.version("playwright")


def check_prerequisites() -> str:
    """Check, without starting anything, that a browser run can work; return one line saying what it would use.

    Raises:
        WebRuntimeError: the first missing prerequisite, with the command that installs it.
    """
    dist = ort_web_dist()
    chromium = find_chromium()
    playwright_version = _require_playwright()
    return (f"{ORT_WEB_PACKAGE} {ORT_WEB_VERSION} from {dist}, Chromium at {chromium}, "
            f"driven by Playwright {playwright_version}")


# ---------------------------------------------------------------------------
# The loopback server
# ---------------------------------------------------------------------------

class _LoopbackServer(ThreadingHTTPServer):
    """Serves the page, onnxruntime-web's dist/ and the registered models on 127.0.0.1, from a thread."""

    daemon_threads = True

    def __init__(self, dist: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dist = dist
        self.models: dict[str, Path] = {}
        self.not_found: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, name="labsupport-web-server", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join(timeout=10)
        self.server_close()

    def register_model(self, path: Path) -> str:
        """Serve ``path`` and return its URL path, ``/models/<n>/<file name>``."""
        key = f"{len(self.models)}/{path.name}"
        self.models[key] = path
        return f"/models/{quote(key)}"

    def resolve(self, url_path: str) -> Path | None:
        """The file a URL path names, or None: only the page, dist/'s files and registered models are served."""
        path = unquote(url_path)
        if path == "/":
            path = "/index.html"
        folder, _, name = path[1:].rpartition("/")
        if folder == "" and name in {"index.html", "run_model.js"}:
            return PAGE_FOLDER / name
        if folder == "ort" and name and not name.startswith(".") and (self.dist / name).is_file():
            return self.dist / name
        if folder.startswith("models/"):
            return self.models.get(path[len("/models/"):])
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _LoopbackServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self._send(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(with_body=False)

    def _send(self, *, with_body: bool) -> None:
        path = self.server.resolve(urlsplit(self.path).path)
        if path is None:
            self.server.not_found.append(urlsplit(self.path).path)
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", _CONTENT_TYPES.get(path.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            with path.open("rb") as source:
                shutil.copyfileobj(source, self.wfile)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silent: a lab cell must not write to stderr (a miss is reported through ``not_found``)."""


# ---------------------------------------------------------------------------
# Tensors to and from the page
# ---------------------------------------------------------------------------

def _to_page(name: str, value: Any) -> dict:
    array = np.asarray(value)
    if array.dtype.kind in "UO":
        if not all(isinstance(item, str) for item in array.ravel().tolist()):
            raise WebRuntimeError(f"input {name!r} is an object array that does not hold only strings; "
                                  "pass a NumPy array of numbers, booleans or strings.")
        return {"type": "string", "dims": list(array.shape), "data": [str(item) for item in array.ravel().tolist()]}
    web_type = _WEB_TYPES.get(array.dtype.name)
    if web_type is None:
        raise WebRuntimeError(f"input {name!r} has dtype {array.dtype}, which onnxruntime-web has no tensor type "
                              f"for; pass one of {', '.join(_WEB_TYPES)} or strings.")
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"type": web_type, "dims": list(array.shape), "data": base64.b64encode(data.tobytes()).decode("ascii")}


def _from_page(tensor: Mapping) -> np.ndarray:
    if tensor["type"] == "string":
        return np.array(tensor["data"], dtype=object).reshape(tensor["dims"])
    dtype = np.dtype(np.bool_ if tensor["type"] == "bool" else tensor["type"]).newbyteorder("<")
    values = np.frombuffer(base64.b64decode(tensor["data"]), dtype=dtype)
    return values.astype(dtype.newbyteorder("=")).reshape(tensor["dims"])


def _clean_error(message: str) -> str:
    """onnxruntime-web's message without its prefix and C++ source location, on one line."""
    message = _SOURCE_LOCATION.sub("", _ERROR_PREFIX.sub("", " ".join(message.split())))
    message = _NEWER_OPSET.sub(lambda match: f"{match[1]}; {match[2][0].lower()}{match[2][1:]}", message)
    return _EMSCRIPTEN_NOTE.sub("", message).rstrip(".")


# ---------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------

class WebBrowser:
    """Headless Chromium with a page that runs models in onnxruntime-web, served from loopback.

    Open it with :func:`open_browser` (a context manager that always closes it). Playwright's
    synchronous API cannot run inside a running asyncio loop, which is where a Jupyter cell
    runs, so the browser lives in a thread of its own and every call is handed to it.
    """

    def __init__(self, *, timeout: float = 120) -> None:
        self.timeout = timeout
        dist = ort_web_dist()
        self._chromium = find_chromium()
        _require_playwright()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="labsupport-web")
        self._server = _LoopbackServer(dist)
        self._profile = tempfile.TemporaryDirectory(prefix="labsupport-chromium-")
        self._requests: list[str] = []
        self._blocked: list[str] = []
        self._playwright = self._context = self._page = None
        self._page_wasm_paths: str | None = None
        self._wasm_file = ""
        self.browser_version = ""
        try:
            self._server.start()
            self._call(self._start)
        except BaseException:
            self.close()
            raise

    @property
    def origin(self) -> str:
        """The loopback server's origin, ``http://127.0.0.1:<port>``: the only one the page may fetch from."""
        return self._server.origin

    def _call(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        return self._executor.submit(function, *args, **kwargs).result()

    def _start(self) -> None:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._context = self._playwright.chromium.launch_persistent_context(
                self._profile.name, executable_path=str(self._chromium), headless=True, args=list(CHROMIUM_ARGUMENTS),
                timeout=60_000)
        except PlaywrightError as error:
            raise WebRuntimeError(f"Chromium at {self._chromium} did not start: "
                                  f"{str(error).strip().splitlines()[0]}") from None
        self.browser_version = self._context.browser.version if self._context.browser else ""
        self._context.on("request", lambda request: self._requests.append(request.url))
        self._context.route("**/*", self._guard)

    def _guard(self, route: Any) -> None:
        """Let requests for the loopback server through; block and remember any other."""
        url = route.request.url
        if url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self._blocked.append(url)
            route.abort("blockedbyclient")

    def _load_page(self, wasm_paths: str) -> None:
        """A fresh page: onnxruntime-web reads ``wasmPaths`` once, when its backend starts."""
        from playwright.sync_api import Error as PlaywrightError

        if self._page is not None:
            self._page.close()
        self._page = self._context.new_page()
        try:
            self._page.goto(self.origin + "/", timeout=60_000)
        except PlaywrightError as error:
            raise WebRuntimeError(f"Chromium could not load the page from {self.origin}: "
                                  f"{str(error).strip().splitlines()[0]}") from None
        self._page_wasm_paths, self._wasm_file = wasm_paths, ""

    def run(self, model_path: str | os.PathLike, inputs: Mapping[str, np.ndarray], *,
            wasm_paths: str = WASM_PATHS) -> WebRun:
        """Run the ONNX file ``model_path`` on ``inputs`` in the page; return the outputs as NumPy arrays.

        Args:
            model_path: a self-contained ``.onnx`` file (weights in external files are not served).
            inputs: input name → array (numbers, booleans or strings).
            wasm_paths: what the page sets ``ort.env.wasm.wasmPaths`` to; keep the default, an
                absolute path, unless you want to see a relative one fail.

        Raises:
            ModelInputError: the file is not a readable ONNX model (from :func:`labsupport.model_loader.load_model`).
            WebRuntimeError: an input has no onnxruntime-web type, the page requested something
                not on the loopback server, or onnxruntime-web failed (its message, on one line).
        """
        return self._call(self._run, model_path, inputs, wasm_paths)

    def _run(self, model_path: str | os.PathLike, inputs: Mapping[str, np.ndarray], wasm_paths: str) -> WebRun:
        from onnx import TensorProto

        from labsupport.model_loader import load_model

        model = load_model(model_path)
        model_path = Path(model_path)
        if any(tensor.data_location == TensorProto.EXTERNAL for tensor in model.graph.initializer):
            raise WebRuntimeError(f"{model_path} keeps weights in external data files, which the page is not "
                                  "served; save it as one file (onnx.save_model(model, path)) and run that.")
        feeds = {name: _to_page(name, value) for name, value in inputs.items()}
        first_request = len(self._requests)
        if self._page is None or self._page_wasm_paths != wasm_paths:
            self._load_page(wasm_paths)
        missed = len(self._server.not_found)
        request = {"modelUrl": self._server.register_model(model_path), "wasmPaths": wasm_paths, "feeds": feeds}
        self._page.evaluate("request => { window.labsupportResult = undefined; "
                            "runModel(request).then(result => { window.labsupportResult = result; }); }", request)
        try:
            result = self._page.wait_for_function("() => window.labsupportResult", polling=50,
                                                  timeout=self.timeout * 1000).json_value()
        except Exception as error:  # Playwright's TimeoutError, or the page closed under it
            self._page_wasm_paths = None
            raise WebRuntimeError(f"the browser did not finish running {model_path} within {self.timeout:.0f} s "
                                  f"({str(error).strip().splitlines()[0]}).") from None
        self._raise_if_blocked()
        if "error" in result:
            if "no available backend found" in result["error"]:
                self._page_wasm_paths = None  # a backend that failed to start stays failed in this page
                raise WebRuntimeError(self._explain_backend(result["error"], wasm_paths,
                                                            self._server.not_found[missed:]))
            raise _ModelRefused(self._explain_model(model_path, model, result["error"]))
        requests = tuple(self._requests[first_request:])
        self._wasm_file = next((url.rsplit("/", 1)[-1] for url in requests if url.endswith(".wasm")), self._wasm_file)
        outputs = {name: _from_page(tensor) for name, tensor in result["outputs"].items()}
        return WebRun(outputs, result["ortWebVersion"], self.browser_version, "wasm", self._wasm_file,
                      int(result["threads"]), float(result["sessionMs"]), float(result["runMs"]), requests)

    def _raise_if_blocked(self) -> None:
        """Fail the run that made a blocked request (each blocked request fails one run, then is forgotten)."""
        if self._blocked:
            blocked = ", ".join(dict.fromkeys(self._blocked))
            self._blocked.clear()
            self._page_wasm_paths = None  # what the blocked request was for is missing from this page: load a new one
            raise WebRuntimeError(f"the page requested {blocked}, which is not on the loopback server "
                                  f"{self.origin}; the request was blocked: nothing may be fetched from elsewhere.")

    @staticmethod
    def _explain_backend(message: str, wasm_paths: str, not_found: list[str]) -> str:
        missing = f" (the loopback server has no {', '.join(dict.fromkeys(not_found))})" if not_found else ""
        if wasm_paths.startswith(("/", "http://", "https://")):
            advice = f"check that {wasm_paths!r} serves onnxruntime-web's dist/ files"
        else:
            advice = (f"ort.env.wasm.wasmPaths = {wasm_paths!r} is relative, and onnxruntime-web resolves it against "
                      f"the script for its .mjs but against the page for its .wasm: use an absolute path such as "
                      f"{WASM_PATHS!r}")
        return f"onnxruntime-web could not start its WebAssembly backend: {_clean_error(message)}{missing}; {advice}."

    @staticmethod
    def _explain_model(model_path: Path, model: Any, message: str) -> str:
        text = _clean_error(message)
        opsets = ", ".join(f"{entry.domain or 'ai.onnx'} {entry.version}" for entry in model.opset_import)
        advice = ("labsupport.web.version_skew() shows the newest IR version and opset each runtime loads"
                  if "IR version" in text or "opset" in text.lower() else
                  f"`python -m labsupport check {model_path}` shows its inputs and whether Python's onnxruntime "
                  "runs it")
        return (f"onnxruntime-web {ORT_WEB_VERSION} cannot run {model_path.name} (IR {model.ir_version}, "
                f"opset {opsets}): {text}; {advice}.")

    def close(self) -> None:
        """Close the page, Chromium, Playwright and the server; remove the temporary profile. Safe to call twice."""
        try:
            if self._playwright is not None:
                self._call(self._stop_browser)
        finally:
            self._executor.shutdown(wait=True)
            self._server.stop()
            self._profile.cleanup()

    def _stop_browser(self) -> None:
        try:
            if self._context is not None:
                self._context.close()
        finally:
            self._context = self._page = None
            self._playwright.stop()
            self._playwright = None


@contextmanager
def open_browser(*, timeout: float = 120) -> Iterator[WebBrowser]:
    """A :class:`WebBrowser` for several runs in one Chromium, always closed at the end.

    ``timeout`` bounds each run, in seconds. Raises :class:`WebRuntimeError` when a
    prerequisite is missing (its message names the command that installs it).
    """
    browser = WebBrowser(timeout=timeout)
    try:
        yield browser
    finally:
        browser.close()


def run_in_browser(model_path: str | os.PathLike, inputs: Mapping[str, np.ndarray], *,
                   wasm_paths: str = WASM_PATHS, timeout: float = 120) -> WebRun:
    """Run the ONNX file ``model_path`` on ``inputs`` with onnxruntime-web in headless Chromium.

    Starts the loopback server and the browser, runs the model once, and stops both. To run
    several models, :func:`open_browser` starts the browser once. See :meth:`WebBrowser.run`.
    """
    with open_browser(timeout=timeout) as browser:
        return browser.run(model_path, inputs, wasm_paths=wasm_paths)


# ---------------------------------------------------------------------------
# Version skew, and the smoke test of `web setup`
# ---------------------------------------------------------------------------

def _identity_model(ir_version: int, opset: int) -> Any:
    """A one-node model (``y = Identity(x)``) stamped with ``ir_version`` and ``opset`` and nothing else."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def _newest_accepted(loads: Callable[[int, int], bool], start_ir: int, start_opset: int) -> tuple[int, int]:
    """Counting down from above what onnx knows: the newest IR version, then the newest opset at it, that load."""
    ir_version = next((ir for ir in range(start_ir, 2, -1) if loads(ir, 13)), 0)
    opset = next((opset for opset in range(start_opset, 0, -1) if loads(ir_version, opset)), 0)
    return ir_version, opset


def version_skew(browser: WebBrowser | None = None) -> list[VersionSupport]:
    """Measure the newest IR version and opset that onnx writes, Python's onnxruntime loads and onnxruntime-web loads.

    Each runtime is given one-node models stamped with ever older versions, from above what
    onnx knows, until one loads. Pass an open ``browser`` to reuse it; otherwise one is started.

    Returns:
        Three rows: ``onnx`` (``helper.make_model``'s default IR version and its newest opset),
        ``onnxruntime`` and ``onnxruntime-web``.
    """
    if browser is None:
        with open_browser() as browser:
            return version_skew(browser)
    import onnx
    import onnxruntime

    start_ir, start_opset = onnx.IR_VERSION + 2, onnx.defs.onnx_opset_version() + 2
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # a refused model is the expected answer here, not news

    def python_loads(ir_version: int, opset: int) -> bool:
        try:
            onnxruntime.InferenceSession(_identity_model(ir_version, opset).SerializeToString(), options,
                                         providers=["CPUExecutionProvider"])
        except Exception:  # ONNX Runtime refuses the version: that is the answer
            return False
        return True

    rows = [VersionSupport("onnx", onnx.__version__, onnx.IR_VERSION, onnx.defs.onnx_opset_version()),
            VersionSupport("onnxruntime", onnxruntime.__version__, *_newest_accepted(python_loads, start_ir,
                                                                                     start_opset))]
    with tempfile.TemporaryDirectory(prefix="labsupport-web-") as folder:

        def web_loads(ir_version: int, opset: int) -> bool:
            path = Path(folder) / f"identity-ir{ir_version}-opset{opset}.onnx"
            onnx.save_model(_identity_model(ir_version, opset), str(path))
            try:
                browser.run(path, {"x": np.ones(1, dtype=np.float32)})
            except _ModelRefused:
                return False
            return True

        rows.append(VersionSupport(ORT_WEB_PACKAGE, ORT_WEB_VERSION, *_newest_accepted(web_loads, start_ir,
                                                                                       start_opset)))
    return rows


def check_web_runtime() -> str:
    """Run a small test model in the browser and in Python's ONNX Runtime; return one line saying they agree.

    Raises:
        WebRuntimeError: a prerequisite is missing, the browser fails, or the outputs differ from Python's.
    """
    import onnx
    import onnxruntime

    from labsupport.onnx_tools import cpu_session

    feeds = {"x": np.array([0.1, -3.5, 1e-30], dtype=np.float32),
             "ids": np.array([2**62 + 1, -7, 0], dtype=np.int64), "flags": np.array([True, False, True])}
    with tempfile.TemporaryDirectory(prefix="labsupport-web-") as folder:
        path = Path(folder) / "web_check.onnx"
        onnx.save_model(mixed_types_model(), str(path))
        started = time.perf_counter()
        run = run_in_browser(path, feeds)
        seconds = time.perf_counter() - started
        expected = dict(zip(["squares", "same_ids", "negated"], cpu_session(path).run(None, feeds)))
    differing = [name for name, value in expected.items()
                 if name not in run.outputs or run.outputs[name].dtype != value.dtype
                 or not np.array_equal(run.outputs[name], value)]
    if differing:
        raise WebRuntimeError(f"onnxruntime-web {run.ort_web_version} and Python's onnxruntime "
                              f"{onnxruntime.__version__} disagree on the test model's {', '.join(differing)}.")
    return (f"a test model (float32, int64 and bool tensors) ran in Chromium {run.browser_version} with "
            f"onnxruntime-web {run.ort_web_version} ({run.backend}, {run.wasm_file}, {run.threads} thread) and gave "
            f"exactly the outputs of Python's onnxruntime {onnxruntime.__version__}; {len(run.requests)} requests, "
            f"all to the loopback server; {seconds:.1f} s with the browser's start.")
