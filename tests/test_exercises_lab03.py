"""Lab 03 exercises: each reference answer passes, realistic wrong answers fail with a useful
message, and the placeholder is not attempted."""

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import helper, numpy_helper, version_converter
from onnx.reference import ReferenceEvaluator

from labsupport.checking import ____
from labsupport.exercises import lab03
from labsupport.testing import (
    assert_check_failed,
    assert_check_passed,
    assert_check_unattempted,
    evaluate,
    solution_answer,
)


def _run(model, feeds):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# ---------------------------------------------------------------------------
# q1 DefinitionInForce
# ---------------------------------------------------------------------------

definition_in_force = solution_answer(lab03.DefinitionInForce, onnx=onnx)


def test_definition_in_force_reference_passes():
    assert_check_passed(lab03.DefinitionInForce, {"definition_in_force": definition_in_force})


def test_definition_in_force_cases_include_an_opset_without_its_own_definition():
    cases = dict(lab03.DefinitionInForce().cases())
    assert cases[("ReduceSum", 17)] == 13
    assert cases[("Clip", 9)] == 6


def test_definition_in_force_history_search_is_accepted():
    def from_history(op_type, opset):
        return max(schema.since_version for schema in onnx.defs.get_all_schemas_with_history()
                   if schema.name == op_type and schema.domain == "" and schema.since_version <= opset)

    assert_check_passed(lab03.DefinitionInForce, {"definition_in_force": from_history})


def test_definition_in_force_returning_the_opset_is_reported():
    assert_check_failed(lab03.DefinitionInForce, {"definition_in_force": lambda op_type, opset: opset},
                        "`definition_in_force('Clip', 9)` = 9 is too large")


def test_definition_in_force_newest_definition_is_reported():
    def newest(op_type, opset):
        return onnx.defs.get_schema(op_type).since_version

    assert_check_failed(lab03.DefinitionInForce, {"definition_in_force": newest},
                        "`definition_in_force('Clip', 9)` = 13 is too large")


def test_definition_in_force_schema_instead_of_number_is_reported():
    assert_check_failed(lab03.DefinitionInForce,
                        {"definition_in_force": lambda op_type, opset: onnx.defs.get_schema(op_type, opset)},
                        "should be a number")


def test_definition_in_force_placeholder_is_not_attempted():
    assert_check_unattempted(lab03.DefinitionInForce)
    assert_check_unattempted(lab03.DefinitionInForce, {"definition_in_force": lambda op_type, opset: ____})


# ---------------------------------------------------------------------------
# q2 UpgradeLegacyModel
# ---------------------------------------------------------------------------

def test_legacy_model_is_valid_opset_9_and_matches_numpy():
    model = lab03.legacy_model()
    onnx.checker.check_model(model, full_check=True)
    x = lab03.legacy_input()
    assert (np.abs(x) > 1).any(), "the input should exercise Clip"
    np.testing.assert_allclose(_run(model, {"x": x})[0], lab03.legacy_reference(x), rtol=1e-6, atol=1e-6)


def test_upgrade_reference_passes():
    assert_check_passed(lab03.UpgradeLegacyModel, {"upgraded_model": lab03.upgraded_legacy_model()})


def test_upgrade_by_relabelling_the_opset_fails_the_checker():
    relabelled = lab03.legacy_model()
    relabelled.opset_import[0].version = 18
    assert_check_failed(lab03.UpgradeLegacyModel, {"upgraded_model": relabelled},
                        "does not pass `onnx.checker.check_model`: Unrecognized attribute")


def test_upgrade_to_another_opset_is_reported_with_expected_value():
    upgraded = version_converter.convert_version(lab03.legacy_model(), 21)
    assert_check_failed(lab03.UpgradeLegacyModel, {"upgraded_model": upgraded},
                        "imports opset 21 of the default domain; this exercise asks for opset 18")


def test_upgrade_left_at_opset_9_is_reported():
    assert_check_failed(lab03.UpgradeLegacyModel, {"upgraded_model": lab03.legacy_model()}, "imports opset 9")


