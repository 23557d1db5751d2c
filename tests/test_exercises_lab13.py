"""Lab 13's exercises: reference answers pass, realistic wrong answers fail, blanks are not attempted.

The reference answers come from each problem's declared solution (``solution_answer``). Exercise 2
is judged against the toolchain ``labsupport.native.find_toolchain`` returns; its tests hand it a
made-up toolchain, so they run on any machine, and one test checks the answer on the real one
(skipped without a C++ toolchain, a failure under ``CI=true``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from scipy import stats

from labsupport import native
from labsupport.exercises import lab13
from labsupport.testing import (
    assert_check_failed,
    assert_check_passed,
    assert_check_unattempted,
    evaluate,
    solution_answer,
)

ROOT = Path(__file__).resolve().parent.parent


def _solution_notebook_cells():
    return nbformat.read(str(ROOT / "solutions" / f"{lab13.LAB}.ipynb"), as_version=4).cells


# ---------------------------------------------------------------------------
# Helpers the notebook uses
# ---------------------------------------------------------------------------

def test_a_missing_prerequisite_is_explained_outside_ci(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    error = native.NativeToolchainError("cmake is not installed; install it with `apt-get install cmake`")
    assert lab13.explain_missing(error) is None
    out = capsys.readouterr().out
    assert out.startswith("Not available on this machine: cmake is not installed; install it with `apt-get install")
    assert "everything else in the lab runs" in out


@pytest.mark.parametrize("value", ["true", "TRUE", "1"])
def test_a_missing_prerequisite_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    error = native.NativeToolchainError("cmake is not installed")
    with pytest.raises(native.NativeToolchainError, match="cmake is not installed"):
        lab13.explain_missing(error)


def test_the_wheels_library_serves_old_api_versions_and_refuses_future_ones_in_words():
    import onnxruntime

    library, _ = native._wheel_library()
    assert lab13.request_api(library, 1) == (True, "")
    served, said = lab13.request_api(library, 999)
    assert not served
    assert said.startswith("The requested API version [999] is not available")
    assert f"Current ORT Version is: {onnxruntime.__version__}" in said


def test_the_trained_cnn_has_the_interface_the_lab_uses(tmp_path):
    import onnx

    from labsupport.models import load_digits_split
    from labsupport.onnx_tools import cpu_session, tensor_dims

    data = load_digits_split()
    path = lab13.save_trained_digits_cnn(tmp_path / "cnn.onnx", data)
    model = onnx.load(path)
    assert (model.ir_version, model.opset_import[0].version) == (10, 17)
    assert tensor_dims(model.graph.input[0]) == ("batch", 1, 8, 8)
    logits = cpu_session(path).run(None, {"pixels": data.x_test.reshape(-1, 1, 8, 8)})[0]
    assert np.mean(logits.argmax(axis=1) == data.y_test) > 0.9


# ---------------------------------------------------------------------------
# q1 CppTensorShape
# ---------------------------------------------------------------------------

def test_cpp_tensor_shape_reference_passes():
    namespace = {}
    exec(lab13.CppTensorShape.solution, namespace)
    answers = {name: namespace[name] for name in lab13.CppTensorShape.vars}
    assert_check_passed(lab13.CppTensorShape, answers)


def test_cpp_tensor_shape_accepts_a_list_like_a_std_vector():
    assert_check_passed(lab13.CppTensorShape, {"cpp_shape": [5, 1, 8, 8], "cpp_bytes": 1280})


@pytest.mark.parametrize("shape, size, fragment", [
    ((-1, 1, 8, 8), 1280, "holds -1"),
    ((5, 64), 1280, "is 2-D"),
    ((5, 8, 8, 1), 1280, "channels-last"),
    ((1, 1, 8, 8), 1280, "batch dimension is not the number of images"),
    ((5, 1, 64), 1280, "has 3 items; expected 4"),
    ("5, 1, 8, 8", 1280, "should be a tuple"),
    ((5, 1, 8, 8), 320, "number of elements"),
    ((5, 1, 8, 8), 2560, "8 bytes per element"),
    ((5, 1, 8, 8), 1284, "too large"),
    ((5.0, 1.0, 8.0, 8.0), 1280, "`cpp_shape` holds floats: the shape CreateTensor takes is a std::vector<int64_t>"),
    (np.array([5, 1, 8, 8], dtype=np.float32), 1280, "`cpp_shape` holds floats"),
])
def test_cpp_tensor_shape_wrong_answers_are_reported(shape, size, fragment):
    assert_check_failed(lab13.CppTensorShape, {"cpp_shape": shape, "cpp_bytes": size}, fragment)


def test_cpp_tensor_shape_accepts_numpy_integers():
    assert_check_passed(lab13.CppTensorShape, {"cpp_shape": np.array([5, 1, 8, 8]), "cpp_bytes": np.int64(1280)})


def test_cpp_tensor_shape_prompt_speaks_of_images_of_digits():
    assert "5 digits images" not in lab13.CppTensorShape.prompt
    assert not [cell for cell in _solution_notebook_cells() if "digits images" in cell.source]


def test_cpp_tensor_shape_placeholder_is_not_attempted():
    assert_check_unattempted(lab13.CppTensorShape)


# ---------------------------------------------------------------------------
# q2 LoaderPath
# ---------------------------------------------------------------------------

@pytest.fixture
def toolchain(tmp_path, monkeypatch):
    """A made-up toolchain whose link folder holds the two links to a stand-in for the wheel's library."""
    library = tmp_path / "site-packages" / "onnxruntime" / "capi" / "libonnxruntime.so.1.32.0"
    library.parent.mkdir(parents=True)
    library.write_bytes(b"\x7fELF")
    link_dir = tmp_path / "cache" / "lib" / "onnxruntime-1.32.0-0000"
    link_dir.mkdir(parents=True)
    for name in ("libonnxruntime.so.1", "libonnxruntime.so"):
        (link_dir / name).symlink_to(library)
    made_up = native.Toolchain(include_dir=tmp_path / "include", headers_from="system", header_api_version=21,
                               library=library, library_version="1.32.0", link_dir=link_dir,
                               cmake=tmp_path / "cmake", cxx=tmp_path / "g++", library_api_version=32)
    monkeypatch.setattr(native, "find_toolchain", lambda **_: made_up)
    return made_up


