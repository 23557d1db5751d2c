"""Lab 09 exercises: each reference answer passes, realistic wrong answers fail with a useful
message, and the placeholder is not attempted."""

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model

from labsupport.checking import ____
from labsupport.exercises import lab09
from labsupport.models import bn_cnn
from labsupport.optimize import collect_log_messages, fold_batchnorm, op_histogram
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer


@pytest.fixture(scope="module")
def encoder_exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    layer = bn_cnn.build_encoder_layer()
    return {"torchscript": bn_cnn.export_encoder_layer(folder / "torchscript.onnx", layer, dynamo=False),
            "dynamo": bn_cnn.export_encoder_layer(folder / "dynamo.onnx", layer, dynamo=True)}


# ---------------------------------------------------------------------------
# q1 OptimizedOpCounts
# ---------------------------------------------------------------------------

optimized_op_counts = solution_answer(lab09.OptimizedOpCounts, ort=ort, onnx=onnx, Path=Path, Counter=Counter)


def test_optimized_op_counts_reference_passes():
    assert_check_passed(lab09.OptimizedOpCounts, {"optimized_op_counts": optimized_op_counts})


def test_optimized_op_counts_of_the_original_file_are_reported():
    def original_counts(model_path, level):
        return Counter(node.op_type for node in onnx.load(model_path).graph.node)

    assert_check_failed(lab09.OptimizedOpCounts, {"optimized_op_counts": original_counts},
                        "ORT_ENABLE_BASIC)` counts the nodes of the original file")


def test_optimized_op_counts_at_a_fixed_level_are_reported():
    def always_extended(model_path, level):
        return optimized_op_counts(model_path, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)

    assert_check_failed(lab09.OptimizedOpCounts, {"optimized_op_counts": always_extended},
                        "`optimized_op_counts('conv_batchnorm_relu.onnx', ORT_DISABLE_ALL)` gives 1 nodes; the graph "
                        "the runtime saves at that level differs from it in the count of BatchNormalization, Conv, "
                        "FusedConv, Relu")


def test_optimized_op_counts_returning_a_list_is_reported():
    def as_list(model_path, level):
        return list(optimized_op_counts(model_path, level).elements())

    assert_check_failed(lab09.OptimizedOpCounts, {"optimized_op_counts": as_list}, "returned a list; it should return "
                        "a Counter")


def test_optimized_op_counts_placeholder_is_not_attempted():
    assert_check_unattempted(lab09.OptimizedOpCounts)
    assert_check_unattempted(lab09.OptimizedOpCounts, {"optimized_op_counts": lambda model_path, level: ____})


# ---------------------------------------------------------------------------
# q2 FoldBatchNorm
# ---------------------------------------------------------------------------

fold_by_hand = solution_answer(lab09.FoldBatchNorm)


def test_fold_batchnorm_reference_and_the_labsupport_helper_pass():
    assert_check_passed(lab09.FoldBatchNorm, {"fold_batchnorm": fold_by_hand})
    assert_check_passed(lab09.FoldBatchNorm, {"fold_batchnorm": fold_batchnorm})


def test_fold_batchnorm_cases_come_from_the_runtime_and_use_a_large_epsilon():
    cases = lab09.FoldBatchNorm().cases()
    assert {args[-1] for args, _ in cases} == {1e-5, 1e-3, 0.5}
    for args, (weight, bias) in cases:
        assert weight.shape == args[0].shape and bias.shape == args[1].shape
        assert not np.allclose(weight, args[0])


def test_fold_batchnorm_without_epsilon_is_reported():
    def no_epsilon(weight, bias, gamma, beta, mean, var, epsilon):
        return fold_by_hand(weight, bias, gamma, beta, mean, var, 0.0)

    assert_check_failed(lab09.FoldBatchNorm, {"fold_batchnorm": no_epsilon}, "gives a fused weight that differs from "
                        "ONNX Runtime's fusion")


def test_fold_batchnorm_bias_left_unscaled_is_reported():
    def unscaled_bias(weight, bias, gamma, beta, mean, var, epsilon):
        fused_weight, _ = fold_by_hand(weight, bias, gamma, beta, mean, var, epsilon)
        return fused_weight, bias - mean + beta

    assert_check_failed(lab09.FoldBatchNorm, {"fold_batchnorm": unscaled_bias}, "gives a fused bias that differs")