def test_upgrade_with_changed_numbers_is_caught_by_running_it():
    upgraded = lab03.upgraded_legacy_model()
    clip = next(node for node in upgraded.graph.node if node.op_type == "Clip")
    low_bound = next(node for node in upgraded.graph.node if node.output[0] == clip.input[1])
    low_bound.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(-0.5, np.float32)))
    assert_check_failed(lab03.UpgradeLegacyModel, {"upgraded_model": upgraded},
                        "output 'y'` has the right shape, but its values differ")


def test_upgrade_given_as_a_path_is_reported(tmp_path):
    path = tmp_path / "upgraded.onnx"
    onnx.save_model(lab03.upgraded_legacy_model(), path)
    assert_check_failed(lab03.UpgradeLegacyModel, {"upgraded_model": path}, "load it with `onnx.load(path)`")


def test_upgrade_placeholder_is_not_attempted():
    assert_check_unattempted(lab03.UpgradeLegacyModel)


# ---------------------------------------------------------------------------
# q3 ConvOutputSize
# ---------------------------------------------------------------------------

conv_output_size = solution_answer(lab03.ConvOutputSize)


def test_conv_output_size_reference_passes():
    assert_check_passed(lab03.ConvOutputSize, {"conv_output_size": conv_output_size})


def test_conv_output_size_cases_come_from_shape_inference_and_match_the_formula():
    for arguments, expected in lab03.ConvOutputSize().cases():
        assert expected == conv_output_size(*arguments)
    assert ((224, 7, 2, 3, 3, 1), 112) in list(lab03.ConvOutputSize().cases())


def test_conv_output_size_ignoring_dilation_is_reported():
    def no_dilation(size, kernel, stride=1, pad_begin=0, pad_end=0, dilation=1):
        return (size + pad_begin + pad_end - kernel) // stride + 1

    assert_check_failed(lab03.ConvOutputSize, {"conv_output_size": no_dilation},
                        "`conv_output_size(10, 3, 1, 0, 0, 2)` = 8 is too large")


def test_conv_output_size_rounding_up_is_reported():
    def ceiling(size, kernel, stride=1, pad_begin=0, pad_end=0, dilation=1):
        return -(-(size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride) + 1

    assert_check_failed(lab03.ConvOutputSize, {"conv_output_size": ceiling},
                        "`conv_output_size(224, 7, 2, 3, 3, 1)` = 113 is too large")


def test_conv_output_size_true_division_is_reported():
    def true_division(size, kernel, stride=1, pad_begin=0, pad_end=0, dilation=1):
        return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride + 1

    assert_check_failed(lab03.ConvOutputSize, {"conv_output_size": true_division}, "should be a whole number")


def test_conv_output_size_missing_return_is_reported():
    def no_return(size, kernel, stride=1, pad_begin=0, pad_end=0, dilation=1):
        conv_output_size(size, kernel, stride, pad_begin, pad_end, dilation)

    assert_check_failed(lab03.ConvOutputSize, {"conv_output_size": no_return}, "Did you forget a `return` statement?")


def test_conv_output_size_placeholder_is_not_attempted():
    assert_check_unattempted(lab03.ConvOutputSize)


# ---------------------------------------------------------------------------
# q4 PuzzleShape
# ---------------------------------------------------------------------------

def test_puzzle_shape_reference_passes():
    assert_check_passed(lab03.PuzzleShape, {"puzzle_output_shape": ("N", 392)})
    assert_check_passed(lab03.PuzzleShape, {"puzzle_output_shape": ["N", 392]})


def test_puzzle_shape_before_flatten_is_reported():
    assert_check_failed(lab03.PuzzleShape, {"puzzle_output_shape": ("N", 8, 7, 7)}, "has 4 items; expected 2")


def test_puzzle_shape_pool_rounded_up_is_reported():
    assert_check_failed(lab03.PuzzleShape, {"puzzle_output_shape": ("N", 8 * 8 * 8)},
                        "`puzzle_output_shape[1]` = 512 is too large")


def test_puzzle_shape_numeric_batch_is_reported():
    assert_check_failed(lab03.PuzzleShape, {"puzzle_output_shape": (1, 392)}, "symbolic dimension 'N'")


def test_puzzle_shape_placeholder_is_not_attempted():
    assert_check_unattempted(lab03.PuzzleShape)
    assert_check_unattempted(lab03.PuzzleShape, {"puzzle_output_shape": ("N", ____)})


# ---------------------------------------------------------------------------
# q5 FixBrokenModel
# ---------------------------------------------------------------------------

def _repaired(rename_attribute=True, fix_offset=True, axis=1, cast=False):
    model = lab03.broken_softmax_model()
    softmax = model.graph.node[2]
    if rename_attribute:
        del softmax.attribute[:]
        if axis is not None:
            softmax.attribute.append(helper.make_attribute("axis", axis))
    if cast:
        model.graph.node[1].input[1] = "offset_float"
        model.graph.node.insert(1, helper.make_node("Cast", ["offset"], ["offset_float"], to=onnx.TensorProto.FLOAT))
    elif fix_offset:
        offset = model.graph.initializer[1]
        offset.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(offset).astype(np.float32), "offset"))
    return model


