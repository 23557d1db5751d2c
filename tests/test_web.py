"""Tests of labsupport.web: onnxruntime-web in headless Chromium, served from loopback, compared with Python.

The first half needs no browser: the messages a learner without Chromium or the npm package sees,
the loopback server, the tensors' trip to the page and back, the doctor's rows. The second half
drives the real browser with the package that ``python -m labsupport web setup`` installed:
without Chromium, Playwright or the package these tests are skipped with the reason, except under
``CI=true``, where a missing prerequisite is a failure.
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from labsupport import doctor, web
from labsupport.cli import main
from labsupport.exercises.lab13 import in_ci
from labsupport.model_loader import ModelInputError
from labsupport.onnx_tools import cpu_session
from tests.test_node import fake_npm

SETUP = "`python -m labsupport web setup`"


@pytest.fixture
def no_tools(tmp_path, monkeypatch):
    """A PATH with no chromium, node or npm on it, and no Chromium named by the environment."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(web.CHROMIUM_VARIABLE, raising=False)
    return empty


# ---------------------------------------------------------------------------
# Prerequisites: one line that names the fix
# ---------------------------------------------------------------------------

def test_a_missing_package_names_the_web_setup_command(empty_cache):
    with pytest.raises(web.WebRuntimeError) as raised:
        web.ort_web_dist()
    message = str(raised.value)
    assert message.startswith("the npm package onnxruntime-web 1.30.0 is not installed in")
    assert str(empty_cache / "npm") in message and SETUP in message and "\n" not in message


def test_without_chromium_the_error_names_the_debian_packages(no_tools):
    with pytest.raises(web.WebRuntimeError) as raised:
        web.find_chromium()
    message = str(raised.value)
    assert "Chromium is not installed" in message
    assert "sudo apt-get install chromium fonts-noto-color-emoji" in message and web.CHROMIUM_VARIABLE in message


