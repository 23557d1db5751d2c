"""labsupport.native: the toolchain search, the Debian header fetch, the C++ CLI and the custom-op library.

The builds are shared by the whole session (``built`` fixture) and live in the labsupport cache,
so a second run only checks that they are up to date. The tests that build need what
``python -m labsupport native setup`` finds or fetches: without it they are skipped with the
reason, except under ``CI=true``, where a missing prerequisite is a failure.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from labsupport import native
from labsupport.cli import main as cli_main

SETUP = "python -m labsupport native setup"


def missing_prerequisite(error: Exception) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, so a missing prerequisite is a failure: {error}")
    pytest.skip(str(error))


@pytest.fixture(scope="session")
def toolchain() -> native.Toolchain:
    try:
        return native.find_toolchain()
    except native.NativeToolchainError as error:
        missing_prerequisite(error)


@pytest.fixture(scope="session")
def built(toolchain) -> dict[str, Path]:
    """The CLI and the custom-op library, built once per session (incrementally, in the cache)."""
    return {"cli": native.cli_path(toolchain=toolchain), "custom_op": native.custom_op_library(toolchain=toolchain)}


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """A small CNN (Conv, Relu, Flatten, Gemm, Softmax) with a dynamic batch, and a one-node SquarePlus model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("native_models")
    rng = np.random.default_rng(13)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)
               for name, shape in (("kernel", (4, 1, 3, 3)), ("bias", (4,)), ("dense", (4 * 6 * 6, 10)),
                                   ("dense_bias", (10,)))]
    nodes = [helper.make_node("Conv", ["image", "kernel", "bias"], ["conv"]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("Flatten", ["relu"], ["flat"]),
             helper.make_node("Gemm", ["flat", "dense", "dense_bias"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
                              weights)
    cnn = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(cnn)
    onnx.save(cnn, folder / "cnn.onnx")
    node = helper.make_node(native.CUSTOM_OP_TYPE, ["x"], ["y"], domain=native.CUSTOM_OP_DOMAIN, b=1.0)
    graph = helper.make_graph([node], "squareplus", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])])
    custom = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                     helper.make_opsetid(native.CUSTOM_OP_DOMAIN, 1)])
    onnx.save(custom, folder / "squareplus.onnx")
    (folder / "not_a_model.onnx").write_text("this is text, not a protobuf")
    return {"cnn": folder / "cnn.onnx", "custom": folder / "squareplus.onnx", "bad": folder / "not_a_model.onnx"}