def test_fix_reference_passes():
    namespace = {"lab03": lab03, "helper": helper, "numpy_helper": numpy_helper, "np": np}
    exec(lab03.FixBrokenModel.solution, namespace)
    assert_check_passed(lab03.FixBrokenModel, {"fixed_model": namespace["fixed_model"]})


def test_fix_with_a_cast_node_is_accepted():
    assert_check_passed(lab03.FixBrokenModel, {"fixed_model": _repaired(cast=True)})


def test_broken_model_fails_the_plain_check_and_each_fix_alone_leaves_a_fault():
    with pytest.raises(onnx.checker.ValidationError, match="Unrecognized attribute: axes"):
        onnx.checker.check_model(lab03.broken_softmax_model())
    onnx.checker.check_model(_repaired(fix_offset=False))
    with pytest.raises(onnx.shape_inference.InferenceError, match="inconsistent type tensor\\(int64\\)"):
        onnx.checker.check_model(_repaired(fix_offset=False), full_check=True)


def test_fix_untouched_model_is_reported():
    assert_check_failed(lab03.FixBrokenModel, {"fixed_model": lab03.broken_softmax_model()},
                        "does not pass `onnx.checker.check_model`: Unrecognized attribute: axes")


def test_fix_only_the_attribute_is_reported():
    assert_check_failed(lab03.FixBrokenModel, {"fixed_model": _repaired(fix_offset=False)},
                        "B has inconsistent type tensor(int64)")


def test_fix_only_the_offset_is_reported():
    assert_check_failed(lab03.FixBrokenModel, {"fixed_model": _repaired(rename_attribute=False)},
                        "Unrecognized attribute: axes")


def test_fix_by_deleting_the_attribute_is_caught_by_running_it():
    assert_check_failed(lab03.FixBrokenModel, {"fixed_model": _repaired(axis=None)},
                        "output 'y'` has the right shape, but its values differ")


def test_fix_placeholder_is_not_attempted():
    assert_check_unattempted(lab03.FixBrokenModel)


# ---------------------------------------------------------------------------
# q9 CeilModePoolShape
# ---------------------------------------------------------------------------

def test_ceil_pool_reference_passes():
    assert_check_passed(lab03.CeilModePoolShape, {"pooled_shape": solution_answer(lab03.CeilModePoolShape)})
    assert_check_passed(lab03.CeilModePoolShape, {"pooled_shape": [1, 192, 28, 21]})


def test_ceil_pool_rounding_matters_on_both_axes_and_onnx_runtime_agrees_with_inference():
    model = lab03.ceil_pool_model()
    inferred = lab03.inferred_output_shape(model)
    floored = tuple((size - lab03.POOL_KERNEL) // lab03.POOL_STRIDE + 1 for size in lab03.POOL_INPUT_SHAPE[2:])
    assert all(ceil > floor for ceil, floor in zip(inferred[2:], floored))
    (y,) = _run(model, {"x": np.zeros(lab03.POOL_INPUT_SHAPE, np.float32)})
    assert y.shape == inferred


@pytest.mark.parametrize("wrong, fragment", [
    ((1, 192, 27, 20), "the shape MaxPool gives with ceil_mode=0"),  # the floor of exercise 3, attribute ignored
    ((1, 192, 21, 28), "`pooled_shape[2]` = 21 is too small"),  # height and width swapped
    ((28, 21), "has 2 items; expected 4"),  # spatial sizes only
    ((1, 192, 29, 22), "`pooled_shape[2]` = 29 is too large"),  # ceil(size / stride) + 1: kernel forgotten
    ((1, 192, 27.5, 20.5), "should be a whole number"),  # true division, no rounding at all
])
def test_ceil_pool_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab03.CeilModePoolShape, {"pooled_shape": wrong}, fragment)


