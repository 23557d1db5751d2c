"""Serving a model over HTTP: the course's C++ service, a load client, its metrics, and Ray Serve.

Introduced in lab 14. Four parts, each small enough to read:

* **The C++ service** (``labsupport/native_src/service``, built with lab 13's toolchain):
  :func:`start_service` starts it on a free port of 127.0.0.1 and returns a :class:`Service`,
  a context manager that always stops it (SIGTERM, then SIGKILL to its process group if it has
  not stopped after a few seconds). :func:`request_body`, :func:`post_json` and
  :func:`read_outputs` speak its JSON: ``{"inputs": {NAME: {"shape", "dtype", "data"}}}`` in,
  ``{"outputs": {NAME: {"shape", "dtype", "data"}}, "batch_rows", …}`` out.
* **A load client**, :func:`run_load`: a bounded, closed-loop load from ``concurrency``
  connections, each sending its next request as soon as the previous answer arrives. Bounded in
  count (one request per body given) and in time (``max_seconds``); it sends only to loopback
  addresses. :func:`send_burst` writes many requests at once instead, one per connection. Both
  run on asyncio in a thread of their own, so they work inside Jupyter's running event loop too,
  and keep every answer, so the caller can check each one.
* **Prometheus text**: :func:`parse_metrics` reads the exposition format the service's
  ``/metrics`` writes, :func:`metric_value` sums samples, :func:`increase` subtracts an earlier
  scrape from a later one, and :func:`histogram_quantile` estimates a quantile from a
  histogram's buckets the way Prometheus's ``histogram_quantile`` does.
* **Ray Serve** (``ray[serve]``), the same model behind an existing distributed engine:
  :func:`running_ray_serve` starts a local Ray confined to loopback, deploys the model with
  ``@serve.batch`` replicas and shuts Ray down when the block ends, also on failure;
  :func:`non_loopback_connections` lists any established TCP connection of this process and
  its descendants whose peer is not a loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ipaddress
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import numpy as np

__all__ = [
    "LOOPBACK",
    "SERVICE_NAME",
    "SERVICE_PACKAGES",
    "LoadResult",
    "RayServeApp",
    "Sample",
    "Service",
    "ServiceError",
    "histogram_buckets",
    "histogram_quantile",
    "increase",
    "is_loopback",
    "listening_sockets",
    "memory_bytes",
    "metric_value",
    "missing_service_libraries",
    "non_loopback_connections",
    "parse_metrics",
    "post_json",
    "read_outputs",
    "request_body",
    "run_load",
    "running_ray_serve",
    "send_burst",
    "service_binary",
    "start_service",
]

LOOPBACK = "127.0.0.1"
SERVICE_NAME = "onnx_service"
_STOP_SECONDS = 10.0


class ServiceError(RuntimeError):
    """A service did not start or did not answer; the message is one line saying why and what to do."""


# ---------------------------------------------------------------------------
# The C++ service
# ---------------------------------------------------------------------------

_INCLUDE_DIRS = ("/usr/include", "/usr/local/include", "/opt/homebrew/include")
SERVICE_PACKAGES = "apt-get install libcpp-httplib-dev nlohmann-json3-dev pkg-config"
"""The command that installs the C++ service's libraries on Debian and Ubuntu (as root, or with sudo)."""


def missing_service_libraries() -> list[str]:
    """What the C++ service's build needs besides lab 13's toolchain and does not find (empty: all found).

    cpp-httplib (``httplib.h``, and on Debian ``pkg-config``, through which its compiled library is
    found) and nlohmann-json (``nlohmann/json.hpp``); Debian/Ubuntu install them with
    ``apt-get install libcpp-httplib-dev nlohmann-json3-dev pkg-config``. CMake has the last word
    when it configures the build; this is the quick look ``python -m labsupport doctor`` takes.
    """
    def found(header: str) -> bool:
        return any((Path(folder) / header).is_file() for folder in _INCLUDE_DIRS)

    missing = []
    if not found("httplib.h"):
        missing.append("cpp-httplib (httplib.h)")
    elif Path("/usr/include/httplib.h").is_file() and shutil.which("pkg-config") is None:
        missing.append("pkg-config (it finds Debian's compiled cpp-httplib)")
    if not found("nlohmann/json.hpp"):
        missing.append("nlohmann-json (nlohmann/json.hpp)")
    return missing


def service_binary(*, toolchain: Any = None) -> Path:
    """The C++ service's executable, built (or brought up to date) with lab 13's toolchain first."""
    from labsupport.native import build_project

    return build_project("service", toolchain=toolchain) / SERVICE_NAME


