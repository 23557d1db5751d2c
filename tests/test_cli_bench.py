"""``python -m labsupport bench MODEL.onnx``, run as a learner would (one process per case, ~1 s each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.test_validate import affine_model


def run_bench(*arguments: str, cwd, env=None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "LABSUPPORT_MAX_INPUT_BYTES"}
    environment.update({"LABSUPPORT_DATA_DIR": str(cwd), **(env or {})})
    return subprocess.run([sys.executable, "-m", "labsupport", "bench", *arguments], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=environment)


def assert_one_line_error(completed: subprocess.CompletedProcess, prefix: str) -> None:
    """Exit 2, nothing on stdout, and one line on stderr that starts ``error: {prefix}``: no traceback."""
    assert (completed.returncode, completed.stdout) == (2, ""), completed.stderr
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith(f"error: {prefix}"), completed.stderr


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save_model(model, str(path))
    return path


def test_a_dynamic_batch_model_gets_one_row_per_thread_count_and_batch_size(tmp_path):
    affine_model(tmp_path / "affine.onnx")
    completed = run_bench("affine.onnx", "--batch-sizes", "1,16", "--threads", "1,2", "--repeats", "30",
                          "--warmup", "2", cwd=tmp_path)
    assert completed.returncode == 0 and completed.stderr == "", completed.stderr
    out = completed.stdout
    assert out.startswith("affine.onnx: ") and "dynamic: axis 0 (batch)" in out
    assert "2 warm-up runs, then 30 timed runs" in out
    rows = re.findall(r"^threads (\d) +(\d+) +(\d+) +[\d.]+ +[\d.]+", out, re.MULTILINE)
    assert rows == [("1", "1", "30"), ("1", "16", "30"), ("2", "1", "30"), ("2", "16", "30")]
    assert re.search(r"^highest throughput: batch (1|16) with threads [12] \([\d,]+ items/s, p50 [\d.]+ ms\)$", out,
                     re.MULTILINE)


def test_too_few_repeats_are_warned_about_under_the_table(tmp_path):
    affine_model(tmp_path / "affine.onnx")
    completed = run_bench("affine.onnx", "--batch-sizes", "4", "--repeats", "3", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "warning: threads default at batch 4: only 3 timed calls (fewer than 20)" in completed.stdout


def test_a_fixed_batch_model_runs_at_its_declared_size_only(tmp_path):
    affine_model(tmp_path / "fixed.onnx", batch=3)
    completed = run_bench("fixed.onnx", "--batch-sizes", "1,16", "--repeats", "20", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "Axis 0 is not dynamic, so the model runs at its declared size only" in completed.stdout
    assert re.findall(r"^threads default +(\d+) ", completed.stdout, re.MULTILINE) == ["3"]


def test_a_missing_file_exits_2_with_one_line(tmp_path):
    assert_one_line_error(run_bench("missing.onnx", cwd=tmp_path), "missing.onnx: no such file")


def test_a_model_onnx_runtime_refuses_exits_2_pointing_to_check(tmp_path):
    graph = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], domain="example.custom")], "custom",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    onnx.save_model(model, str(tmp_path / "custom.onnx"))
    completed = run_bench("custom.onnx", cwd=tmp_path)
    assert_one_line_error(completed, "custom.onnx: ONNX Runtime cannot load it: ")
    assert completed.stderr.rstrip().endswith("`python -m labsupport check custom.onnx` says more.")


def test_a_model_that_fails_on_random_inputs_exits_2_naming_the_batch(tmp_path):
    table = onnx.numpy_helper.from_array(np.ones((3, 2), np.float32), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "index"], ["y"])], "lookup",
                              [helper.make_tensor_value_info("index", TensorProto.INT64, ["batch"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [table])
    _save(graph, tmp_path / "lookup.onnx")
    completed = run_bench("lookup.onnx", "--batch-sizes", "64", cwd=tmp_path)
    assert_one_line_error(completed, "lookup.onnx: running it on random inputs of batch 64 failed: ")
    assert "labsupport.bench.measure" in completed.stderr


def test_inputs_over_the_budget_exit_2_before_anything_runs(tmp_path):
    affine_model(tmp_path / "affine.onnx")
    completed = run_bench("affine.onnx", "--batch-sizes", "1000", "--max-input-bytes", "1KiB", cwd=tmp_path)
    assert_one_line_error(completed, "affine.onnx: the inputs would take 15.6 KiB (16,000 bytes) for 'x' [1000, 4] "
                                     "float32, more than the input budget of 1.0 KiB")


def test_an_unknown_dim_name_exits_2(tmp_path):
    affine_model(tmp_path / "affine.onnx")
    assert_one_line_error(run_bench("affine.onnx", "--dim", "sequence=12", cwd=tmp_path),
                          "affine.onnx: no input has a dynamic dimension named 'sequence'")


def test_a_zero_thread_count_is_refused_by_the_parser():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "bench", "model.onnx", "--threads", "0"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2 and "counts must be positive, got '0'" in completed.stderr


def test_help_documents_the_exit_statuses_and_the_statistics():
    completed = subprocess.run([sys.executable, "-m", "labsupport", "bench", "--help"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 0
    assert "95% confidence interval" in completed.stdout
    assert "\n  0  the model was benchmarked" in completed.stdout
    assert "\n  2  the model cannot be read" in completed.stdout
