"""Lab 12's exercises: reference answers pass, realistic wrong answers fail, blanks are not attempted.

The reference answers come from each problem's declared solution (``solution_answer``), so the
code learners are shown is the code proven to pass. The lab's reference helpers (the frames, the
two pipelines, the reference graphs and the CNN's export) are tested here too; training the two
CNNs is left to the notebook run, which asserts their accuracy.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import nbformat
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from labsupport.checking import ThoughtExperiment
from labsupport.exercises import lab12
from labsupport.interop import import_openvino
from labsupport.onnx_tools import cpu_session, tensor_dims
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer

ov = import_openvino()  # openvino with its telemetry off, before anything imports it
hints = importlib.import_module("openvino.properties.hint")
ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------
# Reference helpers
# ---------------------------------------------------------------------------


def test_frames_are_seeded_uint8_rgb_and_the_published_constants_are_their_statistics():
    digits = lab12.colour_digits()
    assert digits.train_frames.dtype == np.uint8 and digits.train_frames.shape[1:] == (8, 8, 3)
    assert len(digits.train_frames) == len(digits.y_train) and len(digits.test_frames) == len(digits.y_test)
    assert np.array_equal(lab12.camera_frames(np.full((2, 64), 0.5), 7), lab12.camera_frames(np.full((2, 64), 0.5), 7))
    unit = digits.train_frames.reshape(-1, 3) / 255
    assert np.allclose(unit.mean(axis=0), lab12.MEAN, atol=5e-4) and np.allclose(unit.std(axis=0), lab12.STD, atol=5e-4)


def test_the_two_pipelines_have_each_frameworks_layout_and_scale():
    frames = lab12.colour_digits().test_frames[:4]
    torch_input, keras_input = lab12.torch_style(frames), lab12.keras_style(frames)
    assert torch_input.dtype == keras_input.dtype == np.float32
    assert torch_input.shape == (4, 3, 8, 8) and keras_input.shape == (4, 8, 8, 3)
    assert np.allclose(torch_input[:, 2], (frames[..., 2] / 255 - lab12.MEAN[2]) / lab12.STD[2], atol=1e-5)
    assert keras_input.min() >= -1 and keras_input.max() <= 1


def test_the_reference_preprocessing_graph_computes_torch_style_and_merges_once_its_ir_version_is_the_cnns(tmp_path):
    frames = lab12.colour_digits().test_frames[:9]
    model = lab12.preprocessing_model()
    assert np.array_equal(cpu_session(model).run(None, {"frames": frames})[0], lab12.torch_style(frames))
    path = lab12.export_colour_cnn(tmp_path / "cnn.onnx", lab12.build_colour_cnn().eval())
    cnn = onnx.load(path)
    assert cnn.opset_import[0].version == lab12.CNN_OPSET and model.ir_version > cnn.ir_version
    with pytest.raises(ValueError, match="IR version mismatch"):
        onnx.compose.merge_models(model, cnn, io_map=[("pixels", "pixels")])
    model.ir_version = cnn.ir_version
    merged = onnx.compose.merge_models(model, cnn, io_map=[("pixels", "pixels")])
    assert [value.name for value in merged.graph.input] == ["frames"]


def _code_cells(folder: str) -> list[str]:
    cells = nbformat.read(str(ROOT / folder / f"{lab12.LAB}.ipynb"), as_version=4).cells
    return [cell.source for cell in cells if cell.cell_type == "code"]


def _markdown_after(code_fragment: str) -> str:
    cells = nbformat.read(str(ROOT / "solutions" / f"{lab12.LAB}.ipynb"), as_version=4).cells
    index = next(index for index, cell in enumerate(cells) if cell.cell_type == "code" and code_fragment in cell.source)
    return cells[index + 1].source


@pytest.mark.parametrize("label", [label for label, problem in lab12.PROBLEMS.items()
                                   if not issubclass(problem, ThoughtExperiment)])
def test_each_exercise_cell_has_only_the_blanks_its_not_attempted_message_names(label):
    code = _code_cells("notebooks")
    check = next(index for index, source in enumerate(code) if f"{label}.check()" in source)
    start = max((index for index, source in enumerate(code[:check]) if ".check()" in source), default=0)
    blanks = {name for source in code[start + 1:check] for name in re.findall(r"^(\w+) = ____$", source, re.M)}
    assert blanks <= set(lab12.PROBLEMS[label].vars), f"{label}'s cell has the blanks {sorted(blanks)}"


def test_the_keras_cnns_generated_batch_name_is_explained_below_the_cell_that_prints_it():
    assert "`unk__`" in _markdown_after('print(f"{name}: input {session.get_inputs()[0].shape}")')


def test_the_reference_answer_to_exercise_4_is_what_the_notebook_merges_after_setting_its_ir_version():
    assert lab12.preprocessing_model() == _reference_preprocessing()
    assert "reference answer to exercise 4" in _markdown_after("compose.merge_models(reference_preprocessing")
    merging = next(source for source in _code_cells("solutions") if "deployed = compose.merge_models" in source)
    assert "reference_preprocessing.ir_version = cnn_model.ir_version" in merging


def test_an_export_without_a_dynamic_batch_fixes_it_in_the_interface_and_the_reshape(tmp_path):
    cnn = lab12.build_colour_cnn().eval()
    model = onnx.load(lab12.export_colour_cnn(tmp_path / "static.onnx", cnn, dynamic_batch=False))
    assert tensor_dims(model.graph.input[0]) == (1, 3, 8, 8)
    reshape = next(node for node in model.graph.node if node.op_type == "Reshape")
    shape = next(tensor for tensor in model.graph.initializer if tensor.name == reshape.input[1])
    assert numpy_helper.to_array(shape).tolist() == [1, 256]
    pixels = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    with torch.no_grad():
        expected = cnn(torch.from_numpy(pixels)).numpy()
    assert np.allclose(cpu_session(model).run(None, {"pixels": pixels})[0], expected, atol=1e-5)


@pytest.mark.parametrize("build, batch, name", [(lab12.static_cnn_model, 2, "pixels"),
                                                (lab12.static_mlp_model, 4, "features")])
def test_the_static_models_of_exercise_3_run_only_at_their_batch(build, batch, name):
    model = build(batch)
    assert tensor_dims(model.graph.input[0])[0] == batch and len(model.graph.value_info) > 0
    shape = (batch, *tensor_dims(model.graph.input[0])[1:])
    assert cpu_session(model).run(None, {name: np.ones(shape, np.float32)})[0].shape == (batch, 10)


# ---------------------------------------------------------------------------
# q1 TorchPreprocess
# ---------------------------------------------------------------------------

def _mean_std():
    return np.array(lab12.MEAN, dtype=np.float32), np.array(lab12.STD, dtype=np.float32)


def test_torch_preprocess_reference_passes():
    assert_check_passed(lab12.TorchPreprocess,
                        {"torch_preprocess": solution_answer(lab12.TorchPreprocess, lab12=lab12)})


def _float64(frames):
    return ((frames / 255 - np.array(lab12.MEAN)) / np.array(lab12.STD)).transpose(0, 3, 1, 2)


def _reshaped(frames):
    mean, std = _mean_std()
    return ((frames.astype(np.float32) / 255 - mean) / std).reshape(-1, 3, 8, 8)


def _channels_last(frames):
    mean, std = _mean_std()
    return (frames.astype(np.float32) / 255 - mean) / std


def _bgr(frames):
    mean, std = _mean_std()
    return ((frames[..., ::-1].astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2)


def _keras_scaling(frames):
    return (frames.astype(np.float32) / 127.5 - 1).transpose(0, 3, 1, 2)


def _unit_only(frames):
    return (frames.astype(np.float32) / 255).transpose(0, 3, 1, 2)


def _not_scaled(frames):
    mean, std = _mean_std()
    return ((frames.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)


def _mean_only(frames):
    mean, _ = _mean_std()
    return (frames.astype(np.float32) / 255 - mean).transpose(0, 3, 1, 2)


def _width_height(frames):
    mean, std = _mean_std()
    return ((frames.astype(np.float32) / 255 - mean) / std).transpose(0, 3, 2, 1)


def _torch_tensor(frames):
    mean, std = _mean_std()
    return torch.from_numpy(((frames.astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2))


def _no_return(frames):
    unit = frames.astype(np.float32) / 255
    (unit - lab12.MEAN) / lab12.STD


def _normalized_after_transposing_the_frames(frames):
    mean, std = _mean_std()
    return (frames.astype(np.float32).transpose(0, 3, 1, 2) / 255 - mean) / std


def _calls_the_reference(frames):
    return lab12.torch_style(frames)


@pytest.mark.parametrize("wrong, fragment", [
    (_float64, "returned float64 values"),
    (_reshaped, "reshapes the frames to (N, 3, 8, 8) instead of moving the channel axis"),
    (_channels_last, "returned shape (32, 8, 8, 3), still channels last"),
    (_bgr, "has the colour channels in BGR order"),
    (_keras_scaling, "scales the pixels to [-1, 1], the Keras model's convention"),
    (_unit_only, "scales the pixels to [0, 1] but does not normalize them"),
    (_not_scaled, "normalizes the raw 0–255 values"),
    (_mean_only, "subtracts MEAN but does not divide by STD"),
    (_width_height, "rows and columns are swapped"),
    (_torch_tensor, "returned a Tensor; return a NumPy array"),
    (_no_return, "returned None. Did you forget a `return` statement?"),
    (_normalized_after_transposing_the_frames, "raised ValueError: operands could not be broadcast together with "
                                               "shapes (32,3,8,8) (3,)."),
    (lab12.torch_style, "`torch_preprocess` is `lab12.torch_style` itself, the reference this check compares with"),
    (_calls_the_reference, "`torch_preprocess` calls `lab12.torch_style`, the reference this check compares with"),
])
def test_torch_preprocess_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab12.TorchPreprocess, {"torch_preprocess": wrong}, fragment)


def test_torch_preprocess_placeholder_is_not_attempted():
    assert_check_unattempted(lab12.TorchPreprocess)


# ---------------------------------------------------------------------------
# q2 UnfuseConv
# ---------------------------------------------------------------------------

def test_unfuse_conv_reference_passes():
    assert_check_passed(lab12.UnfuseConv, {"unfuse_conv": solution_answer(lab12.UnfuseConv, helper=helper)})


def test_the_lab_helper_unfused_conv_passes_the_same_check():
    assert_check_passed(lab12.UnfuseConv, {"unfuse_conv": lab12.unfused_conv})


def _renamed_to_conv(node):
    conv = onnx.NodeProto()
    conv.CopyFrom(node)
    conv.op_type, conv.domain = "Conv", ""
    return [conv]


def _parameters_dropped(node):
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    activation = attributes.pop("activation").decode()
    attributes.pop("activation_params", None)
    return [helper.make_node("Conv", list(node.input), ["conv_out"], **attributes),
            helper.make_node(activation, ["conv_out"], list(node.output))]


def _activation_dropped(node):
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    attributes.pop("activation")
    attributes.pop("activation_params", None)
    return [helper.make_node("Conv", list(node.input), list(node.output), **attributes)]


def _output_renamed(node):
    conv, activation = lab12.unfused_conv(node)
    activation.output[0] = "activated"
    return [conv, activation]


def _conv_keeps_every_attribute(node):
    conv, activation = lab12.unfused_conv(node)
    conv.attribute.extend(attribute for attribute in node.attribute if attribute.name == "activation")
    return [conv, activation]


def _always_relu(node):
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    attributes.pop("activation")
    attributes.pop("activation_params", None)
    return [helper.make_node("Conv", list(node.input), ["conv_out"], **attributes),
            helper.make_node("Relu", ["conv_out"], list(node.output))]


def _activation_first(node):
    conv, activation = lab12.unfused_conv(node)
    return [activation, conv]


@pytest.mark.parametrize("wrong, fragment", [
    (_renamed_to_conv, "the node that writes 'y' is a Conv; it should be the activation the `activation` attribute "
                       "names, Relu here"),
    (_conv_keeps_every_attribute, "fails the checker: Unrecognized attribute: activation for operator Conv"),
    (_parameters_dropped, "a FusedConv with activation LeakyRelu and activation_params [0.1] computes values up to"),
    (_parameters_dropped, "pass activation_params on to the activation's attributes"),
    (_activation_dropped, "the node that writes 'y' is a Conv"),
    (_always_relu, "a FusedConv with activation LeakyRelu and activation_params [0.1]: the node that writes 'y' is a "
                   "Relu; it should be the activation the `activation` attribute names, LeakyRelu here"),
    (_activation_first, "fails the checker: Nodes in a graph must be topologically sorted, however input 'y_conv' of "
                        "node: name: fused_conv_activation OpType: Relu is not output of any previous nodes. Return "
                        "the nodes in the order they run"),
    (lambda node: [node], "still returns com.microsoft::FusedConv"),
    (_output_renamed, "no returned node writes 'y'"),
    (lambda node: lab12.unfused_conv(node)[0], "returned a NodeProto; return a list of onnx.NodeProto"),
    (lambda node: [None], "returned a list whose item 0 is a NoneType, not a NodeProto"),
    (lambda node: (lab12.unfused_conv(node)[0], "Relu"), "returned a tuple whose item 1 is a str, not a NodeProto"),
])
def test_unfuse_conv_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab12.UnfuseConv, {"unfuse_conv": wrong}, fragment)


def test_unfuse_conv_placeholder_is_not_attempted():
    assert_check_unattempted(lab12.UnfuseConv)


# ---------------------------------------------------------------------------
# q3 MakeBatchDynamic
# ---------------------------------------------------------------------------

def _reference_make_batch_dynamic():
    return solution_answer(lab12.MakeBatchDynamic, onnx=onnx, numpy_helper=numpy_helper)


def test_make_batch_dynamic_reference_passes():
    assert_check_passed(lab12.MakeBatchDynamic, {"make_batch_dynamic": _reference_make_batch_dynamic()})


def _axes_renamed(model):
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    for value in [*renamed.graph.input, *renamed.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return renamed


def _with_first_shape_entry(model, entry):
    changed = _axes_renamed(model)
    for tensor in changed.graph.initializer:
        if tensor.data_type == TensorProto.INT64:
            shape = numpy_helper.to_array(tensor).copy()
            shape[0] = entry
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    return changed


def _input_only(model):
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    changed.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    return changed


def _zero_instead_of_minus_one(model):
    repaired = _reference_make_batch_dynamic()(model)
    return _with_first_shape_entry(repaired, 0)


@pytest.mark.parametrize("wrong, fragment", [
    (_axes_renamed, "fails at batch 3: a Reshape still has the old batch size in its shape constant"),
    (lambda model: _with_first_shape_entry(model, -1), "the graph still declares intermediate shapes with the old "
                                                       "batch (value_info)"),
    (_zero_instead_of_minus_one, "a Reshape's shape starts with 0, which with allowzero=1 asks for an empty axis"),
    (_input_only, "leaves the graph output 'logits' with a fixed size 1 on axis 0"),
    (lambda model: None, "returned None. Did you forget a `return` statement?"),
    (lambda model: model.graph, "returned a GraphProto; return the repaired onnx.ModelProto"),
])
def test_make_batch_dynamic_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab12.MakeBatchDynamic, {"make_batch_dynamic": wrong}, fragment)


def test_make_batch_dynamic_placeholder_is_not_attempted():
    assert_check_unattempted(lab12.MakeBatchDynamic)


# ---------------------------------------------------------------------------
# q4 PreprocessingGraph
# ---------------------------------------------------------------------------

def _reference_preprocessing():
    return solution_answer(lab12.PreprocessingGraph, lab12=lab12, helper=helper, TensorProto=TensorProto,
                           numpy_helper=numpy_helper)


def test_preprocessing_graph_reference_passes():
    assert_check_passed(lab12.PreprocessingGraph, {"preprocessing": _reference_preprocessing()})


def test_the_lab_helper_preprocessing_model_passes_the_same_check():
    assert_check_passed(lab12.PreprocessingGraph, {"preprocessing": lab12.preprocessing_model()})


def _without_transpose(declared_dims):
    model = _reference_preprocessing()
    nodes = list(model.graph.node)
    nodes[-2].output[0] = "pixels"
    del model.graph.node[:]
    model.graph.node.extend(nodes[:-1])
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("pixels", TensorProto.FLOAT, declared_dims))
    return model


def _with_input_type(elem_type):
    model = _reference_preprocessing()
    model.graph.input[0].type.tensor_type.elem_type = elem_type
    return model


def _fixed_batch():
    model = _reference_preprocessing()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 16
    return model


def _opset(version):
    model = _reference_preprocessing()
    model.opset_import[0].version = version
    return model


def _normalized_after_the_transpose():
    """Sub and Div on the NCHW tensor with [1, 1, 1, 3] constants: they broadcast over the width."""
    model = _reference_preprocessing()
    cast, scale, subtract, divide, transpose = model.graph.node
    transpose.input[0], transpose.output[0] = "unit", "unit_nchw"
    subtract.input[0] = "unit_nchw"
    divide.output[0] = "pixels"
    del model.graph.node[:]
    model.graph.node.extend([cast, scale, transpose, subtract, divide])
    return model


def _scale_in_float64():
    """The hint's warning: 255 made with np.array(255.0), NumPy's default float64."""
    model = _reference_preprocessing()
    scale = next(tensor for tensor in model.graph.initializer if tensor.name == "scale")
    scale.CopyFrom(numpy_helper.from_array(np.array(255.0), "scale"))
    return model


def test_preprocessing_graph_hint_2_nudges_beyond_the_exercise_text():
    second = lab12.PreprocessingGraph.hints[1]
    assert "float32" in second and "make_graph" in second
    assert "UINT8" not in second and "'batch'" not in second and "CNN_OPSET" not in second


@pytest.mark.parametrize("wrong, fragment", [
    (lambda: _without_transpose(["batch", 3, 8, 8]), "does not pass `onnx.checker.check_model`: [ShapeInferenceError]"
                                                      " Inference error(s): (op_type:Div)"),
    (lambda: _without_transpose(["batch", 8, 8, 3]), "returned shape (32, 8, 8, 3), still channels last"),
    (lambda: _with_input_type(TensorProto.FLOAT), "input 'frames' has element type FLOAT; expected UINT8"),
    (_fixed_batch, "has a fixed size 16 on axis 0"),
    (lambda: _opset(18), "imports opset 18 of the default domain; this exercise asks for opset 20"),
    (_normalized_after_the_transpose, "(op_type:Sub): [ShapeInferenceError] Incompatible dimensions"),
    (lambda: "preprocessing.onnx", "is a path; this exercise wants the ModelProto itself"),
    (_scale_in_float64, "(op_type:Div): B has inconsistent type tensor(double)"),
])
def test_preprocessing_graph_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab12.PreprocessingGraph, {"preprocessing": wrong()}, fragment)


def test_preprocessing_graph_placeholder_is_not_attempted():
    assert_check_unattempted(lab12.PreprocessingGraph)


# ---------------------------------------------------------------------------
# q5 PreciseOpenVino
# ---------------------------------------------------------------------------

def test_precise_openvino_reference_passes():
    assert_check_passed(lab12.PreciseOpenVino,
                        {"precise_config": solution_answer(lab12.PreciseOpenVino, hints=hints, ov=ov)})


@pytest.mark.parametrize("config", [lab12.precise_openvino_config, lambda: {"INFERENCE_PRECISION_HINT": "f32"},
                                    lambda: {hints.execution_mode: hints.ExecutionMode.ACCURACY},
                                    lambda: dict([hints.inference_precision(ov.Type.f32)]),
                                    lambda: dict([hints.execution_mode(hints.ExecutionMode.ACCURACY)])])
def test_precise_openvino_accepts_every_spelling_of_float32(config):
    assert_check_passed(lab12.PreciseOpenVino, {"precise_config": config()})


@pytest.mark.parametrize("wrong, fragment", [
    (lambda: {}, "does not say which precision to compute in"),
    (lambda: {"PERFORMANCE_HINT": "LATENCY"}, "does not say which precision to compute in"),
    (lambda: {hints.inference_precision: ov.Type.bf16}, "asks for bf16"),
    (lambda: dict([hints.inference_precision(ov.Type.bf16)]), "asks for bf16"),
    (lambda: {"INFERENCE_PRECISION_HINT": "f16"}, "asks for f16"),
    (lambda: {"EXECUTION_MODE_HINT": "PERFORMANCE"}, "sets the execution mode to PERFORMANCE"),
    (lambda: {"INFERENCE_PRECISION": "f32"}, "refuses `precise_config`: NotFound: Unsupported property"),
    (lambda: "f32", "should be a dict of OpenVINO properties"),
])
def test_precise_openvino_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab12.PreciseOpenVino, {"precise_config": wrong()}, fragment)


def test_precise_openvino_placeholder_is_not_attempted():
    assert_check_unattempted(lab12.PreciseOpenVino)
