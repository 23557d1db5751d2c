"""The shared ONNX plumbing: one way to open a CPU session, read dims and opsets, name types and errors."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from labsupport import onnx_tools


def _affine(opsets):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in opsets])
    model.ir_version = 10
    return model


def test_element_type_constants_are_onnx_numbers():
    for name in ("FLOAT", "UINT8", "INT8", "INT32", "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE"):
        assert getattr(onnx_tools, name) == getattr(TensorProto, name), name


def test_elem_type_name_names_known_and_undefined_types():
    assert onnx_tools.elem_type_name(TensorProto.BFLOAT16) == "BFLOAT16"
    assert onnx_tools.elem_type_name(999) == "element type 999"


def test_tensor_dims_reads_fixed_named_and_unnamed_dimensions():
    model = _affine([("", 17)])
    assert onnx_tools.tensor_dims(model.graph.input[0]) == ("batch", 4)
    assert onnx_tools.tensor_dims(model.graph.output[0]) == (None, 4)
    no_shape = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    assert onnx_tools.tensor_dims(no_shape) is None
    sequence = helper.make_value_info("s", helper.make_sequence_type_proto(helper.make_tensor_type_proto(1, [2])))
    assert onnx_tools.tensor_dims(sequence) is None


@pytest.mark.parametrize("opsets", [[("", 17), ("ai.onnx.ml", 3)], [("ai.onnx.ml", 3), ("ai.onnx", 17)]])
def test_the_default_opset_is_found_whatever_its_position_and_spelling(opsets):
    model = _affine(opsets)
    assert onnx_tools.default_opset(model) == 17
    assert onnx_tools.opsets_text(model) == "ai.onnx 17, ai.onnx.ml 3"


def test_first_line_skips_blank_lines_and_falls_back_to_the_class_name():
    assert onnx_tools.first_line(ValueError("\n\n  [ONNXRuntimeError] bad\nmore detail")) == "[ONNXRuntimeError] bad"
    assert onnx_tools.first_line(KeyError()) == "KeyError"
    assert onnx_tools.first_line("\n  a library's log\nmore") == "a library's log"
    assert onnx_tools.first_line("") == ""


def test_cpu_session_runs_from_a_model_and_from_a_path(tmp_path):
    model = _affine([("", 17)])
    path = tmp_path / "relu.onnx"
    onnx.save_model(model, str(path))
    x = np.array([[-1, 2, -3, 4]], dtype=np.float32)
    for source in (model, path, str(path)):
        session = onnx_tools.cpu_session(source)
        assert session.get_providers() == ["CPUExecutionProvider"]
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(x, 0))


def test_importing_it_loads_neither_onnx_nor_onnxruntime():
    code = "import sys, labsupport.onnx_tools; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == [
        "False", "False"]