def test_fold_batchnorm_scaling_input_channels_is_reported():
    def wrong_axis(weight, bias, gamma, beta, mean, var, epsilon):
        scale = gamma / np.sqrt(var + epsilon)
        return weight * scale.reshape(1, -1, 1, 1), (bias - mean) * scale + beta

    assert_check_failed(lab09.FoldBatchNorm, {"fold_batchnorm": wrong_axis}, "raised ValueError")


def test_fold_batchnorm_returning_one_array_is_reported():
    assert_check_failed(lab09.FoldBatchNorm, {"fold_batchnorm": lambda *args: fold_by_hand(*args)[0]},
                        "should return two arrays")


def test_fold_batchnorm_placeholder_is_not_attempted():
    assert_check_unattempted(lab09.FoldBatchNorm)


# ---------------------------------------------------------------------------
# q3 PredictBasicSurvivors
# ---------------------------------------------------------------------------

def test_prediction_reference_passes_as_dict_or_counter():
    surviving_ops = solution_answer(lab09.PredictBasicSurvivors)
    assert_check_passed(lab09.PredictBasicSurvivors, {"surviving_ops": surviving_ops})
    assert_check_passed(lab09.PredictBasicSurvivors, {"surviving_ops": Counter(surviving_ops) + Counter(Relu=0)})


def test_prediction_that_keeps_both_sigmoids_is_reported():
    predicted = {"Sigmoid": 2, "Mul": 1, "Div": 1, "Unsqueeze": 1, "Squeeze": 1}
    assert_check_failed(lab09.PredictBasicSurvivors, {"surviving_ops": predicted}, "predicts 6 nodes in all")


def test_prediction_that_removes_the_unsqueeze_pair_but_keeps_sqrt_is_reported():
    predicted = {"Sigmoid": 1, "Mul": 1, "Div": 1, "Sqrt": 1}
    assert_check_failed(lab09.PredictBasicSurvivors, {"surviving_ops": predicted}, "predicts 4 nodes in all")


def test_prediction_with_the_right_total_but_wrong_ops_names_them():
    predicted = {"Sigmoid": 1, "Mul": 1, "Sqrt": 1, "Unsqueeze": 1, "Squeeze": 1}
    assert_check_failed(lab09.PredictBasicSurvivors, {"surviving_ops": predicted},
                        "has the right number of nodes, but its count of Div, Sqrt is not right")


def test_prediction_as_a_list_is_reported():
    assert_check_failed(lab09.PredictBasicSurvivors, {"surviving_ops": ["Sigmoid", "Mul"]}, "should be a dict")


def test_prediction_placeholder_is_not_attempted():
    assert_check_unattempted(lab09.PredictBasicSurvivors)
    assert_check_unattempted(lab09.PredictBasicSurvivors, {"surviving_ops": {"Sigmoid": ____}})


# ---------------------------------------------------------------------------
# q4 DropInitializerInputs
# ---------------------------------------------------------------------------

drop_initializer_inputs = solution_answer(lab09.DropInitializerInputs, onnx=onnx)


def test_drop_initializer_inputs_reference_passes():
    assert_check_passed(lab09.DropInitializerInputs, {"drop_initializer_inputs": drop_initializer_inputs})


def test_ir3_models_list_every_initializer_as_an_input_and_pass_the_checker():
    for variant in lab09.DropInitializerInputs.variants:
        model = lab09.ir3_model(variant)
        onnx.checker.check_model(model, full_check=True)
        assert model.ir_version == 3
        assert {tensor.name for tensor in model.graph.initializer} < {value.name for value in model.graph.input}


def test_drop_initializer_inputs_leaving_ir_3_is_reported():
    def keeps_ir_3(model):
        dropped = drop_initializer_inputs(model)
        dropped.ir_version = 3
        return dropped

    assert_check_failed(lab09.DropInitializerInputs, {"drop_initializer_inputs": keeps_ir_3},
                        "returns a model the checker refuses: w in initializer but not in graph input")


