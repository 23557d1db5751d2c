"""labsupport.serving and the C++ service: answers, batching, bad requests, the bounded queue, SIGTERM, Ray Serve.

The service is built once per session (incrementally, in the labsupport cache) with lab 13's
toolchain. Without the toolchain or the Debian packages the service needs, the tests that run
it are skipped with the reason, except under ``CI=true``, where a missing prerequisite is a
failure. Every service a test starts is stopped by the test's ``with`` block; the Ray test runs
Ray in a child process of its own, so that this process's imports cannot affect Ray's
loopback-only setting, and checks that none of Ray's processes outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from labsupport import serving
from labsupport.native import NativeToolchainError


def missing_prerequisite(error: Exception) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, so a missing prerequisite is a failure: {error}")
    pytest.skip(str(error))


@pytest.fixture(scope="session")
def binary() -> Path:
    try:
        return serving.service_binary()
    except NativeToolchainError as error:
        missing_prerequisite(error)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Two inputs of two types and two outputs, so that no type or order is served by accident; a fixed-batch one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("serving_models")
    rng = np.random.default_rng(14)
    weights = [numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "weight"),
               numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "bias"),
               numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")]
    nodes = [helper.make_node("Gemm", ["features", "weight", "bias"], ["linear"]),
             helper.make_node("Tanh", ["linear"], ["scores"]),
             helper.make_node("ReduceSum", ["counts", "axis"], ["total"], keepdims=1)]

    def save(name: str, batch: str | int) -> Path:
        graph = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, 6]),
             helper.make_tensor_value_info("counts", TensorProto.INT64, [batch, 3])],
            [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 4]),
             helper.make_tensor_value_info("total", TensorProto.INT64, [batch, 1])], weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 10
        onnx.checker.check_model(model)
        onnx.save(model, folder / f"{name}.onnx")
        return folder / f"{name}.onnx"

    (folder / "not_a_model.onnx").write_text("this is text, not a protobuf")
    return {"two_inputs": save("two_inputs", "batch"), "fixed_batch": save("fixed_batch", 1),
            "bad": folder / "not_a_model.onnx"}


@pytest.fixture(scope="session")
def reference(models):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(models["two_inputs"]), providers=["CPUExecutionProvider"])
    return lambda feeds: dict(zip(["scores", "total"], session.run(None, feeds)))


def make_feeds(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"features": rng.standard_normal((rows, 6)).astype(np.float32),
            "counts": rng.integers(-1000, 1000, (rows, 3), dtype=np.int64)}


def assert_same_outputs(answer: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(answer) == set(expected)
    for name, value in expected.items():
        assert answer[name].dtype == value.dtype and answer[name].shape == value.shape, name
        np.testing.assert_array_equal(answer[name], value, err_msg=name)


def process_is_gone(pid: int, timeout: float = 10) -> bool:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------
# Prometheus text, the JSON, loopback addresses (no service needed)
# ---------------------------------------------------------------------------

METRICS_TEXT = textwrap.dedent("""\
    # HELP requests_total Answers by code.
    # TYPE requests_total counter
    requests_total{code="200"} 7
    requests_total{code="503",path="/v1/predict"} 3
    # TYPE latency_seconds histogram
    latency_seconds_bucket{le="0.1"} 2
    latency_seconds_bucket{le="0.2"} 6
    latency_seconds_bucket{le="0.4"} 10
    latency_seconds_bucket{le="+Inf"} 10
    latency_seconds_sum 2.5
    latency_seconds_count 10
    queue_depth 0
    escaped{text="a \\"quoted\\" \\\\ word"} 1.5e3
    """)


def test_prometheus_text_is_parsed_into_samples_with_labels():
    samples = serving.parse_metrics(METRICS_TEXT)
    assert samples[0] == serving.Sample("requests_total", {"code": "200"}, 7.0)
    assert samples[1].labels == {"code": "503", "path": "/v1/predict"}
    assert serving.metric_value(samples, "requests_total") == 10
    assert serving.metric_value(samples, "requests_total", code="503") == 3
    assert serving.metric_value(samples, "requests_total", code="404") == 0
    assert serving.metric_value(samples, "escaped", text='a "quoted" \\ word') == 1500
    assert serving.histogram_buckets(samples, "latency_seconds")[-1] == (float("inf"), 10.0)


def test_the_parser_agrees_with_prometheus_client_on_every_sample():
    from prometheus_client.parser import text_string_to_metric_families

    theirs = sorted((sample.name, tuple(sorted(sample.labels.items())), sample.value)
                    for family in text_string_to_metric_families(METRICS_TEXT) for sample in family.samples)
    ours = sorted((sample.name, tuple(sorted(sample.labels.items())), sample.value)
                  for sample in serving.parse_metrics(METRICS_TEXT))
    assert ours == theirs


@pytest.mark.parametrize("line, fragment", [("requests_total{code=200} 7", "malformed labels"),
                                            ("requests_total 7 8 9", "line 3"),
                                            ('requests_total{code="200"} seven', "not a number")])
def test_a_malformed_metrics_line_is_named_by_its_number(line, fragment):
    with pytest.raises(ValueError, match=fragment):
        serving.parse_metrics(f"# HELP x y\n\n{line}\n")


@pytest.mark.parametrize("q, expected", [(0.1, 0.05), (0.5, 0.175), (0.9, 0.35), (1.0, 0.4)])
def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus(q, expected):
    assert serving.histogram_quantile(q, serving.parse_metrics(METRICS_TEXT), "latency_seconds") == \
        pytest.approx(expected)


def test_increase_is_what_each_counter_gained_between_two_scrapes():
    before = serving.parse_metrics('requests_total{code="200"} 7\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 3\n')
    after = serving.parse_metrics('requests_total{code="200"} 10\nrequests_total{code="503"} 4\n'
                                  'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 9\n')
    gained = serving.increase(before, after)
    assert serving.metric_value(gained, "requests_total", code="200") == 3
    assert serving.metric_value(gained, "requests_total", code="503") == 4
    assert serving.histogram_buckets(gained, "h") == [(1.0, 0.0), (float("inf"), 6.0)]


def test_histogram_series_are_picked_by_label_or_added_bucket_by_bucket():
    text = ('d_bucket{code="200",le="0.1"} 3\nd_bucket{code="200",le="+Inf"} 4\n'
            'd_bucket{code="503",le="0.1"} 5\nd_bucket{code="503",le="+Inf"} 5\n')
    samples = serving.parse_metrics(text)
    assert serving.histogram_buckets(samples, "d", code="503") == [(0.1, 5.0), (float("inf"), 5.0)]
    assert serving.histogram_buckets(samples, "d") == [(0.1, 8.0), (float("inf"), 9.0)]
    with pytest.raises(ValueError, match="no histogram 'd' with"):
        serving.histogram_buckets(samples, "d", code="400")


def test_histogram_quantile_in_the_inf_bucket_is_the_largest_finite_bound_and_empty_is_nan():
    text = 'h_bucket{le="1"} 1\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 4\nempty_bucket{le="1"} 0\n' \
           'empty_bucket{le="+Inf"} 0\n'
    samples = serving.parse_metrics(text)
    assert serving.histogram_quantile(0.99, samples, "h") == 2.0
    assert np.isnan(serving.histogram_quantile(0.5, samples, "empty"))
    with pytest.raises(ValueError, match="no histogram 'missing'"):
        serving.histogram_quantile(0.5, samples, "missing")


def test_request_bodies_carry_shape_dtype_and_exact_values():
    feeds = make_feeds(3, seed=0)
    sent = json.loads(serving.request_body(feeds))["inputs"]
    assert sent["features"]["shape"] == [3, 6] and sent["features"]["dtype"] == "float32"
    assert np.array_equal(np.asarray(sent["features"]["data"], dtype=np.float32).reshape(3, 6), feeds["features"])
    answer = {"outputs": {name: {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.ravel().tolist()}
                          for name, value in feeds.items()}}
    assert_same_outputs(serving.read_outputs(json.dumps(answer)), feeds)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True),
                                            ("::ffff:127.0.0.1", True), ("localhost", True), ("10.0.0.7", False),
                                            ("::ffff:192.0.2.2", False), ("example.org", False)])
def test_loopback_addresses_are_recognised_including_ipv4_mapped_ones(host, loopback):
    assert serving.is_loopback(host) is loopback


@pytest.mark.parametrize("url", ["http://192.0.2.1:8000/v1/predict", "http://example.org/v1/predict",
                                 "https://127.0.0.1:8000/v1/predict"])
def test_load_and_requests_are_refused_for_anything_but_loopback_http(url):
    with pytest.raises(ValueError, match="loopback"):
        serving.run_load(url, [b"{}"], concurrency=1)
    with pytest.raises(ValueError, match="loopback"):
        serving.post_json(url, {})


def test_missing_service_libraries_are_named_and_the_doctor_reports_them(monkeypatch, tmp_path):
    from labsupport import doctor

    monkeypatch.setattr(serving, "_INCLUDE_DIRS", (str(tmp_path),))
    assert serving.missing_service_libraries() == ["cpp-httplib (httplib.h)", "nlohmann-json (nlohmann/json.hpp)"]
    report = doctor.DoctorReport()
    doctor._check_service_libraries(report)
    (finding,) = report.findings
    assert finding.status == "warn" and "cpp-httplib" in finding.detail and finding.fix == serving.SERVICE_PACKAGES
    (tmp_path / "nlohmann").mkdir()
    (tmp_path / "nlohmann" / "json.hpp").write_text("")
    (tmp_path / "httplib.h").write_text("")
    assert serving.missing_service_libraries() == []


def test_stop_kills_the_process_group_of_a_process_that_ignores_sigterm(tmp_path):
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time\nsignal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"],
                                stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert stubborn.stdout.readline().strip() == b"ready"
        service = serving.Service(url="http://127.0.0.1:1", process=stubborn, log_path=tmp_path / "log", settings={})
        started = time.monotonic()
        assert service.stop(timeout=0.5) == -signal.SIGKILL
        assert time.monotonic() - started < 5
    finally:
        stubborn.kill()
        stubborn.wait()


# ---------------------------------------------------------------------------
# The service: answers and batching
# ---------------------------------------------------------------------------

def test_answers_equal_python_onnx_runtime_at_several_batch_sizes(binary, models, reference):
    with serving.start_service(models["two_inputs"], max_batch=16, max_wait_ms=0) as service:
        for rows in (1, 3, 16):
            feeds = make_feeds(rows, seed=rows)
            status, answer = serving.post_json(service.predict_url, serving.request_body(feeds))
            assert status == 200, answer
            assert answer["batch_rows"] >= rows
            assert_same_outputs(serving.read_outputs(answer), reference(feeds))


def test_concurrent_callers_each_get_their_own_rows_from_shared_batches(binary, models, reference):
    requests = [make_feeds(1 + index % 3, seed=100 + index) for index in range(96)]
    # A batch waits up to 200 ms for company: far longer than 24 connections take to send their next
    # requests, however busy the machine, so batches are shared without racing the client
    with serving.start_service(models["two_inputs"], max_batch=32, max_wait_ms=200) as service:
        load = serving.run_load(service.predict_url, [serving.request_body(feeds) for feeds in requests],
                                concurrency=24, max_seconds=30)
        metrics = service.metrics()
    assert load.status_counts() == {200: len(requests)}, load.errors[:3]
    for index, feeds in enumerate(requests):
        assert_same_outputs(load.outputs(index), reference(feeds))
    batches = serving.metric_value(metrics, "onnx_service_batch_rows_count")
    rows = serving.metric_value(metrics, "onnx_service_batch_rows_sum")
    assert rows == sum(len(feeds["features"]) for feeds in requests)
    largest = max(json.loads(answer)["batch_rows"] for answer in load.answers)
    assert 3 < largest <= 32, "a batch of more than 3 rows holds several requests (each sends at most 3)"
    assert rows / batches > 4, "concurrent requests should have shared batches"


def test_a_lone_request_waits_at_most_about_max_wait(binary, models):
    with serving.start_service(models["two_inputs"], max_batch=32, max_wait_ms=150) as service:
        body = serving.request_body(make_feeds(1, seed=0))
        started = time.perf_counter()
        status, answer = serving.post_json(service.predict_url, body)
        elapsed = time.perf_counter() - started
    assert status == 200 and answer["batch_rows"] == 1
    assert 0.14 <= answer["queue_ms"] / 1000 < 1.0 and elapsed >= 0.14


def test_healthz_describes_the_model_and_the_service_listens_on_loopback_only(binary, models):
    import psutil

    with serving.start_service(models["two_inputs"], max_batch=8, max_wait_ms=1, queue_capacity=5) as service:
        health = service.health()
        listening = [connection.laddr for connection in psutil.Process(service.pid).net_connections(kind="tcp")
                     if connection.status == psutil.CONN_LISTEN]
        ours = serving.listening_sockets([service.pid])
    assert health["status"] == "ok"
    assert health["inputs"] == {"features": {"dtype": "float32", "shape": ["rows", 6]},
                                "counts": {"dtype": "int64", "shape": ["rows", 3]}}
    assert health["outputs"]["total"] == {"dtype": "int64", "shape": ["rows", 1]}
    assert (health["max_batch_rows"], health["queue_capacity"]) == (8, 5)
    assert listening and all(address.ip == "127.0.0.1" for address in listening)
    assert [(ip, port) for name, ip, port in ours] == [(address.ip, address.port) for address in listening]


def test_no_other_socket_can_share_the_service_port_while_it_runs(binary, models):
    with serving.start_service(models["two_inputs"]) as service:
        for option in (socket.SO_REUSEPORT, socket.SO_REUSEADDR):
            with socket.socket() as intruder:
                intruder.setsockopt(socket.SOL_SOCKET, option, 1)
                with pytest.raises(OSError, match="Address already in use"):
                    intruder.bind(("127.0.0.1", service.port))


# ---------------------------------------------------------------------------
# Bad requests
# ---------------------------------------------------------------------------

def bad_bodies() -> list[tuple[str, bytes, str]]:
    good = json.loads(serving.request_body(make_feeds(2, seed=1)))

    def changed(edit) -> bytes:
        body = json.loads(json.dumps(good))
        edit(body["inputs"])
        return json.dumps(body).encode()

    return [
        ("malformed JSON", b'{"inputs": {"features": ', "not valid JSON"),
        ("no inputs object", b'{"features": []}', 'no "inputs" object'),
        ("wrong name", changed(lambda inputs: inputs.update(pixels=inputs.pop("features"))),
         "the model has no input 'pixels'"),
        ("missing input", changed(lambda inputs: inputs.pop("counts")), "input 'counts' is missing"),
        ("wrong shape", changed(lambda inputs: inputs["features"].update(shape=[2, 5])),
         "input 'features' has shape [2, 5]; the model expects [rows, 6]"),
        ("too many rows", changed(lambda inputs: inputs["features"].update(shape=[9, 6], data=[0.0] * 54)),
         "1 <= rows <= 8"),
        ("rows disagree", changed(lambda inputs: inputs["counts"].update(shape=[1, 3], data=[1, 2, 3])),
         "every input needs the same number of rows"),
        ("wrong count of values", changed(lambda inputs: inputs["features"].update(data=[0.5] * 11)),
         "needs 12 (a flat list, row-major)"),
        ("wrong dtype", changed(lambda inputs: inputs["counts"].update(dtype="float32")),
         "input 'counts' has dtype float32; the model expects int64"),
        ("fraction for an integer input", changed(lambda inputs: inputs["counts"]["data"].__setitem__(4, 2.5)),
         "the number 2.5 at data[4]; the model expects whole numbers (int64)"),
        ("string for a number", changed(lambda inputs: inputs["features"]["data"].__setitem__(0, "1")),
         "a string at data[0]; the model expects numbers (float32)"),
        ("oversized body", b'{"inputs": "' + b"x" * 5000 + b'"}', "larger than 4096 bytes"),
    ]


def test_bad_requests_get_400_saying_what_was_expected_and_the_service_stays_healthy(binary, models, reference):
    cases = bad_bodies()
    with serving.start_service(models["two_inputs"], max_batch=8, max_body_bytes=4096) as service:
        for label, body, fragment in cases:
            status, answer = serving.post_json(service.predict_url, body)
            assert status == 400, label
            assert fragment in answer["error"], (label, answer["error"])
        feeds = make_feeds(2, seed=3)
        status, answer = serving.post_json(service.predict_url, serving.request_body(feeds))
        assert status == 200 and service.health()["status"] == "ok"
        assert_same_outputs(serving.read_outputs(answer), reference(feeds))
        metrics = service.metrics()
        unknown, missing = serving.post_json(service.url + "/v2/predict", {})
    assert serving.metric_value(metrics, "onnx_service_requests_total", code="400") == len(cases)
    assert serving.metric_value(metrics, "onnx_service_requests_total", code="200") == 1
    assert unknown == 404 and "POST /v1/predict" in missing["error"]


# ---------------------------------------------------------------------------
# The bounded queue: a burst gets 503 at once, the counters add up
# ---------------------------------------------------------------------------

def test_a_burst_beyond_the_queue_gets_503s_and_the_metrics_add_up(binary, models, reference):
    from prometheus_client.parser import text_string_to_metric_families

    capacity, burst, wait_ms = 4, 40, 1500
    requests = [make_feeds(1, seed=200 + index) for index in range(burst)]
    # Batches wait up to 1.5 s for 8 rows, but at most 4 one-row requests may wait, and a request
    # leaves the queue only when its batch runs: no batch can fill, so the first four fill the queue
    # and wait the whole 1.5 s, and every request arriving meanwhile finds the queue full. That holds
    # however slowly the client writes, as long as some of the burst arrives within 1.5 s.
    with serving.start_service(models["two_inputs"], max_batch=8, max_wait_ms=wait_ms,
                               queue_capacity=capacity) as service:
        load = serving.send_burst(service.predict_url, [serving.request_body(feeds) for feeds in requests])
        metrics_text = serving._get_text(service.url + "/metrics", timeout=10)
        assert service.health()["status"] == "ok"
        after = make_feeds(1, seed=1)
        status, answer = serving.post_json(service.predict_url, serving.request_body(after))
        assert status == 200
        assert_same_outputs(serving.read_outputs(answer), reference(after))
    accepted, refused = load.count(200), load.count(503)
    assert refused > 0 and accepted >= capacity and accepted + refused == load.sent == burst, load.status_counts()
    rejected = load.latencies_ms[load.statuses == 503]
    assert np.median(rejected) < wait_ms / 2, "a full queue is answered at once, not after the batch's wait"
    for index in np.flatnonzero(load.statuses == 200):
        assert_same_outputs(load.outputs(index), reference(requests[index]))
    assert "queue is full" in json.loads(load.answers[int(np.flatnonzero(load.statuses == 503)[0])])["error"]
    metrics = serving.parse_metrics(metrics_text)
    assert serving.metric_value(metrics, "onnx_service_requests_total") == burst
    assert serving.metric_value(metrics, "onnx_service_requests_total", code="503") == refused
    assert serving.metric_value(metrics, "onnx_service_queue_depth_peak") == capacity
    assert serving.metric_value(metrics, "onnx_service_request_duration_seconds_count", code="200") == accepted
    assert serving.metric_value(metrics, "onnx_service_request_duration_seconds_count", code="503") == refused
    assert serving.histogram_quantile(0.99, metrics, "onnx_service_request_duration_seconds", code="503") \
        < wait_ms / 1000 / 4
    families = {family.name: family.type for family in text_string_to_metric_families(metrics_text)}
    assert families["onnx_service_requests"] == "counter"
    assert families["onnx_service_batch_rows"] == "histogram"
    assert families["onnx_service_queue_depth"] == "gauge"


# ---------------------------------------------------------------------------
# Stopping: SIGTERM with requests in flight; start-up errors; the parent's end
# ---------------------------------------------------------------------------

def test_sigterm_answers_the_requests_in_flight_exits_0_and_frees_the_port(binary, models, reference):
    requests = [make_feeds(1, seed=300 + index) for index in range(5)]
    outcome = {}
    wait_ms = 20000  # the batch would run only after 20 s: far longer than any load can delay a drain
    service = serving.start_service(models["two_inputs"], max_batch=64, max_wait_ms=wait_ms)
    with service:
        sender = threading.Thread(target=lambda: outcome.update(load=serving.run_load(
            service.predict_url, [serving.request_body(feeds) for feeds in requests], concurrency=5, max_seconds=30,
            timeout=60)))
        sender.start()
        deadline = time.monotonic() + 30
        while serving.metric_value(service.metrics(), "onnx_service_queue_depth") < 5:
            assert time.monotonic() < deadline, "the requests never reached the queue"
            time.sleep(0.01)
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=10) == 0
        sender.join(timeout=30)
    load = outcome["load"]
    assert load.status_counts() == {200: 5}
    assert load.latencies_ms.max() < wait_ms / 4, "stopping runs the queued batch instead of waiting for it to fill"
    for index, feeds in enumerate(requests):
        assert_same_outputs(load.outputs(index), reference(feeds))
    assert "stopped on SIGTERM after 5 answers" in service.log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", service.port), timeout=2).close()
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", service.port))


@pytest.mark.parametrize("model, fragment", [("bad", "cannot load the model"),
                                             ("fixed_batch", "has no dynamic first (batch) dimension"),
                                             ("missing", "cannot load the model")])
def test_a_model_the_service_cannot_serve_is_refused_at_start_with_its_reason(binary, models, model, fragment):
    path = models.get(model, Path("/nonexistent/model.onnx"))
    with pytest.raises(serving.ServiceError, match=r"exited at start with status 2: error: ") as raised:
        serving.start_service(path)
    assert fragment in str(raised.value)


def test_the_service_stops_when_the_process_that_started_it_ends(binary, models):
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from labsupport import serving
        service = serving.start_service({str(models['two_inputs'])!r}, max_batch=4)
        print(service.pid, service.port, flush=True)
        """)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    pid, port = map(int, child.stdout.split())
    assert process_is_gone(pid), "the service outlived the process that started it"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# ---------------------------------------------------------------------------
