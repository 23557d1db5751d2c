"""``python -m labsupport check MODEL.onnx``, run as a learner would (one process per case, ~1 s each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.test_validate import affine_model


def run_check(*arguments: str, cwd, env=None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "LABSUPPORT_MAX_INPUT_BYTES"}
    environment.update({"LABSUPPORT_DATA_DIR": str(cwd), **(env or {})})
    return subprocess.run([sys.executable, "-m", "labsupport", "check", *arguments], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=environment)


def assert_one_line_error(completed: subprocess.CompletedProcess, text: str, status: int = 2) -> None:
    """Exit ``status``, nothing on stdout, and exactly ``error: {text}`` on stderr: no traceback."""
    assert (completed.returncode, completed.stdout, completed.stderr) == (status, "", f"error: {text}\n")


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save_model(model, str(path))
    return path


def test_a_valid_model_exits_0_with_interface_runs_and_fp16_note(tmp_path):
    affine_model(tmp_path / "affine.onnx")
    completed = run_check("affine.onnx", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    out = completed.stdout
    assert out.startswith("affine.onnx: ") and "ir_version 10" in out
    assert "dynamic: axis 0 (batch)" in out and "y                tensor(float)    [batch, 3]" in out
    assert "Random inputs of the declared types (x (16, 4) float32)" in out
    for check in ("checker", "load", "batch 1", "batch 3", "batch 16", "fp16"):
        assert f"\n{check} " in out
    assert "fp16 note:" in out and out.rstrip().endswith("affine.onnx: valid.")


@pytest.mark.parametrize("name, content, fragment", [
    ("missing.onnx", None, "missing.onnx: no such file"),
    ("cut.onnx", "truncate", "cut.onnx: starts like an ONNX file but cannot be parsed"),
    ("notes.onnx", b'{"weights": [1, 2]}', "notes.onnx: is not an ONNX file: it looks like a JSON or text file"),
])
def test_an_unreadable_file_exits_2_with_one_line_on_stderr(tmp_path, name, content, fragment):
    if content == "truncate":
        data = affine_model(tmp_path / "affine.onnx").read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    elif content is not None:
        (tmp_path / name).write_bytes(content)
    completed = run_check(name, cwd=tmp_path)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith(f"error: {fragment}")


def test_a_model_failing_the_checker_exits_1_with_the_checker_message(tmp_path):
    graph = helper.make_graph([helper.make_node("Add", ["x", "nowhere"], ["y"])], "dangling",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    _save(graph, tmp_path / "dangling.onnx")
    completed = run_check("dangling.onnx", cwd=tmp_path)
    assert completed.returncode == 1 and completed.stdout == ""
    assert completed.stderr.count("\n") == 1
    assert completed.stderr.startswith("error: dangling.onnx: fails onnx.checker.check_model(full_check=True): ")
    assert "nowhere" in completed.stderr


def test_a_model_whose_outputs_depend_on_the_batch_exits_1_after_the_table(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0], keepdims=1),
         helper.make_node("Sub", ["x", "mean"], ["y"])],
        "centre", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    _save(graph, tmp_path / "centre.onnx")
    completed = run_check("centre.onnx", "--batch-sizes", "2,8", "--no-fp16", cwd=tmp_path)
    assert completed.returncode == 1
    assert re.search(r"^batch 2 +FAIL +2 .*vs this model at batch 8 \(no reference given\)", completed.stdout,
                     re.MULTILINE)
    assert "fp16" not in completed.stdout
    assert completed.stderr == "error: centre.onnx: batch 2 failed; see the table above.\n"


def test_help_documents_the_three_exit_statuses():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "check", "--help"], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0
    help_text = completed.stdout
    assert "exit status:\n  0  the model is valid" in help_text
    assert "\n  1  the model was read but fails a check" in help_text
    assert "\n  2  the model cannot be read or used" in help_text
    assert "--max-input-bytes" in help_text and "LABSUPPORT_MAX_INPUT_BYTES" in help_text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_exits_2_at_once_instead_of_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "model.onnx")
    assert_one_line_error(run_check("model.onnx", cwd=tmp_path),
                          "model.onnx: is a named pipe (FIFO), not a file; give the path of the .onnx file.")


def test_a_path_through_a_file_exits_2_naming_the_file(tmp_path):
    affine_model(tmp_path / "affine.onnx")
    assert_one_line_error(run_check("affine.onnx/model.onnx", cwd=tmp_path),
                          "affine.onnx/model.onnx: affine.onnx is a file, not a folder, so nothing is inside it; "
                          "check the path.")


def test_a_saved_tensor_exits_2_as_a_protobuf_message_that_is_not_a_model(tmp_path):
    onnx.save_tensor(onnx.numpy_helper.from_array(np.ones((3, 4), np.float32), "w"), str(tmp_path / "w.onnx"))
    assert_one_line_error(run_check("w.onnx", cwd=tmp_path),
                          "w.onnx: is a protobuf message but not an ONNX model: it reads as an onnx.TensorProto "
                          "(a single tensor, as onnx.save_tensor writes); give the path of the model instead.")


def _sequence_model(path, x_type=TensorProto.FLOAT, dims=("batch", "sequence")):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", x_type, dims)],
                              [helper.make_tensor_value_info("y", x_type, dims)])
    return _save(graph, path)


def test_a_declared_shape_too_large_for_memory_exits_2_with_its_size_and_the_budget(tmp_path):
    _sequence_model(tmp_path / "huge.onnx", dims=[100000, 100000, 100000])
    assert_one_line_error(run_check("huge.onnx", cwd=tmp_path),
                          "huge.onnx: the inputs would take 3.6 PiB (4,000,000,000,000,000 bytes) for 'x' "
                          "[100000, 100000, 100000] float32, more than the input budget of 1.0 GiB: use smaller sizes, "
                          "or raise the budget if this machine has the memory (max_input_bytes=, --max-input-bytes or "
                          "LABSUPPORT_MAX_INPUT_BYTES).")


def test_a_dim_too_large_for_memory_exits_2_before_allocating(tmp_path):
    _sequence_model(tmp_path / "seq.onnx")
    completed = run_check("seq.onnx", "--dim", "sequence=10000000000", cwd=tmp_path)
    assert completed.returncode == 2 and completed.stderr.count("\n") == 1
    assert completed.stderr.startswith("error: seq.onnx: the inputs would take 596.0 GiB (640,000,000,000 bytes) "
                                       "for 'x' [16, 10000000000] float32, more than the input budget of 1.0 GiB")


def test_the_budget_is_set_by_flag_or_environment_variable(tmp_path):
    affine_model(tmp_path / "affine.onnx")
    refused = "affine.onnx: the inputs would take 256 bytes for 'x' [16, 4] float32, more than the input budget of"
    completed = run_check("affine.onnx", "--max-input-bytes", "200", cwd=tmp_path)
    assert completed.returncode == 2 and completed.stderr.startswith(f"error: {refused} 200 bytes")
    completed = run_check("affine.onnx", cwd=tmp_path, env={"LABSUPPORT_MAX_INPUT_BYTES": "100"})
    assert completed.returncode == 2 and completed.stderr.startswith(f"error: {refused} 100 bytes")
    assert_one_line_error(run_check("affine.onnx", "--max-input-bytes", "lots", cwd=tmp_path),
                          "the input budget 'lots' is not a positive number of bytes; give e.g. 1073741824, 512MiB or "
                          "4GiB.")


def test_an_unknown_dim_name_exits_2_listing_the_model_dimensions(tmp_path):
    _sequence_model(tmp_path / "seq.onnx")
    assert_one_line_error(run_check("seq.onnx", "--dim", "seq=12", cwd=tmp_path),
                          "seq.onnx: no input has a dynamic dimension named 'seq'; its named dynamic dimensions are "
                          "['sequence']; axis 0 ('batch') is set by the batch sizes.")


def test_a_bfloat16_input_exits_2_pointing_to_validate_model_with_your_own_feeds(tmp_path):
    _sequence_model(tmp_path / "bf16.onnx", TensorProto.BFLOAT16, ["batch", 4])
    assert_one_line_error(run_check("bf16.onnx", cwd=tmp_path),
                          "bf16.onnx: input 'x' is a tensor(bfloat16), which NumPy has no type for, so random values "
                          "cannot be made for it; validate it from Python with your own feeds: "
                          "validate_model(path, feeds={'x': np.asarray(values, dtype=ml_dtypes.bfloat16)}).")


def test_a_fixed_batch_model_runs_once_and_is_never_compared_with_itself(tmp_path):
    affine_model(tmp_path / "fixed.onnx", batch=3)
    completed = run_check("fixed.onnx", "--batch-sizes", "1,16", "--no-fp16", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "Axis 0 is fixed, so the model runs once;" in completed.stdout
    assert "vs this model" not in completed.stdout and "reference for the other" not in completed.stdout
    assert re.search(r"^batch 3 +ok +3 +ran \(axis 0 is not dynamic", completed.stdout, re.MULTILINE)


def test_a_model_without_inputs_runs_once_without_a_batch_none_row(tmp_path):
    value = onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32))
    constant = helper.make_node("Constant", [], ["y"], value=value)
    graph = helper.make_graph([constant], "constant", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    _save(graph, tmp_path / "constant.onnx")
    completed = run_check("constant.onnx", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "The model has no inputs: it runs once" in completed.stdout and "None" not in completed.stdout
    assert re.search(r"^run +ok +ran \(the model has no inputs; no reference given\)", completed.stdout, re.MULTILINE)