def test_a_chromium_named_by_the_environment_must_be_an_executable_file(tmp_path, no_tools, monkeypatch):
    monkeypatch.setenv(web.CHROMIUM_VARIABLE, str(tmp_path / "no-such-chrome"))
    with pytest.raises(web.WebRuntimeError, match="is not an executable file"):
        web.find_chromium()
    executable = tmp_path / "my-chrome"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(executable.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(web.CHROMIUM_VARIABLE, str(executable))
    assert web.find_chromium() == executable


def test_web_setup_installs_onnxruntime_web_with_ignore_scripts_once(tmp_path, empty_cache, monkeypatch):
    log = fake_npm(tmp_path / "bin", monkeypatch, exit_code=0)
    package, installed_now = web.install_ort_web()
    assert installed_now
    assert package == empty_cache / "npm" / "onnxruntime-web-1.30.0" / "node_modules" / "onnxruntime-web"
    (arguments,) = json.loads(log.read_text())
    assert "--ignore-scripts" in arguments and arguments[-1] == "onnxruntime-web@1.30.0"
    assert web.install_ort_web() == (package, False)
    # the fake npm wrote only package.json: a package without dist/ort.min.js is not taken for installed
    with pytest.raises(web.WebRuntimeError, match="has no dist/ort.min.js: the install is incomplete"):
        web.ort_web_dist()


def test_web_setup_without_npm_fails_naming_its_own_command(no_tools, empty_cache, capsys):
    assert main(["web", "setup"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: `npm` is not on PATH")
    assert "python -m labsupport web setup" in error and "node setup" not in error


def test_the_doctor_reports_the_browser_rows_and_only_warns_when_they_are_missing(no_tools, empty_cache):
    report = doctor.diagnose()
    rows = {finding.name: finding for finding in report.findings if finding.section == "Browser"}
    assert rows["chromium"].status == "warn" and "apt-get install chromium" in rows["chromium"].fix
    assert rows["onnxruntime-web"].status == "warn" and SETUP in rows["onnxruntime-web"].fix
    assert not [finding for finding in report.failures if finding.section == "Browser"]


# ---------------------------------------------------------------------------
# Tensors to the page and back: exact for every type
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    np.array([0.1, -3.5, 1e-30, np.nan, -np.inf], dtype=np.float32),
    np.array([[2**62 + 1, -7], [0, -(2**63)]], dtype=np.int64),
    np.array([2**64 - 1, 0], dtype=np.uint64),
    np.array([1.5, -0.0, 65504], dtype=np.float16),
    np.array([True, False, True]),
    np.array(3.25, dtype=np.float64),
    np.zeros((0, 4), dtype=np.int32),
    np.array(["a", "héllo ✅", ""], dtype=object),
], ids=["float32", "int64", "uint64", "float16", "bool", "scalar", "empty", "strings"])
def test_a_tensor_crosses_to_the_page_and_back_exactly(value):
    spec = json.loads(json.dumps(web._to_page("x", value)))  # the trip through Playwright is JSON
    back = web._from_page(spec)
    assert back.dtype == value.dtype and back.shape == value.shape
    assert np.array_equal(back, value, equal_nan=value.dtype.kind == "f")


def test_an_input_onnxruntime_web_has_no_type_for_is_refused_in_one_line():
    with pytest.raises(web.WebRuntimeError) as raised:
        web._to_page("pixels", np.zeros(3, dtype=np.complex64))
    assert str(raised.value).startswith("input 'pixels' has dtype complex64, which onnxruntime-web has no tensor type")


def test_onnxruntime_web_errors_lose_their_source_location_and_boilerplate():
    assert web._clean_error(
        "Can't create a session. ERROR_CODE: 1, ERROR_MESSAGE: /mnt/azure_nvme_temp/_work/1/s/onnxruntime/core/graph/"
        "model.cc:203 onnxruntime::Model::Model(ModelProto &&, const PathString &, const logging::Logger &, const "
        "ModelOptions &) Unsupported model IR version: 14, max supported IR version: 13"
    ) == "Unsupported model IR version: 14, max supported IR version: 13"
    assert web._clean_error(
        "Can't create a session. ERROR_CODE: 1, ERROR_MESSAGE: /mnt/x/s/onnxruntime/core/graph/model_load_utils.h:56 "
        "void onnxruntime::model_load_utils::ValidateOpsetForDomain(const std::string &, int) ONNX Runtime only "
        "*guarantees* support for models stamped with official released onnx opset versions. Opset 27 is under "
        "development and support for this is limited. The operator schemas and or other functionality may change "
        "before next ONNX release. Current official support for domain ai.onnx is till opset 26."
    ) == "Opset 27 is under development; current official support for domain ai.onnx is till opset 26"
    assert web._clean_error("failed to call OrtRun(). ERROR_CODE: 2, ERROR_MESSAGE: Unexpected input data type."
                            ) == "Unexpected input data type"


# ---------------------------------------------------------------------------
# The loopback server
# ---------------------------------------------------------------------------

def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as error:
        return error.code, "", b""


def test_the_loopback_server_serves_only_the_page_the_package_and_registered_models(tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "ort.min.js").write_text("// ort")
    (dist / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm")
    (dist / "ort-wasm-simd-threaded.mjs").write_text("export {}")
    model = tmp_path / "digits.onnx"
    model.write_bytes(b"model bytes")
    (tmp_path / "secret.txt").write_text("not served")
    server = web._LoopbackServer(dist)
    server.start()
    try:
        assert server.server_address[0] == "127.0.0.1"
        origin = server.origin
        model_url = server.register_model(model)
        assert _get(origin + "/")[:2] == (200, "text/html; charset=utf-8")
        assert _get(origin + "/run_model.js")[:2] == (200, "text/javascript")
        assert _get(origin + "/ort/ort-wasm-simd-threaded.wasm")[1] == "application/wasm"
        assert _get(origin + "/ort/ort-wasm-simd-threaded.mjs")[1] == "text/javascript"
        assert _get(origin + model_url)[2] == b"model bytes"
        refused = ["/secret.txt", "/ort/../secret.txt", "/ort/%2e%2e/secret.txt", "/ort/", "/models/9/digits.onnx",
                   "/web.py", "/../web.py"]
        assert [_get(origin + path)[0] for path in refused] == [404] * len(refused)
        assert len(server.not_found) == len(refused)
    finally:
        server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(origin.rsplit(":", 1)[1])), timeout=2):
        pass


# ---------------------------------------------------------------------------
# The real browser (skipped outside CI when a prerequisite is missing; a failure under CI=true)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def web_ready():
    try:
        return web.check_prerequisites()
    except web.WebRuntimeError as error:
        if in_ci():
            pytest.fail(f"CI=true, and the browser runtime cannot run: {error}")
        pytest.skip(f"the browser runtime cannot run: {error}")