def test_drop_initializer_inputs_editing_the_original_is_reported():
    def in_place(model):
        names = {tensor.name for tensor in model.graph.initializer}
        kept = [value for value in model.graph.input if value.name not in names]
        del model.graph.input[:]
        model.graph.input.extend(kept)
        model.ir_version = 4
        return model

    assert_check_failed(lab09.DropInitializerInputs, {"drop_initializer_inputs": in_place},
                        "changed the model it was given: work on a copy")


def test_drop_initializer_inputs_that_also_drop_real_inputs_are_reported():
    def only_first_input(model):
        dropped = drop_initializer_inputs(model)
        del dropped.graph.input[1:]
        return dropped

    assert_check_failed(lab09.DropInitializerInputs, {"drop_initializer_inputs": only_first_input},
                        "returns a model the checker refuses")


def test_drop_initializer_inputs_that_reorder_real_inputs_are_reported():
    def reordered(model):
        dropped = drop_initializer_inputs(model)
        inputs = sorted(dropped.graph.input, key=lambda value: value.name, reverse=True)
        del dropped.graph.input[:]
        dropped.graph.input.extend(inputs)
        return dropped

    assert_check_failed(lab09.DropInitializerInputs, {"drop_initializer_inputs": reordered},
                        "whose graph inputs are ['b', 'a']")


def test_drop_initializer_inputs_placeholder_is_not_attempted():
    assert_check_unattempted(lab09.DropInitializerInputs)


# ---------------------------------------------------------------------------
# q5 FuseEncoderAttention
# ---------------------------------------------------------------------------

def _fused_path(source, folder, *, raw_mask=True):
    options = FusionOptions("bert")
    options.use_raw_attention_mask(raw_mask)
    fused = optimize_model(str(source), model_type="bert", num_heads=4, hidden_size=64, opt_level=0,
                           optimization_options=options)
    path = Path(folder) / f"fused_{Path(source).stem}_{raw_mask}.onnx"
    fused.save_model_to_file(str(path))
    return path


def test_fuse_encoder_reference_passes(encoder_exports, tmp_path):
    namespace = {"FusionOptions": FusionOptions, "optimize_model": optimize_model,
                 "torchscript_encoder_path": encoder_exports["torchscript"], "artifacts": tmp_path}
    exec(lab09.FuseEncoderAttention.solution, namespace)
    assert_check_passed(lab09.FuseEncoderAttention, {"fused_encoder_path": namespace["fused_encoder_path"]})


def test_fuse_encoder_default_mask_index_is_caught_on_left_padding(encoder_exports, tmp_path):
    assert_check_failed(lab09.FuseEncoderAttention,
                        {"fused_encoder_path": _fused_path(encoder_exports["torchscript"], tmp_path, raw_mask=False)},
                        "These inputs are padded on the left")


def test_fuse_encoder_from_the_torch_export_file_has_no_attention(encoder_exports, tmp_path):
    assert_check_failed(lab09.FuseEncoderAttention,
                        {"fused_encoder_path": _fused_path(encoder_exports["dynamo"], tmp_path)},
                        "has no Attention node")


def test_fuse_encoder_unfused_export_is_reported(encoder_exports):
    assert_check_failed(lab09.FuseEncoderAttention, {"fused_encoder_path": encoder_exports["torchscript"]},
                        "has no Attention node")


def test_fuse_encoder_model_object_instead_of_path_is_reported(encoder_exports):
    fused = optimize_model(str(encoder_exports["torchscript"]), model_type="bert", num_heads=4, hidden_size=64,
                           opt_level=0)
    assert_check_failed(lab09.FuseEncoderAttention, {"fused_encoder_path": fused},
                        "should be the path of an .onnx file")


def test_fuse_encoder_placeholder_is_not_attempted():
    assert_check_unattempted(lab09.FuseEncoderAttention)


# ---------------------------------------------------------------------------
# q6 SplitMaskUnsqueeze
# ---------------------------------------------------------------------------

def _split(dynamo_encoder):
    namespace = {"onnx": onnx, "helper": helper, "numpy_helper": numpy_helper, "np": np,
                 "dynamo_encoder": dynamo_encoder}
    exec(lab09.SplitMaskUnsqueeze.solution, namespace)
    return namespace["split_export"]