def test_loader_path_reference_passes(toolchain):
    assert_check_passed(lab13.LoaderPath, {"loaded_library": solution_answer(lab13.LoaderPath, toolchain=toolchain)})


def test_loader_path_accepts_the_path_as_a_string(toolchain):
    assert_check_passed(lab13.LoaderPath, {"loaded_library": str(toolchain.link_dir / "libonnxruntime.so.1")})


def test_loader_path_accepts_other_spellings_of_the_same_link(toolchain, tmp_path, monkeypatch):
    link_dir = toolchain.link_dir
    monkeypatch.setenv("HOME", str(tmp_path))
    for spelling in (link_dir / ".." / link_dir.name / "libonnxruntime.so.1",
                     f"~/{link_dir.relative_to(tmp_path)}/libonnxruntime.so.1",
                     f"{link_dir}/./libonnxruntime.so.1"):
        assert_check_passed(lab13.LoaderPath, {"loaded_library": spelling})


@pytest.mark.parametrize("wrong, fragment", [
    (lambda tool: tool.link_dir / "libonnxruntime.so", "the name the linker uses at build time"),
    (lambda tool: tool.library, "where the library really lives"),
    (lambda tool: tool.link_dir / "libonnxruntime.so.1.32.0", "not the name the program records in its NEEDED"),
    (lambda tool: "/usr/lib/x86_64-linux-gnu/libonnxruntime.so.1", "not in the folder the program's RUNPATH names"),
    (lambda tool: 1, "should be a path"),
    (lambda tool: tool.link_dir, "is the link folder itself, the one the RUNPATH names; give the file in it"),
    (lambda tool: f"{tool.link_dir}/", "is the link folder itself"),
    (lambda tool: tool.link_dir / ".." / tool.link_dir.name / "libonnxruntime.so",
     "the name the linker uses at build time"),
])
def test_loader_path_wrong_answers_are_reported(toolchain, wrong, fragment):
    assert_check_failed(lab13.LoaderPath, {"loaded_library": wrong(toolchain)}, fragment)