@pytest.fixture(scope="module")
def browser(web_ready):
    with web.open_browser() as opened:
        yield opened


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory):
    """A 64 → 32 → 10 MLP with seeded weights (IR 10, opset 17), and 64 real digit images to feed it."""
    from labsupport.models import load_digits_split

    generator = np.random.default_rng(0)
    weights = [generator.normal(0, 0.3, shape).astype(np.float32) for shape in [(64, 32), (32,), (32, 10), (10,)]]
    names = ["w1", "b1", "w2", "b2"]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["pixels", "w1", "b1"], ["hidden"]), helper.make_node("Relu", ["hidden"], ["h"]),
         helper.make_node("Gemm", ["h", "w2", "b2"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)], "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [onnx.numpy_helper.from_array(value, name) for value, name in zip(weights, names)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path_factory.mktemp("web") / "digits_mlp.onnx"
    onnx.save_model(model, str(path))
    return path, {"pixels": load_digits_split().x_test[:64]}


def test_the_digits_mlp_gives_python_s_outputs_in_the_browser(browser, digits_mlp):
    path, feeds = digits_mlp
    run = browser.run(path, feeds)
    expected = dict(zip(["logits", "probabilities"], cpu_session(path).run(None, feeds)))
    assert set(run.outputs) == set(expected)
    differences = {name: float(np.max(np.abs(run.outputs[name] - value))) for name, value in expected.items()}
    print(f"onnxruntime-web {run.ort_web_version} ({run.backend}, {run.wasm_file}) in Chromium {run.browser_version} "
          f"vs onnxruntime: max |Δ| {differences}; session {run.session_ms:.0f} ms, run {run.run_ms:.1f} ms")
    for name, value in expected.items():
        assert run.outputs[name].dtype == value.dtype and run.outputs[name].shape == value.shape
        np.testing.assert_allclose(run.outputs[name], value, rtol=1e-5, atol=1e-5)
    assert np.array_equal(run.outputs["logits"].argmax(axis=1), expected["logits"].argmax(axis=1))
    assert (run.ort_web_version, run.backend, run.threads) == (web.ORT_WEB_VERSION, "wasm", 1)
    assert run.wasm_file.endswith(".wasm") and run.browser_version
    (again,) = browser.run(path, feeds).requests  # a second run in the same page fetches only the model
    assert urlsplit(again).path.startswith("/models/") and again.endswith("/digits_mlp.onnx")


def test_strings_float16_and_64_bit_integers_come_back_exactly_as_python_s(browser, tmp_path):
    kinds = {"words": TensorProto.STRING, "halves": TensorProto.FLOAT16, "big": TensorProto.UINT64,
             "ids": TensorProto.INT64, "flags": TensorProto.BOOL}
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], [f"{name}_out"]) for name in kinds], "types",
        [helper.make_tensor_value_info(name, kind, ["n"]) for name, kind in kinds.items()],
        [helper.make_tensor_value_info(f"{name}_out", kind, ["n"]) for name, kind in kinds.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "types.onnx"))
    feeds = {"words": np.array(["a", "héllo ✅", ""], dtype=object), "halves": np.array([1.5, -0.0, 65504], np.float16),
             "big": np.array([2**64 - 1, 0, 5], np.uint64), "ids": np.array([2**62 + 1, -7, -(2**63)], np.int64),
             "flags": np.array([True, False, True])}
    run = browser.run(tmp_path / "types.onnx", feeds)
    for name, value in zip([f"{name}_out" for name in kinds], cpu_session(tmp_path / "types.onnx").run(None, feeds)):
        assert run.outputs[name].dtype == value.dtype and np.array_equal(run.outputs[name], value), name