def test_split_mask_reference_and_labsupport_helper_pass(encoder_exports):
    dynamo_encoder = onnx.load(str(encoder_exports["dynamo"]))
    before = dynamo_encoder.SerializeToString()
    assert_check_passed(lab09.SplitMaskUnsqueeze, {"split_export": _split(dynamo_encoder)})
    assert_check_passed(lab09.SplitMaskUnsqueeze, {"split_export": lab09.split_mask_unsqueeze(dynamo_encoder)})
    assert dynamo_encoder.SerializeToString() == before, "the answers work on copies"


def test_the_torch_export_file_has_one_two_axis_mask_unsqueeze_and_the_optimizer_says_why_it_fails(encoder_exports):
    dynamo_encoder = onnx.load(str(encoder_exports["dynamo"]))
    graph = dynamo_encoder.graph
    (unsqueeze,) = [node for node in graph.node if node.op_type == "Unsqueeze" and node.input[0] == "mask"]
    axes = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}[unsqueeze.input[1]]
    assert axes.tolist() == [1, 2]
    with collect_log_messages("fusion_attention", 10) as messages:
        fused = lab09.fuse_encoder(dynamo_encoder).model
    assert "Attention" not in op_histogram(fused)
    assert "fuse_attention: failed to match mask path" in messages


def test_split_mask_unchanged_export_is_reported(encoder_exports):
    assert_check_failed(lab09.SplitMaskUnsqueeze, {"split_export": onnx.load(str(encoder_exports["dynamo"]))},
                        "still fuses no Attention")


def test_split_mask_with_swapped_axes_is_caught_by_running_it(encoder_exports):
    split = lab09.split_mask_unsqueeze(onnx.load(str(encoder_exports["dynamo"])))
    first = next(node for node in split.graph.node if node.op_type == "Unsqueeze" and node.input[0] == "mask")
    split.graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "axis_two"))
    first.input[1] = "axis_two"
    assert_check_failed(lab09.SplitMaskUnsqueeze, {"split_export": split}, "values differ from the reference")


def test_split_mask_with_nodes_out_of_order_is_reported(encoder_exports):
    split = lab09.split_mask_unsqueeze(onnx.load(str(encoder_exports["dynamo"])))
    nodes = list(split.graph.node)
    second = next(node for node in nodes if node.input[0] == "mask_unsqueezed_once")
    nodes.remove(second)
    nodes.insert(0, second)
    del split.graph.node[:]
    split.graph.node.extend(nodes)
    assert_check_failed(lab09.SplitMaskUnsqueeze, {"split_export": split}, "does not pass `onnx.checker.check_model`")


def test_split_mask_fused_answer_is_reported_as_unfused_expected(encoder_exports):
    fused = lab09.fuse_encoder(lab09.split_mask_unsqueeze(onnx.load(str(encoder_exports["dynamo"])))).model
    assert_check_failed(lab09.SplitMaskUnsqueeze, {"split_export": copy.deepcopy(fused)},
                        "already holds fused Attention, BiasGelu, SkipLayerNormalization nodes: store the edited graph")


def test_split_mask_placeholder_is_not_attempted():
    assert_check_unattempted(lab09.SplitMaskUnsqueeze)


# ---------------------------------------------------------------------------
# Reference helpers
# ---------------------------------------------------------------------------

def test_runtime_fold_matches_the_formula_and_the_model_it_replaces():
    parameters = lab09.batchnorm_parameters(seed=3)
    weight, bias = lab09.runtime_folded_parameters(parameters)
    expected = fold_batchnorm(*(parameters[name] for name in ("weight", "bias", "gamma", "beta", "mean", "var",
                                                               "epsilon")))
    np.testing.assert_allclose(weight, expected[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bias, expected[1], rtol=1e-6, atol=1e-7)


def test_prediction_model_is_valid_and_its_basic_graph_computes_the_same():
    model = lab09.prediction_model()
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    expected = (1 / (1 + np.exp(-x))) ** 2 / np.sqrt([1.0, 4.0, 9.0, 16.0])
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5)