def test_loader_path_without_a_toolchain_cannot_be_checked_and_says_why(monkeypatch):
    def missing(**_):
        raise native.NativeToolchainError("cmake is not installed")

    monkeypatch.setattr(native, "find_toolchain", missing)
    result = evaluate(lab13.LoaderPath, {"loaded_library": "/somewhere/libonnxruntime.so.1"})
    assert result.status == "uncheckable"
    assert "no C++ toolchain to check against on this machine: cmake is not installed" in result.message


def test_loader_path_placeholder_is_not_attempted():
    assert_check_unattempted(lab13.LoaderPath)


def test_loader_path_reference_is_what_the_loader_opens_on_this_machine():
    import os
    import subprocess

    try:
        real = native.find_toolchain()
        cli = native.cli_path(toolchain=real)
    except native.NativeToolchainError as error:
        if lab13.in_ci():
            pytest.fail(f"CI=true, so a missing prerequisite is a failure: {error}")
        pytest.skip(str(error))
    answer = solution_answer(lab13.LoaderPath, toolchain=real)
    assert_check_passed(lab13.LoaderPath, {"loaded_library": answer})
    resolved = subprocess.run(["ldd", str(cli)], capture_output=True, text=True, check=True,
                              env={**os.environ, "LD_LIBRARY_PATH": ""}).stdout
    assert f"libonnxruntime.so.1 => {answer} " in resolved


# ---------------------------------------------------------------------------
# q3 OverheadPerCall
# ---------------------------------------------------------------------------

def test_overhead_per_call_reference_passes():
    assert_check_passed(lab13.OverheadPerCall, {"overhead_us": solution_answer(lab13.OverheadPerCall)})


@pytest.mark.parametrize("wrong, fragment", [
    (lambda python, cpp: (np.mean(python) - np.mean(cpp)) * 1e6, "compares means: a few slow calls drag a mean; "
                                                                 "the typical call is the median"),
    (lambda python, cpp: (stats.trim_mean(python, 0.1) - stats.trim_mean(cpp, 0.1)) * 1e6, "compares trimmed means"),
    (lambda python, cpp: (stats.trim_mean(python, 0.25) - stats.trim_mean(cpp, 0.25)) * 1e6,
     "compares trimmed means"),
    (lambda python, cpp: round((np.median(python) - np.median(cpp)) * 1e6, 1),
     "is the overhead rounded to 1 decimal place: return the exact value"),
    (lambda python, cpp: round((np.median(python) - np.median(cpp)) * 1e6),
     "is the overhead rounded to a whole number"),
    (lambda python, cpp: (np.percentile(python, 52) - np.percentile(cpp, 52)) * 1e6,
     "is within 1 % of the overhead but not equal to it"),
    (lambda python, cpp: (np.percentile(python, 90) - np.percentile(cpp, 90)) * 1e6, "= 13.4 is too large."),
    (lambda python, cpp: (np.median(cpp) - np.median(python)) * 1e6, "wrong sign"),
    (lambda python, cpp: (np.median(python) - np.median(cpp)) * 1e3, "in milliseconds"),
    (lambda python, cpp: np.median(python) - np.median(cpp), "in seconds"),
    (lambda python, cpp: np.median(python) / np.median(cpp), "ratio of the two latencies"),
    (lambda python, cpp: (np.min(python) - np.min(cpp)) * 1e6, "compares the fastest calls: a minimum is the best "
                                                               "case, not the typical call"),
    (lambda python, cpp: f"{(np.median(python) - np.median(cpp)) * 1e6:.1f} µs", "return the overhead as a number"),
    (lambda python, cpp: print((np.median(python) - np.median(cpp)) * 1e6), "forget a `return`"),
])
def test_overhead_per_call_wrong_answers_are_reported(wrong, fragment):
    def overhead_us(python_latencies_s, cpp_latencies_s):
        return wrong(python_latencies_s, cpp_latencies_s)

    assert_check_failed(lab13.OverheadPerCall, {"overhead_us": overhead_us}, fragment)


