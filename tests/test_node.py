"""Tests of labsupport.node: finding and installing onnxruntime-node, and running a model in Node.js.

The first half fakes Node.js and npm (an empty PATH, a fake ``npm`` script) to pin the messages a
learner without them sees. The second half runs the real package that ``python -m labsupport node
setup`` installed: without Node.js or the package these tests are skipped with the reason, except
under ``CI=true``, where a missing prerequisite is a failure.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from labsupport import doctor, node
from labsupport.cli import main
from labsupport.exercises.lab13 import in_ci

SETUP = "`python -m labsupport node setup`"


@pytest.fixture
def no_node(tmp_path, monkeypatch):
    """A PATH on which neither node nor npm can be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


def fake_npm(folder: Path, monkeypatch, *, exit_code: int, stderr: str = "", writes_package: bool = True) -> Path:
    """An ``npm`` on PATH that records its arguments and, like npm, writes the package into ``--prefix``."""
    folder.mkdir(exist_ok=True)
    log = folder / "npm-calls.json"
    script = folder / "npm"
    script.write_text(f"""#!{sys.executable}
import json, pathlib, sys
arguments = sys.argv[1:]
log = pathlib.Path({str(log)!r})
log.write_text(json.dumps(json.loads(log.read_text()) + [arguments]) if log.exists() else json.dumps([arguments]))
prefix = pathlib.Path(arguments[arguments.index("--prefix") + 1])
name, version = arguments[-1].rsplit("@", 1)
if {writes_package!r}:
    package = prefix / "node_modules" / name
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({{"name": name, "version": version}}))
sys.stderr.write({stderr!r})
sys.exit({exit_code})
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(folder))
    return log


# ---------------------------------------------------------------------------
# Looking the package up: nothing is downloaded at lab time
# ---------------------------------------------------------------------------

def test_a_package_missing_from_the_cache_names_the_setup_command(empty_cache):
    with pytest.raises(node.NodeRuntimeError) as raised:
        node.npm_package("onnxruntime-node", "1.30.0")
    message = str(raised.value)
    assert "onnxruntime-node 1.30.0 is not installed" in message
    assert str(empty_cache / "npm" / "onnxruntime-node-1.30.0") in message
    assert SETUP in message and "\n" not in message


def test_another_version_in_the_cache_does_not_count(empty_cache):
    package = empty_cache / "npm" / "onnxruntime-node-1.30.0" / "node_modules" / "onnxruntime-node"
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "onnxruntime-node", "version": "1.29.0"}))
    with pytest.raises(node.NodeRuntimeError, match="not installed"):
        node.npm_package("onnxruntime-node", "1.30.0")


def test_an_installed_package_is_found_in_the_cache(empty_cache):
    package = empty_cache / "npm" / "onnxruntime-node-1.30.0" / "node_modules" / "onnxruntime-node"
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "onnxruntime-node", "version": "1.30.0"}))
    assert node.npm_package("onnxruntime-node", "1.30.0") == package


def test_without_node_the_error_says_how_to_install_it(no_node, empty_cache):
    assert not node.node_available()
    with pytest.raises(node.NodeRuntimeError) as raised:
        node.node_version()
    message = str(raised.value)
    assert message.startswith("`node` is not on PATH")
    assert "apt-get install nodejs npm" in message and SETUP in message
    with pytest.raises(node.NodeRuntimeError, match="`node` is not on PATH"):
        node.run_in_node("model.onnx", {})


# ---------------------------------------------------------------------------
# Installing with npm (faked: these tests never touch the network)
# ---------------------------------------------------------------------------

def test_install_runs_npm_with_ignore_scripts_once(tmp_path, empty_cache, monkeypatch):
    log = fake_npm(tmp_path / "bin", monkeypatch, exit_code=0)
    package, installed_now = node.install_npm_package("onnxruntime-node", "1.30.0")
    assert installed_now
    assert package == empty_cache / "npm" / "onnxruntime-node-1.30.0" / "node_modules" / "onnxruntime-node"
    (arguments,) = json.loads(log.read_text())
    assert arguments[0] == "install" and "--ignore-scripts" in arguments
    assert arguments[-1] == "onnxruntime-node@1.30.0"
    assert node.install_npm_package("onnxruntime-node", "1.30.0") == (package, False)
    assert len(json.loads(log.read_text())) == 1, "the second call must not run npm again"
    assert [path.name for path in (empty_cache / "npm").iterdir()] == ["onnxruntime-node-1.30.0"]


def test_a_failed_npm_install_gives_its_error_line_and_leaves_nothing_installed(tmp_path, empty_cache,
                                                                               monkeypatch):
    fake_npm(tmp_path / "bin", monkeypatch, exit_code=1,
             stderr="npm warn something\nnpm ERR! code ENOTFOUND\nnpm ERR! network request failed\n")
    with pytest.raises(node.NodeRuntimeError) as raised:
        node.install_npm_package("onnxruntime-node", "1.30.0")
    message = str(raised.value)
    assert "`npm install onnxruntime-node@1.30.0` failed (npm ERR! code ENOTFOUND)" in message
    assert SETUP in message and "\n" not in message
    assert list((empty_cache / "npm").iterdir()) == [], "a failed install must leave no folder behind"
    with pytest.raises(node.NodeRuntimeError, match="not installed"):
        node.npm_package("onnxruntime-node", "1.30.0")


def test_install_without_npm_says_how_to_install_it(no_node, empty_cache):
    with pytest.raises(node.NodeRuntimeError, match="`npm` is not on PATH.*apt-get install nodejs npm"):
        node.install_npm_package("onnxruntime-node", "1.30.0")


def test_node_setup_without_node_exits_1_with_one_line(no_node, empty_cache, capsys):
    assert main(["node", "setup"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: `node` is not on PATH") and captured.err.count("\n") == 1


def test_the_doctor_warns_with_the_fix_when_the_package_is_missing(empty_cache):
    report = doctor.diagnose()
    (finding,) = [finding for finding in report.findings if finding.name == "onnxruntime-node"]
    assert finding.status == "warn" and finding.section == "Node.js"
    assert "python -m labsupport node setup" in finding.fix


# ---------------------------------------------------------------------------
# Inputs that JSON cannot carry are refused before Node.js starts
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, fragment", [
    (np.array([1.0, np.nan], dtype=np.float32), "NaN or infinity"),
    (np.array([1.0], dtype=np.float16), "dtype float16"),
])
def test_inputs_json_cannot_carry_are_refused(value, fragment):
    with pytest.raises(node.NodeRuntimeError, match=fragment):
        node._to_json("x", value)


@pytest.mark.parametrize("value", [
    np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    np.array([2**62 + 1, -(2**40)], dtype=np.int64),
    np.array([[True], [False]]),
    np.array([-128, 127], dtype=np.int8),
])
def test_tensors_survive_the_json_round_trip_exactly(value):
    back = node._from_json(json.loads(json.dumps(node._to_json("x", value))))
    assert back.dtype == value.dtype and back.shape == value.shape
    assert np.array_equal(back, value)


# ---------------------------------------------------------------------------
# The real onnxruntime-node (installed by `python -m labsupport node setup`)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def installed_package() -> Path:
    """The installed onnxruntime-node; a skip with the reason outside CI, a failure under CI=true."""
    try:
        node.node_version()
        return node.npm_package(node.ORT_NODE_PACKAGE, node.ORT_NODE_VERSION)
    except node.NodeRuntimeError as error:
        if in_ci():
            pytest.fail(f"CI=true, so a missing prerequisite is a failure: {error}")
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def digits_cnn_file(installed_package, tmp_path_factory) -> Path:
    from labsupport.exercises import lab11

    return lab11.save_digits_cnn_onnx(lab11.digits_cnn(), tmp_path_factory.mktemp("node") / "digits_cnn.onnx")


def test_node_gives_exactly_pythons_outputs_on_the_digits_cnn(digits_cnn_file):
    from labsupport.onnx_tools import cpu_session

    images = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
    run = node.run_in_node(digits_cnn_file, {"pixels": images})
    expected = cpu_session(digits_cnn_file).run(None, {"pixels": images})[0]
    assert list(run.outputs) == ["logits"]
    assert run.outputs["logits"].dtype == np.float32 and run.outputs["logits"].shape == (16, 10)
    assert np.array_equal(run.outputs["logits"], expected)


def test_the_versions_that_ran_the_model_are_reported(digits_cnn_file):
    run = node.run_in_node(digits_cnn_file, {"pixels": np.zeros((1, 1, 8, 8), dtype=np.float32)})
    assert run.ort_node_version == node.ORT_NODE_VERSION
    assert run.node_version == node.node_version() and run.node_version.startswith("v")


def test_the_setup_check_passes_on_float_int64_and_bool_tensors(installed_package):
    line = node.check_node_runtime()
    assert "gave exactly the outputs of Python's onnxruntime" in line and "onnxruntime-node 1.30.0" in line


def test_a_model_node_cannot_load_is_one_line_naming_the_file(installed_package, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a model")
    with pytest.raises(node.NodeRuntimeError) as raised:
        node.run_in_node(broken, {"pixels": np.zeros((1, 1, 8, 8), dtype=np.float32)})
    message = str(raised.value)
    assert message.startswith(f"onnxruntime-node could not run {broken}: ") and "\n" not in message


def test_a_wrong_input_shape_is_reported_by_onnxruntime_node(digits_cnn_file):
    with pytest.raises(node.NodeRuntimeError, match="could not run .*(dimension|shape|Got)"):
        node.run_in_node(digits_cnn_file, {"pixels": np.zeros((1, 8, 8), dtype=np.float32)})


def test_node_setup_reports_versions_and_the_check(installed_package, capsys):
    assert main(["node", "setup"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Node.js {node.node_version()}\n")
    assert f"onnxruntime-node 1.30.0 already installed in {installed_package}" in out
    assert "--ignore-scripts" in out and "gave exactly the outputs" in out


def test_the_install_script_we_skip_would_only_fetch_gpu_provider_libraries(installed_package):
    """The facts --ignore-scripts rests on: the skipped script downloads CUDA/TensorRT extras, the CPU build ships."""
    manifest = json.loads((installed_package / "package.json").read_text())
    assert manifest["scripts"]["postinstall"] == "node ./script/install"
    metadata = (installed_package / "script" / "install-metadata.js").read_text()
    assert "'linux/x64': ['cuda12']" in metadata and "Microsoft.ML.OnnxRuntime.Gpu.Linux" in metadata
    assert "https://api.nuget.org/v3/index.json" in metadata
    binaries = installed_package / "bin" / "napi-v6" / "linux" / "x64"
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        assert {"onnxruntime_binding.node", "libonnxruntime.so.1"} <= {path.name for path in binaries.iterdir()}
        assert not (binaries / "libonnxruntime_providers_cuda.so").exists()


def test_a_model_newer_than_onnxruntime_node_is_refused_in_words(installed_package, tmp_path):
    """onnx 1.23 stamps IR 14 by default; Python's onnxruntime 1.32 reads it, onnxruntime-node 1.30 does not."""
    import onnx
    from onnx import TensorProto, helper

    from labsupport.onnx_tools import cpu_session

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = tmp_path / "ir14.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=14), str(path))
    cpu_session(path)
    with pytest.raises(node.NodeRuntimeError) as raised:
        node.run_in_node(path, {"x": np.ones(2, dtype=np.float32)})
    assert str(raised.value) == (f"onnxruntime-node could not run {path}: Load model from {path} failed:"
                                 "Unsupported model IR version: 14, max supported IR version: 13")


def test_onnxruntime_node_ships_its_own_older_library(installed_package):
    from labsupport.native import library_api_version

    library = node.ort_node_library()
    assert library.is_relative_to(installed_package) and library.is_file()
    assert library_api_version(library) == 30, "onnxruntime 1.30's library serves C API versions 1 to 30"
