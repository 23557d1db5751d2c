"""``python -m labsupport check MODEL.onnx``, run as a learner would (one process per case, ~1 s each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import onnx
import pytest
from onnx import TensorProto, helper

from tests.test_validate import affine_model


def run_check(*arguments: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labsupport", "check", *arguments], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "LABSUPPORT_DATA_DIR": str(cwd)})


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
        [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[0], keepdims=1), helper.make_node("Sub", ["x", "mean"], ["y"])],
        "centre", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    _save(graph, tmp_path / "centre.onnx")
    completed = run_check("centre.onnx", "--batch-sizes", "2,8", "--no-fp16", cwd=tmp_path)
    assert completed.returncode == 1
    assert re.search(r"^batch 2 +FAIL +2 .*vs this model at batch 8 \(no reference given\)", completed.stdout, re.MULTILINE)
    assert "fp16" not in completed.stdout
    assert completed.stderr == "error: centre.onnx: batch 2 failed; see the table above.\n"