def test_overhead_per_call_hint_names_the_statistic_its_messages_ask_for():
    assert "the median" in lab13.OverheadPerCall.hints[0]


def test_the_cells_before_exercise_3_do_not_compute_its_answer():
    cells = _solution_notebook_cells()
    check = next(index for index, cell in enumerate(cells) if "q3.check()" in cell.source)
    before = [cell.source for cell in cells[:check] if cell.cell_type == "code" and "SOLUTION" not in cell.source]
    assert not [source for source in before if re.search(r"python_run\.\w+\s*-\s*cpp_run", source)]


def test_the_timing_tables_warnings_are_explained_in_the_prose_after_it():
    cells = _solution_notebook_cells()
    table = next(index for index, cell in enumerate(cells) if "show_table([cpp_run" in cell.source)
    prose = cells[table + 1].source.lower()
    assert "spread too wide" in prose and "medians" in prose


def test_the_prose_before_the_model_stamp_cell_does_not_say_node_runs_the_newest_file():
    cells = _solution_notebook_cells()
    stamps = next(index for index, cell in enumerate(cells) if "relu_onnx_defaults.onnx" in cell.source)
    prose = " ".join(cells[stamps - 1].source.split())
    assert "runs it, and Node.js" not in prose and "what Node.js's" in prose


def test_overhead_per_call_placeholder_is_not_attempted():
    assert_check_unattempted(lab13.OverheadPerCall)


# ---------------------------------------------------------------------------
# q4 SquarePlusByHand
# ---------------------------------------------------------------------------

def test_squareplus_reference_passes():
    assert_check_passed(lab13.SquarePlusByHand, {"squareplus": solution_answer(lab13.SquarePlusByHand)})


@pytest.mark.parametrize("wrong, fragment", [
    (lambda x, b: 0.5 * (x.astype(np.float64) + np.sqrt(x.astype(np.float64) ** 2 + b)),
     "returned float64 values: the operator's input and output are float32"),
    (lambda x, b: (x + np.sqrt(x * x + np.float64(b))) / 2, "returned float64 values"),
    (lambda x, b: ((x + np.sqrt(x * x + b)) / 2).astype(np.float16), "returned float16 values; the operator's input "
                                                                       "and output are float32"),
    (lambda x, b: torch.from_numpy((x + np.sqrt(x * x + b)) / 2), "returned a Tensor; return a NumPy array"),
    (lambda x, b: ((x + np.sqrt(x * x + b)) / 2).tolist(), "returned a list; return a NumPy array"),
    (lambda x, b: np.maximum(x, 0), "ReLU's values"),
    (lambda x, b: (x + np.sqrt(x * x)) / 2, "ReLU's values"),
    (lambda x, b: x + np.sqrt(x * x + b), "twice the expected value"),
    (lambda x, b: (x + np.sqrt(x * x + b * b)) / 2, "differ from the reference"),
    (lambda x, b: np.log1p(np.exp(x)), "differ from the reference"),
    (lambda x, b: ((x + np.sqrt(x * x + b)) / 2).ravel(), "has shape"),
])
def test_squareplus_wrong_answers_are_reported(wrong, fragment):
    def squareplus(x, b):
        return wrong(x, b)

    assert_check_failed(lab13.SquarePlusByHand, {"squareplus": squareplus}, fragment)


def test_squareplus_placeholder_is_not_attempted():
    assert_check_unattempted(lab13.SquarePlusByHand)