# Ray Serve: loopback only, same answers, shut down also on failure
# ---------------------------------------------------------------------------

RAY_CHILD = """
import json, os, sys, threading, time
import numpy as np
import onnxruntime
import psutil
from labsupport import serving

model = sys.argv[1]
rng = np.random.default_rng(0)
features = rng.standard_normal((120, 6)).astype(np.float32)
counts = rng.integers(-9, 9, (120, 3), dtype=np.int64)
bodies = [serving.request_body({"features": features[i:i + 1], "counts": counts[i:i + 1]}) for i in range(120)]
expected = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(
    None, {"features": features, "counts": counts})
report = {"pythonpath_before": os.environ.get("PYTHONPATH")}
first_entries = set()
try:
    with serving.running_ray_serve(model, replicas=2, max_batch_size=8) as app:
        report["pids"] = list(app.pids)
        readable = 0  # a process that renames itself (setproctitle: Ray's agents) overwrites its environ
        for pid in app.pids:
            try:
                search_path = psutil.Process(pid).environ().get("PYTHONPATH")
            except psutil.Error:
                continue
            if search_path is not None:
                readable += 1
                first_entries.add(search_path.split(os.pathsep)[0])
        report["skips_slow_import"] = readable >= 4 and all(
            os.path.isfile(os.path.join(folder, "rfc3987_syntax.py")) for folder in first_entries)
        report["driver_skipped_import"] = "rfc3987_syntax" not in sys.modules
        report["niceness"] = sorted({psutil.Process(pid).nice() for pid in app.pids} | {os.nice(0)})
        seen = []
        def watch():
            while "load" not in report:
                seen.extend(serving.non_loopback_connections())
                report["checks"] = report.get("checks", 0) + 1
                time.sleep(0.05)
        watcher = threading.Thread(target=watch)
        watcher.start()
        load = serving.run_load(app.url, bodies, concurrency=16, max_seconds=60, warmup_path=app.health_path)
        report["load"] = load.status_counts()
        watcher.join()
        report["non_loopback"] = seen
        report["wrong"] = [i for i in range(load.sent) if load.statuses[i] != 200 or not (
            np.array_equal(load.outputs(i)["scores"], expected[0][i:i + 1])
            and np.array_equal(load.outputs(i)["total"], expected[1][i:i + 1]))]
        report["batch_rows"] = max(json.loads(answer)["batch_rows"] for answer in load.answers)
        raise KeyError("a failure inside the block")
except KeyError:
    report["raised"] = True
import ray
report["initialized_after"] = ray.is_initialized()
report["pythonpath_after"] = os.environ.get("PYTHONPATH")
report["folder_left"] = any(os.path.exists(folder) for folder in first_entries)
print(json.dumps(report))
"""