@dataclass
class Service:
    """A running C++ service (see :func:`start_service`); use it as a context manager.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        process: the service's process; its process group is its own.
        log_path: where its stdout and stderr go (the first line says where it listens); the file
            lives as long as this object.
        settings: the command-line options it was started with.
    """

    url: str
    process: subprocess.Popen
    log_path: Path
    settings: dict[str, Any]
    _log_folder: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port)

    @property
    def predict_url(self) -> str:
        """``http://127.0.0.1:PORT/v1/predict``, the URL :func:`run_load` sends requests to."""
        return self.url + "/v1/predict"

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def log(self) -> str:
        """What the service has printed so far (its start line, errors, its stop line)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def health(self, *, timeout: float = 10) -> dict[str, Any]:
        """``GET /healthz`` as a dict (the model's inputs and outputs, the batching settings, ``status``).

        ``status`` is "ok", or "stopping" (answered 503) once SIGTERM has arrived.
        """
        return post_json(self.url + "/healthz", None, timeout=timeout)[1]

    def metrics(self, *, timeout: float = 10) -> list[Sample]:
        """``GET /metrics``, parsed."""
        return parse_metrics(_get_text(self.url + "/metrics", timeout=timeout))

    def stop(self, *, timeout: float = _STOP_SECONDS) -> int | None:
        """Stop the service: SIGTERM, then SIGKILL to its process group after ``timeout`` s; return its exit code.

        Safe to call twice. SIGTERM lets it answer the requests it has received and free its port.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        return self.process.returncode


def start_service(model: str | os.PathLike, *, max_batch: int = 32, max_wait_ms: float = 2.0,
                  queue_capacity: int = 64, max_body_bytes: int = 1 << 20, http_threads: int = 128,
                  intra_op_threads: int = 1, startup_timeout: float = 60, toolchain: Any = None) -> Service:
    """Build (if needed) and start the C++ service on a free port of 127.0.0.1 serving ``model``.

    Use the result in a ``with`` block, which stops it however the block ends. The service also
    stops when the thread that started it ends (``--parent-pid``): a notebook whose kernel dies
    leaves no server behind; start it from the thread that will stop it.

    Args:
        model: the ``.onnx`` file; every input and output needs a dynamic first (batch) axis.
        max_batch: a batch runs as soon as it holds this many rows …
        max_wait_ms: … or when its oldest request has waited this long, whichever comes first.
        queue_capacity: requests that may wait; the next one is answered 503 at once.
        max_body_bytes: a larger request body is answered 400.
        http_threads: connections served at once (each keep-alive connection holds one thread).
        intra_op_threads: ONNX Runtime's threads per model run.
        startup_timeout: seconds to wait for the service to listen.
        toolchain: a :class:`labsupport.native.Toolchain`; found with ``find_toolchain()`` when None.

    Raises:
        ServiceError: the service exited at start (its ``error:`` line is in the message) or did
            not listen within ``startup_timeout``.
        labsupport.native.NativeToolchainError: the service cannot be built (what is missing, and the fix).
    """
    binary = service_binary(toolchain=toolchain)
    settings = {"max-batch": int(max_batch), "max-wait-ms": float(max_wait_ms), "queue-capacity": int(queue_capacity),
                "max-body-bytes": int(max_body_bytes), "http-threads": int(http_threads),
                "intra-op-threads": int(intra_op_threads)}
    command = [str(binary), os.fspath(model), "--port", "0", "--parent-pid", str(os.getpid())]
    for option, value in settings.items():
        command += [f"--{option}", str(value)]
    log_folder = tempfile.TemporaryDirectory(prefix="onnx_service-")
    log_path = Path(log_folder.name) / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    service = Service(url="", process=process, log_path=log_path, settings=settings, _log_folder=log_folder)
    try:
        service.url = _wait_for_listening(service, startup_timeout)
    except BaseException:
        service.stop()
        raise
    return service


_LISTENING = re.compile(r"^listening on (http://127\.0\.0\.1:\d+)", re.MULTILINE)


def _wait_for_listening(service: Service, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = service.log()
        found = _LISTENING.search(text)
        if found:
            return found.group(1)
        if service.process.poll() is not None:
            lines = [line for line in text.splitlines() if line.strip()]
            reason = next((line for line in lines if line.startswith("error:")), lines[-1] if lines else "no output")
            raise ServiceError(f"the service exited at start with status {service.process.returncode}: {reason}")
        if time.monotonic() > deadline:
            raise ServiceError(f"the service did not listen within {timeout:g} s; its log says: "
                               f"{text.strip()[-300:] or 'nothing'}")
        time.sleep(0.02)


# ---------------------------------------------------------------------------
# The JSON both servers speak
# ---------------------------------------------------------------------------

def request_body(feeds: Mapping[str, np.ndarray]) -> bytes:
    """The JSON body of ``POST /v1/predict`` for ``feeds`` (name → array, first axis = rows)."""
    inputs = {}
    for name, value in feeds.items():
        array = np.asarray(value)
        inputs[name] = {"shape": list(array.shape), "dtype": str(array.dtype), "data": array.ravel().tolist()}
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def read_outputs(answer: bytes | str | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The output arrays of a ``/v1/predict`` answer (its JSON text, or the parsed dict)."""
    parsed = json.loads(answer) if isinstance(answer, (bytes, str)) else answer
    if "outputs" not in parsed:
        raise ValueError(f"the answer has no outputs: {parsed.get('error', parsed)}")
    return {name: np.asarray(output["data"], dtype=output["dtype"]).reshape(output["shape"])
            for name, output in parsed["outputs"].items()}


def _split_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or not is_loopback(parts.hostname):
        raise ValueError(f"{url} is not an http:// URL on a loopback address; this course sends requests only to "
                         f"its own machine: use http://{LOOPBACK}:PORT")
    return parts.hostname, parts.port or 80, parts.path or "/"


def post_json(url: str, body: bytes | Mapping[str, Any] | None, *, timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """POST ``body`` (bytes, or a dict sent as JSON) to ``url``, or GET it when ``body`` is None.

    Returns the status code and the parsed JSON answer. Only loopback URLs are accepted.
    """
    host, port, path = _split_url(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if body is None:
            connection.request("GET", path)
        else:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            connection.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read()
        return response.status, json.loads(text) if text else {}
    finally:
        connection.close()


def _get_text(url: str, *, timeout: float) -> str:
    host, port, path = _split_url(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        text = response.read().decode()
        if response.status != 200:
            raise ServiceError(f"GET {url} answered {response.status}: {text[:200]}")
        return text
    finally:
        connection.close()


# ---------------------------------------------------------------------------
# A bounded load client
# ---------------------------------------------------------------------------

@dataclass
class LoadResult:
    """Every request of one :func:`run_load`: request ``i`` sent ``bodies[i]``.

    ``statuses[i]`` is the HTTP status, or 0 when no answer came (a refused or broken
    connection, a timeout: the message is in ``errors[i]``); ``latencies_ms[i]`` runs from
    writing the request to reading the last byte of its answer; ``answers[i]`` is the answer's body.
    Requests after the ``max_seconds`` cut-off were not sent and are not listed.
    """

    label: str
    concurrency: int
    statuses: np.ndarray
    latencies_ms: np.ndarray
    answers: list[bytes]
    errors: list[str]
    wall_seconds: float
    planned: int

    @property
    def sent(self) -> int:
        return len(self.statuses)

    def count(self, status: int) -> int:
        """How many requests got ``status`` (0: no answer)."""
        return int(np.sum(self.statuses == status))

    def status_counts(self) -> dict[int, int]:
        values, counts = np.unique(self.statuses, return_counts=True)
        return {int(value): int(count) for value, count in zip(values, counts)}

    @property
    def ok_latencies_ms(self) -> np.ndarray:
        return self.latencies_ms[self.statuses == 200]

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile of the answered (200) requests' latencies, NaN when none was answered."""
        ok = self.ok_latencies_ms
        return float(np.percentile(ok, q)) if len(ok) else math.nan

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def throughput_per_s(self) -> float:
        """Answered (200) requests per second of the run's wall time."""
        return self.count(200) / self.wall_seconds if self.wall_seconds > 0 else math.nan

    def outputs(self, index: int) -> dict[str, np.ndarray]:
        """The output arrays of request ``index``'s answer."""
        return read_outputs(self.answers[index])

    def summary(self) -> str:
        counts = ", ".join(f"{count} × {status or 'no answer'}" for status, count in self.status_counts().items())
        return (f"{self.label or 'load'}: {self.sent} of {self.planned} requests sent from {self.concurrency} "
                f"connections in {self.wall_seconds:.2f} s ({counts}); {self.throughput_per_s:,.0f} answers/s, "
                f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms")


class _Connection:
    """One keep-alive HTTP/1.1 connection, speaking just enough of the protocol for a load test."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def aclose(self) -> None:
        """Close and wait until the socket is closed (a loop that ends first would leave it open)."""
        writer = self.writer
        self.close()
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def send(self, request: bytes) -> None:
        """Write a request without waiting: the socket takes it at once unless its buffer is full."""
        self.writer.write(request)

    async def receive(self) -> tuple[int, bytes]:
        """Read one answer: its status and body."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise ConnectionError("the server closed the connection without answering") from None
            raise
        lines = head.decode("latin-1").lower().split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        if headers.get("transfer-encoding", "").strip() == "chunked":
            body = await self._read_chunked()
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").strip() == "close":
            self.close()
        return status, body

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        self.send(request)
        await self.writer.drain()
        return await self.receive()

    async def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()


def _http_request(method: str, host: str, port: int, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# A request that got no answer: a refused or broken connection, a malformed answer, a timeout (an OSError)
_NO_ANSWER = (OSError, EOFError, ValueError, IndexError)


async def _open_all(host: str, port: int, count: int, timeout: float, warmup_path: str | None) -> list[_Connection]:
    """Open ``count`` connections one at a time, each answering one GET first.

    Every connection is then being served before the clock starts: simultaneous connects would
    overflow a small listen backlog and measure the kernel's SYN retries instead of the server.
    """
    connections = []
    try:
        for _ in range(count):
            connections.append(_Connection(host, port))
            async with asyncio.timeout(timeout):
                await connections[-1].open()
                if warmup_path is not None:
                    await connections[-1].exchange(_http_request("GET", host, port, warmup_path))
    except BaseException:
        await asyncio.gather(*(connection.aclose() for connection in connections))
        raise
    return connections


async def _load(host: str, port: int, path: str, bodies: Sequence[bytes], concurrency: int, max_seconds: float,
                timeout: float, warmup_path: str | None) -> tuple[list, float]:
    connections = await _open_all(host, port, concurrency, timeout, warmup_path)
    records: list = [None] * len(bodies)
    next_index = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker(connection: _Connection) -> None:
        nonlocal next_index
        while next_index < len(bodies) and time.perf_counter() < deadline:
            index, next_index = next_index, next_index + 1
            request = _http_request("POST", host, port, path, bodies[index])
            sent = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    status, answer = await connection.exchange(request)
                records[index] = (status, time.perf_counter() - sent, answer, "")
            except _NO_ANSWER as error:
                connection.close()
                records[index] = (0, time.perf_counter() - sent, b"", _failure(error))

    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        await asyncio.gather(*(connection.aclose() for connection in connections))
    return [record for record in records if record is not None], time.perf_counter() - started


async def _burst(host: str, port: int, path: str, bodies: Sequence[bytes], timeout: float,
                 warmup_path: str | None) -> tuple[list, float]:
    connections = await _open_all(host, port, len(bodies), timeout, warmup_path)
    requests = [_http_request("POST", host, port, path, body) for body in bodies]
    sent = []
    started = time.perf_counter()
    try:
        for connection, request in zip(connections, requests):  # no await: every request leaves before any answer
            sent.append(time.perf_counter())
            connection.send(request)

        async def answer(index: int) -> tuple:
            try:
                async with asyncio.timeout(timeout):
                    status, body = await connections[index].receive()
                return status, time.perf_counter() - sent[index], body, ""
            except _NO_ANSWER as error:
                return 0, time.perf_counter() - sent[index], b"", _failure(error)

        records = await asyncio.gather(*(answer(index) for index in range(len(connections))))
    finally:
        await asyncio.gather(*(connection.aclose() for connection in connections))
    return list(records), time.perf_counter() - started


def _run_in_thread(coroutine: Any) -> Any:
    """Run a coroutine to completion on a fresh event loop in its own thread (Jupyter already runs one)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=target, name="labsupport-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run_load(url: str, bodies: Sequence[bytes], *, concurrency: int, max_seconds: float = 10.0,
             timeout: float = 30.0, warmup_path: str | None = "/healthz", label: str = "") -> LoadResult:
    """Send each of ``bodies`` once as ``POST url``, from ``concurrency`` keep-alive connections (closed loop).

    Each connection sends its next request when the previous answer has arrived, so at most
    ``concurrency`` requests are in flight. No request is started after ``max_seconds``; each
    waits at most ``timeout`` s for its answer. Before the clock starts, each connection is
    opened and answers one ``GET warmup_path`` (None: skip).

    Raises:
        ValueError: ``url`` is not on a loopback address, or ``concurrency`` is not positive.
    """
    host, port, path = _split_url(url)
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    concurrency = min(concurrency, max(len(bodies), 1))
    records, wall = _run_in_thread(_load(host, port, path, list(bodies), concurrency, max_seconds, timeout,
                                         warmup_path))
    return _load_result(label, concurrency, records, wall, len(bodies))


def send_burst(url: str, bodies: Sequence[bytes], *, timeout: float = 30.0, warmup_path: str | None = "/healthz",
               label: str = "") -> LoadResult:
    """Send all of ``bodies`` at once, one per connection: every request is written before any answer is read.

    The connections are opened (and answer one ``GET warmup_path``) first; then the requests
    leave in one tight loop of socket writes, the closest one Python thread comes to requests
    arriving together, and the answers are read as they come. Only loopback URLs are accepted.
    """
    host, port, path = _split_url(url)
    records, wall = _run_in_thread(_burst(host, port, path, list(bodies), timeout, warmup_path))
    return _load_result(label, len(bodies), records, wall, len(bodies))


def _load_result(label: str, concurrency: int, records: list, wall: float, planned: int) -> LoadResult:
    return LoadResult(label=label, concurrency=concurrency,
                      statuses=np.array([record[0] for record in records], dtype=np.int64),
                      latencies_ms=np.array([record[1] * 1000 for record in records], dtype=np.float64),
                      answers=[record[2] for record in records], errors=[record[3] for record in records],
                      wall_seconds=wall, planned=planned)


# ---------------------------------------------------------------------------
# Prometheus text
# ---------------------------------------------------------------------------

class Sample(NamedTuple):
    """One line of Prometheus text: ``name{labels} value``."""

    name: str
    labels: dict[str, str]
    value: float


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_metrics(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (format 0.0.4), in order.

    ``# HELP``/``# TYPE`` lines and blank lines are skipped. A line that is not a sample raises
    ValueError naming its number.
    """
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"line {number} of the metrics is not a Prometheus sample: {line!r}")
        name, _, label_text, value_text, _ = match.groups()
        labels = {}
        position = 0
        while label_text and position < len(label_text):
            label = _LABEL.match(label_text, position)
            if label is None:
                raise ValueError(f"line {number} of the metrics has malformed labels: {line!r}")
            labels[label.group(1)] = re.sub(r'\\[\\"n]', lambda escape: _UNESCAPE[escape.group()], label.group(2))
            position = label.end()
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(f"line {number} of the metrics has a value that is not a number: {line!r}") from None
        samples.append(Sample(name, labels, value))
    return samples


def metric_value(samples: Sequence[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0.0 when none match)."""
    return float(sum(sample.value for sample in samples
                     if sample.name == name and all(sample.labels.get(key) == str(value)
                                                    for key, value in labels.items())))


def increase(before: Sequence[Sample], after: Sequence[Sample]) -> list[Sample]:
    """The samples of ``after`` minus the same samples of ``before``: what counters and histograms gained in between.

    Prometheus counters and histogram buckets only grow, so the difference of two scrapes is what
    happened between them (Prometheus's ``increase()``, without its handling of restarts). A gauge's
    difference means nothing: read gauges from one scrape.
    """
    earlier = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value for sample in before}
    return [Sample(sample.name, sample.labels,
                   sample.value - earlier.get((sample.name, tuple(sorted(sample.labels.items()))), 0.0))
            for sample in after]


def histogram_buckets(samples: Sequence[Sample], name: str, **labels: str) -> list[tuple[float, float]]:
    """The ``(upper bound, cumulative count)`` pairs of histogram ``name``, sorted, ending with ``+Inf``.

    ``labels`` picks one of a labelled histogram's series (``code="200"``); buckets of several
    series with the same bound are added, which is how histograms combine.
    """
    buckets: dict[float, float] = {}
    for sample in samples:
        if sample.name == f"{name}_bucket" and "le" in sample.labels and all(
                sample.labels.get(key) == str(value) for key, value in labels.items()):
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    if not buckets:
        described = f"{name!r}" + (f" with {labels}" if labels else "")
        raise ValueError(f"the metrics have no histogram {described}")
    return sorted(buckets.items())


def histogram_quantile(q: float, samples: Sequence[Sample], name: str, **labels: str) -> float:
    """Estimate quantile ``q`` (0–1) of histogram ``name`` as Prometheus's ``histogram_quantile`` does.

    Find the bucket where the ``q · count``-th observation falls and interpolate linearly between
    its lower and upper bounds (the first bucket starts at 0). In the ``+Inf`` bucket the answer
    is the largest finite bound. NaN when the histogram is empty. ``labels`` as for
    :func:`histogram_buckets`.
    """
    buckets = histogram_buckets(samples, name, **labels)
    total = buckets[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in buckets:
        if count >= rank:
            if math.isinf(upper_bound):
                return lower_bound
            if count == lower_count:
                return upper_bound
            return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = upper_bound, count
    return buckets[-2][0] if len(buckets) > 1 else math.nan


# ---------------------------------------------------------------------------
# Processes: connections and memory
# ---------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True for a loopback address: 127.0.0.0/8, ::1, their IPv4-mapped form ::ffff:127.x.y.z, and ``localhost``."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1, how a dual-stack socket shows an IPv4 peer
    return address.is_loopback


def _processes(pids: Sequence[int] | None) -> list:
    import psutil

    if pids is not None:
        found = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
        return found
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def non_loopback_connections(pids: Sequence[int] | None = None) -> list[str]:
    """Established TCP connections whose peer is not a loopback address, one line each.

    Looks at ``pids``, or at this process and all its descendants (a service or Ray started from
    here is one of them). An empty list means everything these processes talk to is on this machine.
    """
    import psutil

    found = []
    for process in _processes(pids):
        try:
            connections = process.net_connections(kind="tcp")
            name = process.name()
        except psutil.Error:  # the process ended while we looked
            continue
        for connection in connections:
            if connection.status == psutil.CONN_ESTABLISHED and connection.raddr \
                    and not is_loopback(connection.raddr.ip):
                found.append(f"{name} (pid {process.pid}): {connection.laddr.ip}:{connection.laddr.port} → "
                             f"{connection.raddr.ip}:{connection.raddr.port}")
    return found


def listening_sockets(pids: Sequence[int] | None = None) -> list[tuple[str, str, int]]:
    """The TCP sockets ``pids`` (or this process and its descendants) listen on, as ``(process name, ip, port)``.

    An address of 127.0.0.1 (or ::1) takes connections from this machine only; 0.0.0.0 or ``::``
    from every network the machine is on.
    """
    import psutil

    found = []
    for process in _processes(pids):
        try:
            connections = process.net_connections(kind="tcp")
            name = process.name()
        except psutil.Error:
            continue
        found += [(name, connection.laddr.ip, connection.laddr.port) for connection in connections
                  if connection.status == psutil.CONN_LISTEN]
    return found


def memory_bytes(pids: Sequence[int]) -> int:
    """The proportional set size (PSS) of processes ``pids``, summed (Linux; RSS elsewhere).

    PSS charges each shared page to the processes sharing it in equal parts, so summing it over a
    group of processes counts a library they all map once, unlike RSS.
    """
    import psutil

    total = 0
    for process in _processes(pids):
        with contextlib.suppress(psutil.Error):
            info = process.memory_full_info() if sys.platform.startswith("linux") else process.memory_info()
            total += int(getattr(info, "pss", info.rss))
    return total


# ---------------------------------------------------------------------------
# Ray Serve
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RayServeApp:
    """A model served by Ray Serve on this machine (see :func:`running_ray_serve`).

    Attributes:
        url: the application's endpoint, ``http://127.0.0.1:PORT/v1/predict``.
        health_path: a cheap GET on the same server (Serve's proxy health check).
        pids: Ray's processes started for it (head services, proxy, controller, replicas).
        startup_seconds: from ``ray.init`` to the application answering.
    """

    url: str
    health_path: str
    pids: tuple[int, ...]
    startup_seconds: float


def _feeds_from_json(request: Mapping[str, Any], inputs: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Arrays from a ``/v1/predict`` request; ``inputs`` maps each input name to its NumPy dtype."""
    given = request.get("inputs") if isinstance(request, Mapping) else None
    if not isinstance(given, Mapping) or set(given) != set(inputs):
        raise ValueError(f"send {{\"inputs\": {{NAME: {{\"shape\", \"data\"}}}}}} with the inputs {sorted(inputs)}")
    feeds = {}
    for name, dtype in inputs.items():
        try:
            feeds[name] = np.asarray(given[name]["data"], dtype=dtype).reshape(given[name]["shape"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"input {name!r}: {error}") from None
    return feeds


def _answer_json(output_names: Sequence[str], outputs: Sequence[np.ndarray], batch_rows: int) -> dict[str, Any]:
    return {"outputs": {name: {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.ravel().tolist()}
                        for name, value in zip(output_names, outputs)},
            "batch_rows": batch_rows}


def _ray_deployment(*, replicas: int, max_batch_size: int, batch_wait_timeout_s: float, cpus_per_replica: float):
    """The Serve deployment: each replica holds one ONNX Runtime session and batches with ``@serve.batch``."""
    from ray import serve
    from starlette.responses import JSONResponse

    class OnnxReplica:
        def __init__(self, model_path: str) -> None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self.session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
            types = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
                     "tensor(int32)": "int32"}
            self.inputs = {value.name: types[value.type] for value in self.session.get_inputs()}
            self.output_names = [value.name for value in self.session.get_outputs()]

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)
        async def run_batch(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
            rows = [len(next(iter(feeds.values()))) for feeds in requests]
            joined = {name: np.concatenate([feeds[name] for feeds in requests]) for name in self.inputs}
            outputs = self.session.run(self.output_names, joined)
            ends = np.cumsum(rows)
            return [_answer_json(self.output_names, [value[end - count:end] for value in outputs], int(ends[-1]))
                    for count, end in zip(rows, ends)]

        async def __call__(self, request) -> Any:
            try:
                feeds = _feeds_from_json(await request.json(), self.inputs)
            except ValueError as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            return await self.run_batch(feeds)

    # Serve's default max_ongoing_requests (5) would cap a batch at 5 requests and make the
    # proxy retry rejected requests with back-off: let a replica hold two full batches
    return serve.deployment(OnnxReplica, num_replicas=replicas, max_ongoing_requests=2 * max_batch_size,
                            ray_actor_options={"num_cpus": cpus_per_replica})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_ray_serve(model: str | os.PathLike, *, replicas: int = 2, max_batch_size: int = 32,
                      batch_wait_timeout_s: float = 0.002, num_cpus: int = 2) -> Iterator[RayServeApp]:
    """Serve ``model`` with Ray Serve on a local Ray confined to loopback; shut Ray down when the block ends.

    Ray's processes talk only to 127.0.0.1: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in their
    environment makes a process without a node address of its own pick the loopback address
    (instead of the address it would use to reach other machines), ``ray.init`` gets
    ``_node_ip_address="127.0.0.1"``, and Serve's HTTP proxy listens on 127.0.0.1. Usage
    statistics are off (``RAY_USAGE_STATS_ENABLED=0``): nothing leaves the machine. Ray 2.60
    turns token authentication on for a new local cluster (the token is kept in
    ``~/.ray/auth_token``). ``max_batch_size`` counts requests (each may carry several rows).

    Ray's start has fixed time limits (its raylet waits 15 s for its agents to report their ports,
    ``ray.init`` 30 s for the raylet to register, Serve's controller 5 s for its HTTP proxy's first
    readiness check), and on a machine busy with other work they can be missed. Three settings
    keep the start well inside them:

    * Ray runs its workers (Serve's controller, proxy and replicas among them) at nice 15, below
      everything else on the machine, so that on a cluster node its own control processes stay
      responsive; on a machine shared with other work, a nice-15 process gets a few per cent of
      the CPU a normal one gets. ``RAY_worker_niceness=0`` runs them at normal
      priority, like the C++ service.
    * Every Ray process imports ``jsonschema``, which imports the optional IRI format checker
      ``rfc3987_syntax`` when it is installed (Jupyter installs it), and that module builds a
      parser for RFC 3987's grammar at import: seconds of CPU per process on a small machine.
      Ray never checks that format, so Ray's processes get a folder first on their ``PYTHONPATH``
      whose ``rfc3987_syntax`` raises ImportError, which jsonschema takes for "not installed" (see
      :func:`_ray_environment`); when this process imports Ray for the first time, it leaves the
      module out the same way (``jsonschema`` in this process then has no "iri" format checker).
    * The proxy's readiness check gets 60 s (``RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S``), as long
      as ``serve.start`` itself waits for the proxy.

    If Ray still does not start, its processes are stopped, a note is printed, and it starts once
    more. The environment is restored and every process Ray started is stopped when the block
    ends, however it ends.

    Raises:
        ServiceError: Ray is already running in this process, was imported before the loopback
            setting could take effect (restart the kernel), or did not start twice in a row.
    """
    import logging
    import warnings

    # ray.init sets RAY_AUTH_MODE=token in this process when it turns token authentication on: restore it too
    saved = {name: os.environ.get(name) for name in (*_RAY_SETTINGS, "PYTHONPATH", "RAY_AUTH_MODE")}
    shortcut = tempfile.TemporaryDirectory(prefix="labsupport-ray-")
    try:
        os.environ.update(_ray_environment(Path(shortcut.name)))  # before Ray is imported: it reads them then
        # Imported in a notebook without ipywidgets, Ray logs that its rich display is unavailable and
        # tqdm warns "IProgress not found": neither matters here (nothing of Ray is displayed)
        logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)
        with warnings.catch_warnings(), _without_module(_SKIPPED_IMPORT):
            warnings.filterwarnings("ignore", message="IProgress not found")
            import ray
            from ray import serve
            from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise ServiceError("Ray was imported in this process before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set, "
                               "so its processes would use this machine's network address; restart the kernel and "
                               "start Ray only through running_ray_serve.")
        if ray.is_initialized():
            raise ServiceError("Ray is already running in this process; call ray.shutdown() first, or restart the "
                               "kernel.")
        port = _free_port()
        before = set(_descendants())
        started = time.perf_counter()
        _start_ray(lambda: ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=num_cpus,
                                    log_to_driver=False, logging_level=logging.ERROR), ray.shutdown)
        ray_processes = _descendants()
        try:
            logging.getLogger("ray.serve").setLevel(logging.ERROR)
            serve.start(http_options={"host": LOOPBACK, "port": port}, logging_config={"log_level": "ERROR"})
            deployment = _ray_deployment(replicas=replicas, max_batch_size=max_batch_size,
                                         batch_wait_timeout_s=batch_wait_timeout_s,
                                         cpus_per_replica=min(1.0, num_cpus / replicas))
            serve.run(deployment.bind(os.fspath(Path(model).resolve())), name="onnx", route_prefix="/v1/predict")
            ray_processes.update(_descendants())
            pids = tuple(sorted(set(ray_processes) - before))
            yield RayServeApp(url=f"http://{LOOPBACK}:{port}/v1/predict", health_path="/-/healthz", pids=pids,
                              startup_seconds=time.perf_counter() - started)
        finally:
            ray_processes.update(_descendants())
            ray.shutdown()
            _stop_processes([process for pid, process in ray_processes.items() if pid not in before])
    finally:
        _restore_environment(saved)
        shortcut.cleanup()


_RAY_SETTINGS = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0",
                 "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60"}
_SKIPPED_IMPORT = "rfc3987_syntax"


def _ray_environment(folder: Path) -> dict[str, str]:
    """The environment variables Ray's processes start with (see :func:`running_ray_serve`).

    Loopback only, no usage statistics, workers at normal priority, 60 s for Serve's proxy to
    become ready. Writes ``folder/rfc3987_syntax.py``, a module that raises ImportError, and puts
    ``folder`` first on ``PYTHONPATH``, so that ``jsonschema`` in Ray's processes leaves out its
    optional IRI format checker, whose import costs seconds of CPU and which Ray never uses.
    """
    (folder / f"{_SKIPPED_IMPORT}.py").write_text(
        f'"""Left out of Ray\'s processes by labsupport.serving.running_ray_serve."""\n'
        f'raise ImportError("{_SKIPPED_IMPORT} is left out of Ray\'s processes: it builds a parser for '
        f'RFC 3987 at import, and Ray never checks IRIs")\n')
    search_path = [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**_RAY_SETTINGS, "PYTHONPATH": os.pathsep.join(search_path)}


@contextlib.contextmanager
def _without_module(name: str) -> Iterator[None]:
    """Within the block, ``import name`` raises ImportError in this process (unless it was imported before)."""
    blocked = name not in sys.modules
    if blocked:
        sys.modules[name] = None  # the import system's own marker for "this import fails"
    try:
        yield
    finally:
        if blocked and sys.modules.get(name, ...) is None:
            del sys.modules[name]


def _start_ray(init: Callable[[], Any], shutdown: Callable[[], None]) -> None:
    """Call ``init`` (``ray.init``); if it fails, stop every process it started, print why, and call it once more.

    A failed ``ray.init`` leaves the processes it had started (the GCS, the monitors) running, and
    ``ray.shutdown`` does not know them: they are stopped here, found as the new descendants of
    this process.

    Raises:
        ServiceError: the second call failed too (its processes are stopped as well).
    """
    for attempt in (1, 2):
        before = set(_descendants())
        try:
            init()
            return
        except BaseException as error:
            shutdown()
            _stop_processes([process for pid, process in _descendants().items() if pid not in before])
            if not isinstance(error, Exception):
                raise
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if attempt == 2:
                raise ServiceError(f"Ray did not start, twice: {reason} Its processes are stopped. This machine is "
                                   "probably too busy for Ray's start-up time limits: run this again when it is "
                                   "quieter.") from None
            print(f"Ray did not start: {reason} Its processes are stopped; starting it once more (on a busy machine "
                  "Ray's start can overrun its own time limits).")


def _descendants() -> dict[int, Any]:
    """This process's descendants, as ``pid: psutil.Process``."""
    import psutil

    return {process.pid: process for process in psutil.Process().children(recursive=True)}


def _stop_processes(processes: Sequence[Any], *, timeout: float = 5.0) -> None:
    """SIGTERM ``processes`` (``psutil.Process`` objects), wait up to ``timeout`` s, SIGKILL the rest and wait again.

    A process that has already ended is skipped (psutil checks that a pid still names the same
    process); a zombie counts as ended.
    """
    import psutil

    def running(process) -> bool:
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    for send in ("terminate", "kill"):
        alive = [process for process in processes if running(process)]
        for process in alive:
            with contextlib.suppress(psutil.Error):
                getattr(process, send)()
        deadline = time.monotonic() + timeout
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [process for process in alive if running(process)]
        if not alive:
            return


def _restore_environment(saved: Mapping[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
