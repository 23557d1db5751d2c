"""labsupport.profiling: FLOP formulas and counts from graphs, the profiler's trace, memory figures."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from labsupport.profiling import (
    conv_flops,
    count_flops,
    current_rss_bytes,
    gemm_flops,
    matmul_flops,
    operator_times,
    peak_memory_by_batch,
    peak_rss_bytes,
    read_profile,
)
from tests.test_validate import affine_model

# Formulas

def test_conv_flops_is_two_per_multiply_add_over_every_output_value():
    # 64 images, 16 output channels of 4x4, each a dot product over 8 channels x 3x3
    assert conv_flops((64, 16, 4, 4), (16, 8, 3, 3)) == 2 * 64 * 16 * 16 * 8 * 9


def test_grouped_convolution_needs_no_special_case_because_the_weight_holds_c_in_over_group():
    depthwise = conv_flops((1, 32, 10, 10), (32, 1, 3, 3))
    dense = conv_flops((1, 32, 10, 10), (32, 32, 3, 3))
    assert depthwise == 2 * 32 * 100 * 9 and dense == 32 * depthwise


def test_gemm_flops_follow_the_transpose_attributes():
    assert gemm_flops((64, 256), (256, 10)) == 2 * 64 * 10 * 256
    assert gemm_flops((64, 256), (10, 256), trans_b=True) == 2 * 64 * 10 * 256
    assert gemm_flops((256, 64), (256, 10), trans_a=True) == 2 * 64 * 10 * 256


def test_matmul_flops_broadcast_batch_dimensions_and_treat_1d_operands_as_vectors():
    assert matmul_flops((512, 512), (512, 512)) == 2 * 512**3
    assert matmul_flops((8, 1, 4, 5), (3, 5, 6)) == 2 * 8 * 3 * 4 * 6 * 5
    assert matmul_flops((5,), (5, 7)) == 2 * 7 * 5
    assert matmul_flops((4, 5), (5,)) == 2 * 4 * 5


# Counting a graph

def _three_op_model():
    """x [batch, 2, 6, 6] → Conv 4x2x3x3 (no padding) → Flatten → Gemm (64 → 5, transB) → MatMul 5x3."""
    rng = np.random.default_rng(0)
    weights = {"w": rng.random((4, 2, 3, 3), dtype=np.float32), "fc": rng.random((5, 64), dtype=np.float32),
               "proj": rng.random((5, 3), dtype=np.float32)}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Flatten", ["c"], ["f"]),
         helper.make_node("Gemm", ["f", "fc"], ["g"], name="fc", transB=1),
         helper.make_node("MatMul", ["g", "proj"], ["y"])],
        "three", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_count_flops_counts_conv_gemm_and_matmul_at_the_given_batch():
    counted = count_flops(_three_op_model(), {"x": (10, 2, 6, 6)})
    assert [(node.name, node.op_type) for node in counted.nodes] == [("conv", "Conv"), ("fc", "Gemm"),
                                                                     ("MatMul_3", "MatMul")]
    expected = [2 * 10 * 4 * 16 * 2 * 9, 2 * 10 * 5 * 64, 2 * 10 * 3 * 5]
    assert [node.flops for node in counted.nodes] == expected
    assert counted.total == sum(expected) and counted.by_op_type()["Gemm"] == expected[1]
    assert "total" in counted.to_text() and f"{sum(expected):,}" in counted.to_text()


def test_count_flops_scales_linearly_with_the_batch():
    model = _three_op_model()
    assert count_flops(model, {"x": (64, 2, 6, 6)}).total == 64 * count_flops(model, {"x": (1, 2, 6, 6)}).total


def test_count_flops_does_not_change_the_model_it_is_given():
    model = _three_op_model()
    before = model.SerializeToString()
    count_flops(model, {"x": (3, 2, 6, 6)})
    assert model.SerializeToString() == before


def test_count_flops_asks_for_a_missing_input_shape_and_rejects_unknown_names():
    with pytest.raises(ValueError, match="no shape for input 'x'"):
        count_flops(_three_op_model(), {})
    with pytest.raises(ValueError, match=r"names \['pixels'\], which are not inputs of the model"):
        count_flops(_three_op_model(), {"x": (1, 2, 6, 6), "pixels": (1, 64)})


def test_count_flops_names_the_node_whose_shape_stays_unknown():
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="project")], "unknown",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
                               helper.make_tensor_value_info("w", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match="MatMul node 'project': the shape of 'w' is unknown"):
        count_flops(model, {"x": (2, 4), "w": ()})


# The profiler's trace

def _node(name, op_type, duration, start):
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": start, "dur": duration, "args": {"op_name": op_type}}


def _run(start, duration):
    return {"cat": "Session", "name": "model_run", "ts": start, "dur": duration, "args": {}}


EVENTS = [_node("a", "Conv", 100, 10), _node("b", "Relu", 5, 115), _run(0, 130),
          _node("a", "Conv", 60, 210), _node("b", "Relu", 4, 275), _node("c", "Conv", 20, 280), _run(200, 110)]


def test_operator_times_sum_node_kernels_per_operator_type_largest_first():
    assert operator_times(EVENTS) == {"Conv": 180.0, "Relu": 9.0}
    assert list(operator_times(EVENTS)) == ["Conv", "Relu"]


def test_operator_times_can_leave_out_warm_up_runs():
    assert operator_times(EVENTS, skip_runs=1) == {"Conv": 80.0, "Relu": 4.0}
    assert operator_times(EVENTS, skip_runs=2) == {}


def test_a_real_profile_has_node_events_with_the_operator_type_and_duration(tmp_path):
    path = affine_model(tmp_path / "affine.onnx")
    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, {"x": np.ones((8, 4), np.float32)})
    events = read_profile(session.end_profiling())
    assert sum(event["name"] == "model_run" for event in events) == 3
    totals = operator_times(events, skip_runs=1)
    assert set(totals) <= {"MatMul", "Add", "Gemm", "FusedMatMul", "MatMulAddFusion"} and totals
    assert all(value >= 0 for value in totals.values())


# Memory

def test_peak_resident_memory_is_in_bytes_and_never_below_the_current_figure():
    current = current_rss_bytes()
    assert current > 10 * 2**20  # a Python process with numpy holds more than 10 MiB
    assert peak_rss_bytes() >= 0.99 * current


def test_a_child_process_peak_does_not_inherit_its_parents_memory():
    import subprocess
    import sys

    held = np.ones(200 * 2**20 // 8)  # 200 MiB, touched, in this process
    code = "from labsupport.profiling import peak_rss_bytes; print(peak_rss_bytes())"
    child_peak = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert held.sum() > 0 and child_peak < 150 * 2**20


def test_peak_memory_by_batch_rises_with_the_batch_in_a_fresh_process(tmp_path):
    path = affine_model(tmp_path / "affine.onnx")
    report = peak_memory_by_batch(path, "x", (4,), [1, 2_000_000])
    assert list(report) == ["imported", "session", "1", "2000000"]
    assert report["imported"] <= report["session"] <= report["1"]
    assert report["2000000"] - report["1"] > 2_000_000 * 4 * 4 / 2  # the input alone is 32 MB


def test_peak_memory_failure_is_one_line(tmp_path):
    with pytest.raises(RuntimeError, match="the memory measurement process failed: .*NoSuchFile|No such file"):
        peak_memory_by_batch(tmp_path / "missing.onnx", "x", (4,), [1])


def test_trace_events_of_a_saved_model_file_are_read_as_a_list(tmp_path):
    trace = tmp_path / "trace.json"
    trace.write_text('[{"cat": "Node", "name": "n_kernel_time", "ts": 1, "dur": 2, "args": {"op_name": "Add"}}]')
    assert operator_times(read_profile(trace)) == {"Add": 2.0}


def test_onnx_is_left_importable_with_its_own_model_type():
    assert isinstance(_three_op_model(), onnx.ModelProto)