def test_ceil_pool_floor_message_does_not_give_the_answer():
    result = evaluate(lab03.CeilModePoolShape, {"pooled_shape": (1, 192, 27, 20)})
    assert "28" not in result.message and "21" not in result.message


def test_ceil_pool_placeholder_is_not_attempted():
    assert_check_unattempted(lab03.CeilModePoolShape)
    assert_check_unattempted(lab03.CeilModePoolShape, {"pooled_shape": (1, 192, ____, ____)})


# ---------------------------------------------------------------------------
# Reference helpers
# ---------------------------------------------------------------------------

def test_light_model_path_names_the_shipped_resnet():
    assert lab03.light_model_path("resnet50").name == "light_resnet50.onnx"
    with pytest.raises(FileNotFoundError, match="Reinstall the pinned onnx"):
        lab03.light_model_path("no_such_model")


def test_resnet_with_weights_replaces_every_constant_of_shape_and_stays_opset_9():
    model = lab03.resnet50_with_weights()
    assert model.opset_import[0].version == 9 and model.ir_version == 3
    assert "ConstantOfShape" not in {node.op_type for node in model.graph.node}
    assert [value.name for value in model.graph.output] == ["gpu_0/softmax_1", lab03.RESNET_LOGITS]
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    read = {name for node in model.graph.node for name in node.input}
    assert initializer_names <= read, "no initializer should be unused"
    assert initializer_names <= {value.name for value in model.graph.input}, "IR 3 lists initializers as inputs"
    onnx.checker.check_model(model)


def test_broken_model_reference_is_softmax_over_axis_1():
    y = lab03.softmax_reference(lab03.softmax_input())
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    assert not np.allclose(y.sum(axis=2), 1.0)


def test_puzzle_model_output_is_inferred_with_the_symbolic_batch():
    assert lab03.inferred_output_shape(lab03.puzzle_model()) == ("N", 392)


# ---------------------------------------------------------------------------
# q8 ReferenceVersusRuntime: the answer says what the opset-9 reference computes
# ---------------------------------------------------------------------------

def _one_output_batch_normalization_9():
    rng = np.random.default_rng(0)
    channels = 3
    x = (rng.standard_normal((4, channels, 5, 5)) * 2 + 1).astype(np.float32)
    parameters = {"scale": rng.uniform(0.5, 1.5, channels), "bias": rng.standard_normal(channels),
                  "mean": rng.standard_normal(channels), "var": rng.uniform(0.5, 2.0, channels)}
    parameters = {name: value.astype(np.float32) for name, value in parameters.items()}
    graph = helper.make_graph([helper.make_node("BatchNormalization", ["x", *parameters], ["y"])], "bn9",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(x.shape))],
                              initializer=[numpy_helper.from_array(value, name) for name, value in parameters.items()])
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 9)])
    return model, x, parameters


def test_reference_versus_runtime_answer_describes_the_blend_the_opset_9_reference_computes():
    model, x, parameters = _one_output_batch_normalization_9()
    shape = (1, -1, 1, 1)
    batch_mean, batch_var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))

    def normalise(mean, var):
        return (parameters["scale"].reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5)
                + parameters["bias"].reshape(shape))

    (by_reference,) = ReferenceEvaluator(model).run(None, {"x": x})
    (by_runtime,) = _run(model, {"x": x})
    np.testing.assert_allclose(by_reference, normalise(0.9 * parameters["mean"] + 0.1 * batch_mean,
                                                       0.9 * parameters["var"] + 0.1 * batch_var), atol=1e-5)
    np.testing.assert_allclose(by_runtime, normalise(parameters["mean"], parameters["var"]), atol=1e-5)
    answer = lab03.ReferenceVersusRuntime.solution
    assert "0.9·stored + 0.1·batch" in answer
    assert "normalises with batch statistics" not in answer