def test_a_model_with_external_weights_is_refused_in_one_line(browser, digits_mlp, tmp_path):
    path, feeds = digits_mlp
    onnx.save_model(onnx.load(str(path)), str(tmp_path / "split.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="split.onnx.data", size_threshold=0)
    with pytest.raises(web.WebRuntimeError, match=r"split.onnx keeps weights in external data files, which the page "
                                                  r"is not served; save it as one file"):
        browser.run(tmp_path / "split.onnx", feeds)


def test_a_request_off_the_loopback_server_is_blocked_and_fails_the_run(browser, digits_mlp):
    path, feeds = digits_mlp
    cdn = "https://cdn.jsdelivr.net/npm/onnxruntime-web@1.30.0/dist/"
    with pytest.raises(web.WebRuntimeError) as raised:
        browser.run(path, feeds, wasm_paths=cdn)
    message = str(raised.value)
    assert message.startswith(f"the page requested {cdn}ort-wasm-simd-threaded")
    assert f"which is not on the loopback server {browser.origin}; the request was blocked" in message
    assert browser.run(path, feeds).outputs, "the next run, with the default wasmPaths, works again"


@pytest.mark.parametrize("wasm_paths, what_fails", [
    ("ort/", "Failed to resolve module specifier 'ort/ort-wasm-simd-threaded"),
    ("./", "the loopback server has no /ort-wasm-simd-threaded"),
], ids=["bare", "dot-slash"])
def test_a_relative_wasm_path_fails_to_start_the_backend_and_says_to_use_an_absolute_one(browser, digits_mlp,
                                                                                         wasm_paths, what_fails):
    path, feeds = digits_mlp
    with pytest.raises(web.WebRuntimeError) as raised:
        browser.run(path, feeds, wasm_paths=wasm_paths)
    message = str(raised.value)
    assert message.startswith("onnxruntime-web could not start its WebAssembly backend: no available backend found")
    assert what_fails in message and "use an absolute path such as '/ort/'" in message and "\n" not in message


def test_the_web_runtime_trails_python_s_and_refuses_what_onnx_writes_by_default(browser, tmp_path):
    rows = {row.name: row for row in web.version_skew(browser)}
    print("\n".join(f"{row.name:>16} {row.version:>8}: IR ≤ {row.max_ir_version}, opset ≤ {row.max_opset}"
                    for row in rows.values()))
    python, browser_row, written = rows["onnxruntime"], rows["onnxruntime-web"], rows["onnx"]
    assert browser_row.max_ir_version < python.max_ir_version and browser_row.max_opset < python.max_opset
    assert written.max_ir_version == onnx.IR_VERSION > browser_row.max_ir_version
    model = helper.make_model(helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "default_stamp",
                                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(tmp_path / "default_stamp.onnx"))
    feeds = {"x": np.array([1, -2], dtype=np.float32)}
    np.testing.assert_array_equal(cpu_session(tmp_path / "default_stamp.onnx").run(None, feeds)[0], [-1, 2])
    with pytest.raises(web.WebRuntimeError) as raised:
        browser.run(tmp_path / "default_stamp.onnx", feeds)
    assert str(raised.value) == (
        f"onnxruntime-web 1.30.0 cannot run default_stamp.onnx (IR {onnx.IR_VERSION}, opset ai.onnx 17): Unsupported "
        f"model IR version: {onnx.IR_VERSION}, max supported IR version: {browser_row.max_ir_version}; "
        "labsupport.web.version_skew() shows the newest IR version and opset each runtime loads.")
    model.ir_version = browser_row.max_ir_version
    onnx.save_model(model, str(tmp_path / "restamped.onnx"))
    np.testing.assert_array_equal(browser.run(tmp_path / "restamped.onnx", feeds).outputs["y"], [-1, 2])


def test_inputs_of_the_wrong_type_are_reported_in_one_line_naming_the_model(browser, digits_mlp):
    path, _ = digits_mlp
    with pytest.raises(web.WebRuntimeError) as raised:
        browser.run(path, {"pixels": np.zeros((1, 64), dtype=np.float64)})
    assert str(raised.value).startswith("onnxruntime-web 1.30.0 cannot run digits_mlp.onnx (IR 10, opset ai.onnx 17): "
                                        "Unexpected input data type")


def test_a_file_that_is_not_a_model_is_refused_before_the_browser_sees_it(browser, tmp_path):
    (tmp_path / "notes.onnx").write_text("{}")
    with pytest.raises(ModelInputError, match="notes.onnx"):
        browser.run(tmp_path / "notes.onnx", {})


def test_run_in_browser_works_from_a_running_event_loop_as_in_a_jupyter_cell(web_ready, digits_mlp, capfd):
    path, feeds = digits_mlp

    async def cell():  # a Jupyter cell runs inside the kernel's asyncio loop
        return web.run_in_browser(path, feeds)

    run = asyncio.run(cell())
    np.testing.assert_allclose(run.outputs["logits"], cpu_session(path).run(["logits"], feeds)[0], rtol=1e-5,
                               atol=1e-5)
    assert capfd.readouterr().err == "", "a run must write nothing to stderr (a lab cell would have to explain it)"
    origin = urlsplit(run.requests[0])
    assert origin.hostname == "127.0.0.1" and all(urlsplit(url).netloc == origin.netloc for url in run.requests)
    fetched = [urlsplit(url).path for url in run.requests]
    assert fetched[:3] == ["/", "/ort/ort.min.js", "/run_model.js"]
    assert {f"/ort/{run.wasm_file}", f"/ort/{run.wasm_file.removesuffix('.wasm')}.mjs"} <= set(fetched)
    assert fetched[-1].startswith("/models/") and fetched[-1].endswith("/digits_mlp.onnx")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", origin.port), timeout=2):
        pass  # the server was stopped with the browser


def test_the_web_module_imports_without_playwright_or_onnx():
    code = ("import sys, labsupport.web; "
            "print(sorted(name for name in ('playwright', 'onnx', 'onnxruntime') if name in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"