def python_run(model: Path, feeds: dict, library: Path | None = None) -> list[np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if library is not None:
        options.register_custom_ops_library(str(library))
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# --- the toolchain search (no build) ---------------------------------------------------------------

def test_cache_dir_follows_the_environment_override(monkeypatch, tmp_path):
    monkeypatch.setenv("LABSUPPORT_CACHE_DIR", str(tmp_path / "cache"))
    assert native.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LABSUPPORT_CACHE_DIR")
    assert native.cache_dir().name == "labsupport"


@pytest.mark.parametrize(("tool", "fix"), [("cmake", "apt-get install cmake"), ("g++", "apt-get install g++")])
def test_a_missing_build_tool_is_named_with_its_install_command(monkeypatch, tool, fix):
    real_which = shutil.which
    monkeypatch.delenv("CXX", raising=False)
    hidden = {"cmake"} if tool == "cmake" else {"g++", "c++", "clang++"}
    monkeypatch.setattr(native.shutil, "which", lambda name: None if name in hidden else real_which(name))
    with pytest.raises(native.NativeToolchainError, match=fix) as raised:
        native.find_toolchain()
    assert "\n" not in str(raised.value)


def test_ort_root_without_headers_is_refused_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("ORT_ROOT", str(tmp_path))
    with pytest.raises(native.NativeToolchainError, match="ORT_ROOT=.* has no include/onnxruntime_cxx_api.h.*unset it"):
        native.find_toolchain()


def test_without_any_headers_the_error_names_native_setup(monkeypatch, tmp_path):
    monkeypatch.delenv("ORT_ROOT", raising=False)
    monkeypatch.setenv("LABSUPPORT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_SYSTEM_INCLUDE_DIRS", (str(tmp_path / "nowhere"),))
    with pytest.raises(native.NativeToolchainError, match=f"no ONNX Runtime C.. headers.*`{SETUP}`"):
        native.find_toolchain()
    assert not (tmp_path / "debian").exists(), "find_toolchain() without fetch=True must not download anything"


def test_the_debian_mirror_is_the_machines_own_with_its_keyring(monkeypatch, tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("# deb http://old.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\n# a comment inside the stanza\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main contrib\nSigned-By: /usr/share/keyrings/debian.gpg\n")
    (tmp_path / "sources.list.d" / "other.list").write_text("deb [arch=amd64] https://vendor.example/apt stable main\n")
    (tmp_path / "os-release").write_text('ID=debian\nVERSION_CODENAME=bookworm\n')
    monkeypatch.setattr(native, "_APT_DIR", tmp_path)
    monkeypatch.setattr(native, "_OS_RELEASE", tmp_path / "os-release")
    assert native._debian_mirror() == ("http://mirror.example/debian", "/usr/share/keyrings/debian.gpg")
    (tmp_path / "os-release").write_text('ID=ubuntu\nVERSION_CODENAME=noble\n')
    with pytest.raises(native.NativeToolchainError, match="no Debian archive.*set ORT_ROOT"):
        native._debian_mirror()


def test_the_fetch_uses_a_private_apt_configuration_and_keeps_only_headers(monkeypatch, tmp_path):
    """apt-get and dpkg-deb are stood in for: every apt option points into the cache, the suite is trixie."""
    monkeypatch.setenv("LABSUPPORT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_debian_mirror", lambda: ("http://mirror.example/debian", "/keyring.gpg"))
    monkeypatch.setattr(native, "_dpkg_architecture", lambda: "amd64")
    commands = []

    def fake_run(command, cwd=None, **_):
        commands.append((command, Path(cwd)))
        if command[0] == "apt-get" and command[-1] == native._DEBIAN_PACKAGE:
            (Path(cwd) / "libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb").write_bytes(b"a package")
        elif command[0] == "dpkg-deb":
            headers = Path(command[-1]) / "usr" / "include" / "onnxruntime"
            headers.mkdir(parents=True)
            (headers / "onnxruntime_cxx_api.h").write_text("// C++\n")
            (headers / "onnxruntime_c_api.h").write_text("#define ORT_API_VERSION 21\n")
            (Path(command[-1]) / "usr" / "lib").mkdir()
            (Path(command[-1]) / "usr" / "lib" / "libonnxruntime.so").symlink_to("/nonexistent/libonnxruntime.so.1")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(native.subprocess, "run", fake_run)
    record = native._fetch_debian_headers()
    cache = tmp_path / "cache"
    apt_calls = [command for command, _ in commands if command[0] == "apt-get"]
    assert [command[-1] for command in apt_calls] == ["update", native._DEBIAN_PACKAGE]
    for command in apt_calls:
        settings = dict(text.split("=", 1) for text in command if "=" in text and text.startswith("Dir::"))
        assert {"Dir::State", "Dir::State::Lists", "Dir::State::status", "Dir::Cache", "Dir::Etc::SourceList",
                "Dir::Etc::SourceParts"} <= settings.keys()
        assert all(Path(value).is_relative_to(cache) for value in settings.values()), settings
    assert record["version"] == "1.21.0+dfsg-1" and record["suite"] == "trixie"
    kept = native._debian_dir()
    assert sorted(path.name for path in (kept / "include" / "onnxruntime").iterdir()) == [
        "onnxruntime_c_api.h", "onnxruntime_cxx_api.h"]
    assert not list(kept.rglob("*.so")), "only the headers are kept: the package's .so link points nowhere"
    assert not (kept.parent / f"{kept.name}.apt").exists(), "the private APT folders are removed after the fetch"


def test_the_private_sources_list_names_the_mirror_with_only_the_suite_changed(monkeypatch, tmp_path):
    monkeypatch.setenv("LABSUPPORT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_debian_mirror", lambda: ("http://mirror.example/debian", "/keyring.gpg"))
    monkeypatch.setattr(native, "_dpkg_architecture", lambda: "amd64")
    written = []

    def fail_after_update(command, cwd=None, **_):
        source_list = next(text.split("=", 1)[1] for text in command if text.startswith("Dir::Etc::SourceList="))
        written.append(Path(source_list).read_text())
        return subprocess.CompletedProcess(command, 100, "", "E: Failed to fetch http://mirror.example/debian\n")

    monkeypatch.setattr(native.subprocess, "run", fail_after_update)
    with pytest.raises(native.NativeToolchainError, match="apt-get update.*failed.*E: Failed to fetch.*network"):
        native._fetch_debian_headers()
    assert written[0].split()[-3:] == ["http://mirror.example/debian", "trixie", "main"]
    assert "signed-by=/keyring.gpg" in written[0]


# --- the toolchain found on this machine --------------------------------------------------------

def test_toolchain_headers_are_older_than_or_as_new_as_the_library(toolchain):
    assert toolchain.headers_from in {"ORT_ROOT", "system", "Debian package cache"}
    assert (toolchain.include_dir / "onnxruntime_cxx_api.h").is_file()
    assert 1 <= toolchain.header_api_version <= toolchain.library_api_version
    if toolchain.headers_from == "Debian package cache":
        assert toolchain.header_api_version == 21, "Debian trixie ships onnxruntime 1.21"
    text = toolchain.describe()
    assert f"ORT_API_VERSION {toolchain.header_api_version}" in text and toolchain.headers_from in text


def test_the_library_serves_the_api_version_of_its_minor_release(toolchain):
    import onnxruntime

    assert toolchain.library.name.startswith("libonnxruntime.so.")
    assert toolchain.library.parent == Path(onnxruntime.__file__).parent / "capi"
    assert toolchain.library_api_version == int(onnxruntime.__version__.split(".")[1])


def test_the_link_dir_provides_the_soname_and_the_linker_name(toolchain):
    for name in ("libonnxruntime.so.1", "libonnxruntime.so"):
        assert (toolchain.link_dir / name).resolve() == toolchain.library.resolve()


def test_headers_newer_than_the_library_are_refused(toolchain, monkeypatch, tmp_path):
    include = tmp_path / "include"
    shutil.copytree(toolchain.include_dir, include)
    header = include / "onnxruntime_c_api.h"
    header.write_text(header.read_text().replace(f"ORT_API_VERSION {toolchain.header_api_version}",
                                                 f"ORT_API_VERSION {toolchain.library_api_version + 1}", 1))
    monkeypatch.setenv("ORT_ROOT", str(tmp_path))
    with pytest.raises(native.NativeToolchainError, match=f"ORT_API_VERSION {toolchain.library_api_version + 1}.*"
                                                          f"only up to {toolchain.library_api_version}"):
        native.find_toolchain()


def test_ort_root_headers_come_before_everything_else(toolchain, monkeypatch, tmp_path):
    shutil.copytree(toolchain.include_dir, tmp_path / "include")
    monkeypatch.setenv("ORT_ROOT", str(tmp_path))
    found = native.find_toolchain()
    assert (found.headers_from, found.include_dir) == ("ORT_ROOT", tmp_path / "include")


def test_native_status_prints_what_is_used_and_the_skew(toolchain, capsys):
    assert cli_main(["native", "status"]) == 0
    printed = capsys.readouterr().out
    assert f"headers API {toolchain.header_api_version} <= library API {toolchain.library_api_version}" in printed
    assert "ORT_ROOT is not set" in printed or "ORT_ROOT=" in printed


def test_native_status_without_headers_fails_with_the_setup_command(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("ORT_ROOT", raising=False)
    monkeypatch.setenv("LABSUPPORT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_SYSTEM_INCLUDE_DIRS", ())
    assert cli_main(["native", "status"]) == 1
    assert SETUP in capsys.readouterr().err


def test_doctor_reports_the_headers_with_both_api_versions(toolchain):
    from labsupport import doctor

    report = doctor.DoctorReport()
    doctor._check_native_headers(report)
    (finding,) = report.findings
    assert finding.status == "ok"
    assert f"C API {toolchain.header_api_version}" in finding.detail
    assert f"serves up to {toolchain.library_api_version}" in finding.detail


# --- builds ----------------------------------------------------------------------------------------

def test_the_cli_records_the_soname_and_an_rpath_to_the_link_dir(built, toolchain):
    dynamic = subprocess.run(["readelf", "-d", str(built["cli"])], capture_output=True, text=True, check=True).stdout
    assert "[libonnxruntime.so.1]" in dynamic
    assert str(toolchain.link_dir) in dynamic
    assert built["cli"].is_relative_to(native.cache_dir() / "build")


def test_the_custom_op_library_exports_only_register_custom_ops_and_needs_no_runtime(built):
    exported = subprocess.run(["nm", "-D", "--defined-only", str(built["custom_op"])], capture_output=True, text=True,
                              check=True).stdout.split()
    assert [name for name in exported if len(name) > 1 and not name.startswith("0")] == ["RegisterCustomOps"]
    dynamic = subprocess.run(["readelf", "-d", str(built["custom_op"])], capture_output=True, text=True).stdout
    assert "libonnxruntime" not in dynamic


def test_a_second_build_reuses_the_first(built, toolchain):
    before = built["cli"].stat().st_mtime_ns
    started = time.perf_counter()
    native.build_project("infer_cli", toolchain=toolchain)
    assert built["cli"].stat().st_mtime_ns == before
    assert time.perf_counter() - started < 30


def test_another_toolchain_builds_into_its_own_folder_and_leaves_the_first_alone(built, toolchain, tmp_path):
    other_links = tmp_path / "other-links"
    shutil.copytree(toolchain.link_dir, other_links, symlinks=True)
    other = dataclasses.replace(toolchain, link_dir=other_links)  # a second checkout's virtual environment, say
    before = built["cli"].stat().st_mtime_ns
    other_build = native.build_project("infer_cli", toolchain=other)
    assert other_build != built["cli"].parent and (other_build / "infer_cli").is_file()
    assert built["cli"].stat().st_mtime_ns == before, "building for another toolchain must not touch this build"
    shutil.rmtree(other_build)


def test_a_compile_error_is_reported_with_its_first_line(toolchain, monkeypatch, tmp_path):
    source = tmp_path / "broken"
    source.mkdir()
    (source / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.16)\nproject(broken LANGUAGES CXX)\n"
                                           "find_package(onnxruntime CONFIG REQUIRED)\n"
                                           "add_executable(broken broken.cpp)\n"
                                           "target_link_libraries(broken PRIVATE onnxruntime::onnxruntime)\n")
    (source / "broken.cpp").write_text("#include <onnxruntime_cxx_api.h>\nint main() { return undeclared_name; }\n")
    monkeypatch.setenv("LABSUPPORT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_source_dir", lambda name: source)
    with pytest.raises(native.NativeToolchainError, match=r"building broken failed: .*broken\.cpp:2:.*error: "
                                                          r".undeclared_name. was not declared") as raised:
        native.build_project("broken", toolchain=toolchain)
    assert "\n" not in str(raised.value)


def test_an_unknown_project_names_the_projects():
    with pytest.raises(native.NativeToolchainError, match="no CMake project 'nope'.*custom_op.*infer_cli"):
        native.build_project("nope")


# --- the C++ CLI ------------------------------------------------------------------------------------

def test_the_cli_prints_the_inputs_and_outputs_with_symbolic_dims(built, models):
    completed = native.run_cli([models["cnn"]])
    assert completed.returncode == 0, completed.stderr
    assert "input  image: float32 [batch, 1, 8, 8]" in completed.stdout
    assert "output probabilities: float32 [batch, 10]" in completed.stdout


def test_the_cli_output_equals_pythons(built, models, tmp_path):
    images = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    completed = native.run_cli([models["cnn"], "--input", f"image={tmp_path / 'images.npy'}",
                                "--output-dir", tmp_path / "out"])
    assert completed.returncode == 0, completed.stderr
    from_cpp = np.load(tmp_path / "out" / "probabilities.npy")
    (from_python,) = python_run(models["cnn"], {"image": images})
    assert from_cpp.shape == from_python.shape == (16, 10) and from_cpp.dtype == np.float32
    max_abs_diff = float(np.abs(from_cpp - from_python).max())
    print(f"C++ CLI vs Python, batch 16: max |Δ| = {max_abs_diff:.3g}")
    assert max_abs_diff <= 1e-5


@pytest.mark.parametrize(("case", "message"), [
    ("missing model", "error: no model file .*missing.onnx; check the path"),
    ("bad model", "error: ONNX Runtime cannot load .*not_a_model.onnx: .*Protobuf parsing failed"),
    ("missing input", "error: cannot open input file .*absent.npy: No such file or directory"),
    ("wrong shape", r"error: input 'image' expects float32 \[batch, 1, 8, 8\], but .*wrong.npy holds "
                    r"float32 \[2, 1, 8, 9\]"),
    ("wrong type", r"error: input 'image' expects float32 .*holds float64 \[2, 1, 8, 8\]; convert it with "
                   r"\.astype\(np\.float32\)"),
    ("unknown input", "error: the model has no input named 'pixels'; its inputs are image"),
])
def test_cli_errors_are_one_line_and_exit_2(built, models, tmp_path, case, message):
    np.save(tmp_path / "wrong.npy", np.zeros((2, 1, 8, 9), np.float32))
    np.save(tmp_path / "double.npy", np.zeros((2, 1, 8, 8), np.float64))
    arguments = {"missing model": [tmp_path / "missing.onnx"],
                 "bad model": [models["bad"]],
                 "missing input": [models["cnn"], "--input", tmp_path / "absent.npy"],
                 "wrong shape": [models["cnn"], "--input", tmp_path / "wrong.npy"],
                 "wrong type": [models["cnn"], "--input", tmp_path / "double.npy"],
                 "unknown input": [models["cnn"], "--input", f"pixels={tmp_path / 'wrong.npy'}"]}[case]
    completed = native.run_cli(arguments)
    assert completed.returncode == 2
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    assert re.search(message, completed.stderr), completed.stderr


def test_timing_mode_gives_one_latency_per_call(built, models):
    latencies = native.time_cli(models["cnn"], calls=25, warmup=3)
    assert latencies.shape == (25,)
    assert (latencies > 0).all() and (latencies < 1).all()


# --- the custom operator ------------------------------------------------------------------------

def test_the_custom_op_in_python_equals_numpy(built, models):
    x = np.linspace(-6, 6, 20, dtype=np.float32).reshape(4, 5)
    (y,) = python_run(models["custom"], {"x": x}, library=built["custom_op"])
    max_abs_diff = float(np.abs(y - native.squareplus_reference(x, b=1.0)).max())
    print(f"SquarePlus in Python's ONNX Runtime vs NumPy: max |Δ| = {max_abs_diff:.3g}")
    assert max_abs_diff <= 1e-6


def test_the_custom_op_in_cpp_equals_numpy(built, models, tmp_path):
    x = np.linspace(-6, 6, 20, dtype=np.float32).reshape(4, 5)
    np.save(tmp_path / "x.npy", x)
    completed = native.run_cli([models["custom"], "--custom-op-library", built["custom_op"], "--input",
                                tmp_path / "x.npy", "--output-dir", tmp_path])
    assert completed.returncode == 0, completed.stderr
    max_abs_diff = float(np.abs(np.load(tmp_path / "y.npy") - native.squareplus_reference(x, b=1.0)).max())
    print(f"SquarePlus in the C++ CLI vs NumPy: max |Δ| = {max_abs_diff:.3g}")
    assert max_abs_diff <= 1e-6


def test_the_squareplus_attribute_defaults_to_4(built, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node(native.CUSTOM_OP_TYPE, ["x"], ["y"], domain=native.CUSTOM_OP_DOMAIN)
    graph = helper.make_graph([node], "default_b", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(native.CUSTOM_OP_DOMAIN, 1)])
    onnx.save(model, tmp_path / "default_b.onnx")
    (y,) = python_run(tmp_path / "default_b.onnx", {"x": np.array([-2, 0, 2], np.float32)}, built["custom_op"])
    np.testing.assert_allclose(y, native.squareplus_reference([-2, 0, 2]), rtol=1e-6)
    assert y[1] == pytest.approx(1.0), "at 0, SquarePlus gives sqrt(b) / 2 = 1 for b = 4"


def test_without_the_library_python_says_the_op_is_not_registered(models):
    with pytest.raises(Exception, match=r"ai\.onnx\.labsupport:SquarePlus\(-1\) is not a registered function/op"):
        python_run(models["custom"], {"x": np.zeros((1, 5), np.float32)})


def test_without_the_library_the_cli_says_the_op_is_not_registered(built, models):
    completed = native.run_cli([models["custom"]])
    assert completed.returncode == 2
    assert "ai.onnx.labsupport:SquarePlus(-1) is not a registered function/op" in completed.stderr


def test_a_missing_custom_op_library_is_one_line(built, models, tmp_path):
    completed = native.run_cli([models["custom"], "--custom-op-library", tmp_path / "libnothing.so"])
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"error: no custom-op library {tmp_path / 'libnothing.so'}; build it first"


def test_a_custom_op_built_with_newer_headers_than_the_runtime_is_refused_in_words(toolchain, monkeypatch, tmp_path):
    """The broken direction of the skew: the library asks for an API the runtime does not serve and says so."""
    import dataclasses

    import onnxruntime

    newer = toolchain.library_api_version + 1
    include = tmp_path / "include"
    shutil.copytree(toolchain.include_dir, include)
    header = include / "onnxruntime_c_api.h"
    header.write_text(header.read_text().replace(f"ORT_API_VERSION {toolchain.header_api_version}",
                                                 f"ORT_API_VERSION {newer}", 1))
    monkeypatch.setenv("LABSUPPORT_CACHE_DIR", str(tmp_path / "cache"))
    too_new = dataclasses.replace(toolchain, include_dir=include, header_api_version=newer)
    library = native.build_project("custom_op", toolchain=too_new) / native.CUSTOM_OP_LIBRARY
    with pytest.raises(Exception, match=f"built with headers of C API {newer}, newer than this ONNX Runtime "
                                        f"\\({onnxruntime.__version__}\\)"):
        onnxruntime.SessionOptions().register_custom_ops_library(str(library))