def test_ray_serve_answers_like_onnx_runtime_over_loopback_only_and_shuts_down_on_failure(models):
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # without importing it: Ray runs in the child only
        missing_prerequisite(RuntimeError("ray[serve] is not installed; run `make setup`"))
    child = subprocess.run([sys.executable, "-c", RAY_CHILD, str(models["two_inputs"])], capture_output=True,
                           text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["load"] == {"200": 120}
    assert report["wrong"] == []
    assert report["checks"] >= 1 and report["non_loopback"] == []
    assert report["raised"] and report["initialized_after"] is False
    assert len(report["pids"]) >= 4  # GCS, raylet, Serve's controller and proxy, the replicas
    assert all(process_is_gone(pid) for pid in report["pids"]), "a Ray process outlived the block"
    assert report["skips_slow_import"], "every Ray process starts with the folder that skips rfc3987_syntax"
    assert report["pythonpath_after"] == report["pythonpath_before"] and not report["folder_left"]
    assert report["driver_skipped_import"]
    assert len(report["niceness"]) == 1, "Ray's workers run at the priority of the process that started Ray"


def test_ray_processes_start_without_jsonschemas_optional_iri_checker(tmp_path, monkeypatch):
    import importlib.util

    probe = ("import sys, jsonschema; "
             "print('rfc3987_syntax' in sys.modules, 'iri' in jsonschema.FormatChecker().checkers)")
    if importlib.util.find_spec("rfc3987_syntax") is not None:  # installed here (Jupyter's jsonschema extra)
        plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        assert plain.stdout.split() == ["True", "True"], plain.stderr
    monkeypatch.setenv("PYTHONPATH", "/nonexistent/elsewhere")
    environment = serving._ray_environment(tmp_path)
    assert environment["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "/nonexistent/elsewhere"]
    assert environment["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and environment["RAY_USAGE_STATS_ENABLED"] == "0"
    assert environment["RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"] == "60" and environment["RAY_worker_niceness"] == "0"
    skipped = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **environment}, capture_output=True,
                             text=True, timeout=120)
    assert skipped.stdout.split() == ["False", "False"], skipped.stderr


def test_a_module_left_out_for_a_block_can_be_imported_again_afterwards():
    import email.mime.audio as audio  # imported before the block: left alone
    import importlib

    name = next(name for name in ("colorsys", "tabnanny", "mailcap") if name not in sys.modules)
    with serving._without_module(name), serving._without_module("email.mime.audio"):
        with pytest.raises(ImportError):
            importlib.import_module(name)
        assert importlib.import_module("email.mime.audio") is audio
    assert importlib.import_module(name).__name__ == name and sys.modules["email.mime.audio"] is audio


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_ray_start_that_fails_is_cleaned_up_and_tried_once_more_with_a_note(capsys):
    started, shutdowns = [], []

    def init():
        started.append(sleeper())  # what a failing ray.init leaves behind: its GCS, its monitors
        if len(started) == 1:
            raise Exception("The current node timed out during startup. This could happen because ...")

    try:
        serving._start_ray(init, lambda: shutdowns.append(True))
        assert len(started) == 2 and shutdowns == [True]
        assert started[0].wait(timeout=10) is not None, "the failed start's processes are stopped"
        assert started[1].poll() is None, "the second start's processes are left running"
        note = capsys.readouterr().out
        assert note.startswith("Ray did not start: The current node timed out during startup.")
        assert "its processes are stopped; starting it once more" in note.lower()
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_a_ray_start_that_fails_twice_raises_one_line_and_leaves_no_process():
    started = []

    def init():
        started.append(sleeper())
        raise ConnectionError("GCS did not answer\nsecond line of detail")

    try:
        with pytest.raises(serving.ServiceError, match=r"^Ray did not start, twice: GCS did not answer Its processes "
                                                       r"are stopped\. .* run this again when it is quieter\.$"):
            serving._start_ray(init, lambda: None)
        assert len(started) == 2 and all(process.wait(timeout=10) is not None for process in started)
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_an_interrupted_ray_start_is_cleaned_up_and_not_retried():
    started = []

    def init():
        started.append(sleeper())
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            serving._start_ray(init, lambda: None)
        assert len(started) == 1 and started[0].wait(timeout=10) is not None
    finally:
        for process in started:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------
# python -m labsupport serve
# ---------------------------------------------------------------------------

def test_the_serve_command_runs_the_service_in_the_foreground_until_sigterm(binary, models, reference):
    process = subprocess.Popen([sys.executable, "-m", "labsupport", "serve", str(models["two_inputs"]), "--max-batch",
                                "4", "--queue-capacity", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        first_line = process.stdout.readline()
        assert first_line.startswith("listening on http://127.0.0.1:"), first_line + process.stderr.read()
        url = first_line.split()[2]
        assert serving.post_json(url + "/healthz", None)[1]["queue_capacity"] == 3
        feeds = make_feeds(2, seed=9)
        status, answer = serving.post_json(url + "/v1/predict", serving.request_body(feeds))
        assert status == 200
        assert_same_outputs(serving.read_outputs(answer), reference(feeds))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "stopped on SIGTERM after 1 answers" in process.stdout.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_serve_command_names_a_model_it_cannot_load_in_one_line(binary):
    completed = subprocess.run([sys.executable, "-m", "labsupport", "serve", "/nonexistent/model.onnx"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.startswith("error: cannot load the model /nonexistent/model.onnx")
    assert len(completed.stderr.strip().splitlines()) == 1
