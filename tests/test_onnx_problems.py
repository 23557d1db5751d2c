"""Unit tests of labsupport.onnx_problems on tiny models built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from labsupport.onnx_problems import ModelFileProblem, OnnxModelProblem, SessionParityProblem
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted

BIAS = np.array([0.5, -1.0, 2.0], dtype=np.float32)
FEED = np.array([[1.0, 2.0, -3.0], [-1.0, 0.0, 1.0]], dtype=np.float32)
EXPECTED = np.maximum(FEED + BIAS, 0.0)


def build_affine_relu(*, opset=21, elem_type=TensorProto.FLOAT, input_name="x", batch_dim="batch",
                      bias=BIAS, activations=("Relu",)):
    """y = activations(x + bias) with x of shape [batch_dim, 3] and bias stored as an initializer."""
    bias_tensor = numpy_helper.from_array(bias.astype(helper.tensor_dtype_to_np_dtype(elem_type)), "bias")
    nodes = [helper.make_node("Add", [input_name, "bias"], ["h0"])]
    for index, op_type in enumerate(activations):
        output = "y" if index == len(activations) - 1 else f"h{index + 1}"
        nodes.append(helper.make_node(op_type, [f"h{index}"], [output]))
    graph = helper.make_graph(
        nodes, "affine_relu",
        [helper.make_tensor_value_info(input_name, elem_type, [batch_dim, 3])],
        [helper.make_tensor_value_info("y", elem_type, [batch_dim, 3])],
        [bias_tensor],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def open_session(model) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


class AffineReluSpec:
    """What every exercise below asks of the model."""

    opset = 21
    required_ops = ("Add", "Relu")
    forbidden_ops = ("Clip",)
    input_names = ("x",)
    output_names = ("y",)
    input_types = {"x": TensorProto.FLOAT}
    output_types = {"y": TensorProto.FLOAT}
    dynamic_dims = {"x": (0,), "y": (0,)}

    def feeds(self):
        return {"x": FEED}

    def expected_outputs(self, feeds):
        return [np.maximum(feeds["x"] + BIAS, 0.0)]


class BuildAffineRelu(AffineReluSpec, OnnxModelProblem):
    vars = ("model",)


class SaveAffineRelu(AffineReluSpec, ModelFileProblem):
    vars = ("model_path",)


class SaveWithExternalWeights(SaveAffineRelu):
    external_data = True


class SaveWithWeightsInside(SaveAffineRelu):
    external_data = False


class AffineReluParity(SessionParityProblem):
    vars = ("outputs",)

    def feeds(self):
        return {"x": FEED}

    def expected_outputs(self):
        return [EXPECTED]


# ---------------------------------------------------------------------------
# OnnxModelProblem
# ---------------------------------------------------------------------------

def test_reference_model_passes():
    assert_check_passed(BuildAffineRelu, {"model": build_affine_relu()})


def test_placeholder_model_is_not_attempted():
    assert_check_unattempted(BuildAffineRelu)


def test_a_path_instead_of_a_model_points_to_onnx_load(tmp_path):
    assert_check_failed(BuildAffineRelu, {"model": str(tmp_path / "model.onnx")}, "`onnx.load(path)`")
    assert_check_failed(BuildAffineRelu, {"model": tmp_path / "model.onnx"},
                        "this exercise wants the ModelProto itself")


def test_an_answer_that_is_not_a_model_names_its_type():
    assert_check_failed(BuildAffineRelu, {"model": 3}, "should be an onnx.ModelProto")
    assert_check_failed(BuildAffineRelu, {"model": 3}, "but it is a int")


def test_a_model_failing_the_checker_is_reported():
    model = build_affine_relu()
    model.graph.node.append(helper.make_node("Relu", ["never_defined"], ["z"]))
    assert_check_failed(BuildAffineRelu, {"model": model}, "`model` does not pass `onnx.checker.check_model`")


def test_wrong_opset_is_reported_with_expected_value():
    assert_check_failed(BuildAffineRelu, {"model": build_affine_relu(opset=13)},
                        "imports opset 13 of the default domain; this exercise asks for opset 21")


def test_minimum_opset_accepts_newer_and_rejects_older():
    class AtLeastOpset18(OnnxModelProblem):
        vars = ("model",)
        min_opset = 18

    assert_check_passed(AtLeastOpset18, {"model": build_affine_relu(opset=21)})
    assert_check_failed(AtLeastOpset18, {"model": build_affine_relu(opset=17)}, "needs opset 18 or newer")


def test_missing_required_op_is_named():
    assert_check_failed(BuildAffineRelu, {"model": build_affine_relu(activations=("Sigmoid",))},
                        "`model` has no Relu node; this exercise needs one.")


def test_forbidden_op_is_named():
    assert_check_failed(BuildAffineRelu, {"model": build_affine_relu(activations=("Relu", "Clip"))},
                        "`model` uses Clip, which this exercise asks you to avoid.")


def test_wrong_input_names_are_shown_with_the_expected_ones():
    assert_check_failed(BuildAffineRelu, {"model": build_affine_relu(input_name="input")},
                        "graph inputs are named ['input']; expected ['x']")


def test_initializers_listed_as_graph_inputs_do_not_count_as_inputs():
    model = build_affine_relu()
    model.graph.input.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3]))
    assert_check_passed(BuildAffineRelu, {"model": model})


def test_wrong_element_type_names_both_types():
    assert_check_failed(BuildAffineRelu, {"model": build_affine_relu(elem_type=TensorProto.DOUBLE)},
                        "input 'x' has element type DOUBLE; expected FLOAT")


def test_fixed_dimension_where_a_dynamic_one_is_expected():
    assert_check_failed(BuildAffineRelu, {"model": build_affine_relu(batch_dim=2)},
                        "has a fixed size 2 on axis 0; that axis should be dynamic")


def test_an_unnamed_unknown_dimension_counts_as_dynamic():
    model = build_affine_relu()
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].ClearField("dim_param")
    assert_check_passed(BuildAffineRelu, {"model": model})


def test_outputs_that_differ_from_the_reference_are_reported():
    assert_check_failed(BuildAffineRelu, {"model": build_affine_relu(bias=BIAS + 1.0)},
                        "`model's output 'y'` has the right shape, but its values differ from the reference")


# ---------------------------------------------------------------------------
# ModelFileProblem
# ---------------------------------------------------------------------------

def save(model, path, *, external: bool):
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{path.name}.data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def test_saved_reference_model_passes_as_str_or_path(tmp_path):
    path = save(build_affine_relu(), tmp_path / "model.onnx", external=False)
    assert_check_passed(SaveAffineRelu, {"model_path": path})
    assert_check_passed(SaveAffineRelu, {"model_path": str(path)})


def test_placeholder_path_is_not_attempted():
    assert_check_unattempted(SaveAffineRelu)


def test_a_path_answer_must_be_a_path():
    assert_check_failed(SaveAffineRelu, {"model_path": build_affine_relu()},
                        "should be the path of an .onnx file (a str or pathlib.Path), but it is a ModelProto")


def test_a_missing_file_is_reported(tmp_path):
    assert_check_failed(SaveAffineRelu, {"model_path": tmp_path / "nowhere.onnx"},
                        f"`model_path` points to {tmp_path / 'nowhere.onnx'}: no such file (looked in {tmp_path}); "
                        "check the path, or export the model first.")


def test_a_truncated_file_is_not_readable(tmp_path):
    whole = build_affine_relu().SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(whole[: len(whole) // 2])
    assert_check_failed(SaveAffineRelu, {"model_path": path}, "starts like an ONNX file but cannot be parsed")


def test_a_text_file_is_not_readable_as_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n")
    assert_check_failed(SaveAffineRelu, {"model_path": path}, f"`model_path` points to {path}: is not an ONNX file")


def test_a_saved_graph_is_called_a_protobuf_message_that_is_not_a_model_with_the_loaders_reason(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(build_affine_relu().graph.SerializeToString())
    assert_check_failed(SaveAffineRelu, {"model_path": path},
                        "is a protobuf message but not an ONNX model: it reads as an onnx.GraphProto (a graph without "
                        "the model around it); wrap it with onnx.helper.make_model and save that.")


def test_a_folder_is_not_a_model_file(tmp_path):
    assert_check_failed(SaveAffineRelu, {"model_path": tmp_path},
                        f"`model_path` points to {tmp_path}: is a folder; give the path of the .onnx file inside it.")


def test_a_saved_model_is_checked_like_a_model(tmp_path):
    path = save(build_affine_relu(opset=13), tmp_path / "model.onnx", external=False)
    assert_check_failed(SaveAffineRelu, {"model_path": path}, "`model_path` imports opset 13")


def test_external_weights_are_required_when_asked(tmp_path):
    inside = save(build_affine_relu(), tmp_path / "inside.onnx", external=False)
    beside = save(build_affine_relu(), tmp_path / "beside.onnx", external=True)
    assert (tmp_path / "beside.onnx.data").is_file()
    assert_check_passed(SaveWithExternalWeights, {"model_path": beside})
    assert_check_failed(SaveWithExternalWeights, {"model_path": inside}, "save them as external data")


def test_weights_inside_the_file_are_required_when_asked(tmp_path):
    inside = save(build_affine_relu(), tmp_path / "inside.onnx", external=False)
    beside = save(build_affine_relu(), tmp_path / "beside.onnx", external=True)
    assert_check_passed(SaveWithWeightsInside, {"model_path": inside})
    assert_check_failed(SaveWithWeightsInside, {"model_path": beside}, "wants them inside the .onnx file")


def test_missing_external_weights_file_says_where_to_keep_it(tmp_path):
    beside = save(build_affine_relu(), tmp_path / "beside.onnx", external=True)
    (tmp_path / "beside.onnx.data").unlink()
    assert_check_failed(SaveAffineRelu, {"model_path": beside}, "its weights are stored in 'beside.onnx.data', which "
                        f"is not beside it in {tmp_path}; copy the .data file together with the .onnx file.")


def test_a_file_larger_than_allowed_is_reported_with_the_limit(tmp_path):
    path = save(build_affine_relu(), tmp_path / "model.onnx", external=False)
    problem = SaveAffineRelu()
    problem.max_file_bytes = path.stat().st_size - 1
    assert_check_failed(problem, {"model_path": path}, f"this exercise expects at most {problem.max_file_bytes:,}")
    problem.max_file_bytes = path.stat().st_size
    assert_check_passed(problem, {"model_path": path})


# ---------------------------------------------------------------------------
# SessionParityProblem
# ---------------------------------------------------------------------------

def test_a_session_of_the_reference_model_passes():
    assert_check_passed(AffineReluParity, {"outputs": open_session(build_affine_relu())})


def test_a_session_with_other_input_names_is_reported():
    assert_check_failed(AffineReluParity, {"outputs": open_session(build_affine_relu(input_name="input"))},
                        "takes inputs ['input']; expected ['x']")


def test_a_session_computing_other_numbers_is_reported():
    assert_check_failed(AffineReluParity, {"outputs": open_session(build_affine_relu(bias=BIAS * 2))},
                        "`outputs output 0` has the right shape, but its values differ")


def test_outputs_given_as_an_array_or_a_list_are_compared():
    assert_check_passed(AffineReluParity, {"outputs": EXPECTED.copy()})
    assert_check_passed(AffineReluParity, {"outputs": [EXPECTED + 1e-7]})
    assert_check_failed(AffineReluParity, {"outputs": EXPECTED[:1]}, "has shape (1, 3); expected shape (2, 3)")
    assert_check_failed(AffineReluParity, {"outputs": []}, "gives 0 output(s); expected 1")


@pytest.mark.parametrize("answer, type_name", [("session.onnx", "str"), ({"y": EXPECTED}, "dict"), (None, "NoneType")])
def test_an_answer_that_is_neither_a_session_nor_outputs_names_its_type(answer, type_name):
    assert_check_failed(AffineReluParity, {"outputs": answer},
                        f"should be an onnxruntime.InferenceSession or its outputs, but it is a {type_name}")
