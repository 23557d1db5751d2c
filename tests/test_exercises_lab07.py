"""Lab 07's exercises: reference answers pass, wrong answers fail, blanks are not attempted.

The harness results the checks read are made by the real :func:`validate_model` on tiny
hand-built models (a sequence pooler, a model stamped as made by tf2onnx), so this file
stays fast; the notebook run exercises the real token classifier and Keras conversion.
"""

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from labsupport.checking import ____
from labsupport.exercises import lab07
from labsupport.models import ExportedModel, load_digits_split
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, evaluate
from labsupport.validate import convert_to_float16, validate_model


def _save(graph, path, producer=""):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=producer)
    model.ir_version = 10
    onnx.save_model(model, str(path))
    return path


# q1 MaxRelativeDifference — max_relative_difference

def relative_reference(actual, expected, floor):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    kept = np.abs(expected) > floor
    return float(np.max(np.abs(actual - expected)[kept] / np.abs(expected)[kept])) if kept.any() else 0.0


def test_relative_difference_reference_passes():
    assert_check_passed(lab07.MaxRelativeDifference, {"max_relative_difference": relative_reference})


def test_relative_difference_divided_by_actual_fails():
    def by_actual(actual, expected, floor):
        kept = np.abs(expected) > floor
        return float(np.max(np.abs(actual - expected)[kept] / np.abs(actual)[kept])) if kept.any() else 0.0

    assert_check_failed(lab07.MaxRelativeDifference, {"max_relative_difference": by_actual}, "is too small")


def test_relative_difference_without_abs_in_the_denominator_fails_on_negative_values():
    def signed(actual, expected, floor):
        kept = np.abs(expected) > floor
        return float(np.max(np.abs(actual - expected)[kept] / expected[kept])) if kept.any() else 0.0

    assert_check_failed(lab07.MaxRelativeDifference, {"max_relative_difference": signed},
                        "`max_relative_difference` on 2 values (expected -2 to 4, floor 0) = ")


def test_relative_difference_messages_name_the_call_without_printing_arrays():
    def by_actual(actual, expected, floor):
        kept = np.abs(expected) > floor
        return float(np.max(np.abs(actual - expected)[kept] / np.abs(actual)[kept])) if kept.any() else 0.0

    def wrong_on_a_matrix(actual, expected, floor):
        return relative_reference(actual, expected, floor) * (2.0 if np.ndim(expected) == 2 else 1.0)

    for wrong in (by_actual, wrong_on_a_matrix):
        message = evaluate(lab07.MaxRelativeDifference, {"max_relative_difference": wrong}).message
        assert message.startswith("`max_relative_difference` on ") and "array(" not in message and "\n" not in message
    assert "on 2 × 2 values (expected -3.3 to 5, floor 0.1) = " in message


def test_relative_difference_that_keeps_zeros_fails():
    def with_zeros(actual, expected, floor):
        with np.errstate(divide="ignore"):
            return float(np.max(np.abs(actual - expected) / np.abs(expected)))

    assert_check_failed(lab07.MaxRelativeDifference, {"max_relative_difference": with_zeros}, "is too large")


def test_relative_difference_as_a_ratio_of_maxima_fails():
    def ratio_of_maxima(actual, expected, floor):
        return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))

    assert_check_failed(lab07.MaxRelativeDifference, {"max_relative_difference": ratio_of_maxima}, "is too small")


def test_relative_difference_that_fails_on_empty_selection_is_reported():
    def no_guard(actual, expected, floor):
        kept = np.abs(expected) > floor
        return float(np.max(np.abs(actual - expected)[kept] / np.abs(expected)[kept]))

    assert_check_failed(lab07.MaxRelativeDifference, {"max_relative_difference": no_guard}, "raised ValueError")


def test_relative_difference_placeholder_is_not_attempted():
    def untouched(actual, expected, floor):
        return ____

    assert_check_unattempted(lab07.MaxRelativeDifference, {"max_relative_difference": untouched})


# q2 CatchTheGeluBug — tolerances that catch the approximate GELU

def test_gelu_tolerance_reference_passes():
    assert_check_passed(lab07.CatchTheGeluBug, {"atol": 1e-5, "rtol": 1e-5})


def test_gelu_fp16_style_tolerance_is_too_loose():
    assert_check_failed(lab07.CatchTheGeluBug, {"atol": 1e-2, "rtol": 1e-2}, "too loose")


def test_gelu_relative_only_tolerance_fails_the_correct_export():
    assert_check_failed(lab07.CatchTheGeluBug, {"atol": 0.0, "rtol": 1e-6}, "the correct export fails")


def test_gelu_negative_or_text_tolerance_is_rejected():
    assert_check_failed(lab07.CatchTheGeluBug, {"atol": -1e-5, "rtol": 1e-5}, "finite number ≥ 0")
    assert_check_failed(lab07.CatchTheGeluBug, {"atol": "1e-5", "rtol": 1e-5}, "should be a number")


def test_gelu_placeholder_is_not_attempted():
    assert_check_unattempted(lab07.CatchTheGeluBug)


def test_gelu_reference_matches_the_exact_model_and_not_the_approximate_one(tmp_path):
    feeds = lab07.gelu_sample_feeds()
    expected = lab07.gelu_reference(feeds)[0]
    for approximate, close in ((False, True), (True, False)):
        path = lab07.save_gelu_mlp(tmp_path / f"gelu_{approximate}.onnx", approximate=approximate)
        actual = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        assert np.allclose(actual, expected, atol=1e-5, rtol=1e-5) is close


# q3 SequenceLengths — sequence lengths

@pytest.fixture(scope="module")
def pooler(tmp_path_factory):
    """A stand-in for the token classifier: tokens [batch, sequence] → their mean as float [batch, 1]."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["tokens"], ["values"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["values"], ["logits"], axes=[1], keepdims=1)], "pool",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])])
    path = _save(graph, tmp_path_factory.mktemp("lab07") / "pool.onnx")
    tokens = np.random.default_rng(0).integers(0, 32, size=(64, 12))
    return ExportedModel("pooler", path, {"tokens": tokens},
                         lambda feeds: [feeds["tokens"].mean(axis=1, keepdims=True)],
                         ("logits",), {"tokens": (0, 1)})


def test_sequence_reference_passes(pooler):
    result = validate_model(pooler, dim_sizes={"sequence": (5, 20)})
    assert_check_passed(lab07.SequenceLengths, {"sequence_result": result})


def test_sequence_only_shorter_lengths_fail(pooler):
    result = validate_model(pooler, dim_sizes={"sequence": (3, 8)}, fp16=False)
    assert_check_failed(lab07.SequenceLengths, {"sequence_result": result}, "include one longer")


def test_sequence_only_the_sample_length_fails(pooler):
    result = validate_model(pooler, dim_sizes={"sequence": (12,)}, fp16=False)
    assert_check_failed(lab07.SequenceLengths, {"sequence_result": result}, "include one shorter")


def test_sequence_without_dim_sizes_is_told_how(pooler):
    assert_check_failed(lab07.SequenceLengths, {"sequence_result": validate_model(pooler, fp16=False)}, "dim_sizes")


def test_sequence_from_the_path_alone_lacks_the_reference(pooler):
    result = validate_model(pooler.path, dict(pooler.sample_feeds), dim_sizes={"sequence": (5, 20)}, fp16=False)
    assert_check_failed(lab07.SequenceLengths, {"sequence_result": result}, "not compared with the framework")


def test_sequence_table_instead_of_result_is_told_the_type(pooler):
    from labsupport.validate import validate_models

    assert_check_failed(lab07.SequenceLengths, {"sequence_result": validate_models([pooler])}, "ValidationResult")


def test_sequence_placeholder_is_not_attempted():
    assert_check_unattempted(lab07.SequenceLengths)


# q4 Float16Loss — float16 loss

@pytest.fixture(scope="module")
def fp16_logits():
    """Float32 and float16 logits of the digits MLP (the notebook's strict run covers its torch.export twin)."""
    pixels = load_digits_split().x_test
    path = lab07.reference_mlp_path()
    full = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixels": pixels})[0]
    half_session = onnxruntime.InferenceSession(convert_to_float16(path).SerializeToString(),
                                                providers=["CPUExecutionProvider"])
    return full, half_session.run(None, {"pixels": pixels})[0]


def _margin(logits):
    top_two = np.sort(logits, axis=1)[:, -2:]
    return float((top_two[:, 1] - top_two[:, 0]).min())


def test_fp16_reference_passes(fp16_logits):
    full, half = fp16_logits
    assert_check_passed(lab07.Float16Loss, {"fp16_max_abs_diff": float(np.abs(half - full).max()),
                                            "smallest_margin": _margin(full)})


def test_fp16_signed_difference_is_told_about_abs(fp16_logits):
    full, half = fp16_logits
    answers = {"fp16_max_abs_diff": float((half - full).min()), "smallest_margin": _margin(full)}
    if answers["fp16_max_abs_diff"] >= 0:
        pytest.skip("no negative difference on this machine")
    assert_check_failed(lab07.Float16Loss, answers, "absolute value")


def test_fp16_measured_on_a_few_images_only_fails(fp16_logits):
    full, half = fp16_logits
    answers = {"fp16_max_abs_diff": float(np.abs(half[:10] - full[:10]).max()), "smallest_margin": _margin(full)}
    assert_check_failed(lab07.Float16Loss, answers, "`fp16_max_abs_diff`")


def test_fp16_margin_between_largest_and_smallest_logit_fails(fp16_logits):
    full, half = fp16_logits
    answers = {"fp16_max_abs_diff": float(np.abs(half - full).max()),
               "smallest_margin": float((full.max(axis=1) - full.min(axis=1)).min())}
    assert_check_failed(lab07.Float16Loss, answers, "`smallest_margin`")


def test_fp16_largest_margin_instead_of_smallest_fails(fp16_logits):
    full, half = fp16_logits
    top_two = np.sort(full, axis=1)[:, -2:]
    answers = {"fp16_max_abs_diff": float(np.abs(half - full).max()),
               "smallest_margin": float((top_two[:, 1] - top_two[:, 0]).max())}
    assert_check_failed(lab07.Float16Loss, answers, "is too large")


def test_fp16_placeholder_is_not_attempted():
    assert_check_unattempted(lab07.Float16Loss)


# q5 FixTheFeeds — repairing feeds

@pytest.fixture(scope="module")
def broken_pixels():
    return load_digits_split().x_test.reshape(-1, 8, 8).astype(np.float64)


def test_fixed_feeds_reference_passes(broken_pixels):
    fixed_feeds = {"pixels": broken_pixels.reshape(-1, 64).astype(np.float32)}
    assert_check_passed(lab07.FixTheFeeds, {"fixed_feeds": fixed_feeds})


def test_fixed_feeds_with_the_old_name_get_the_harness_message(broken_pixels):
    answers = {"fixed_feeds": {"pixel": broken_pixels.reshape(-1, 64).astype(np.float32)}}
    assert_check_failed(lab07.FixTheFeeds, answers,
                        "input 'pixel' is not an input of this model; its inputs are ['pixels']")


def test_fixed_feeds_still_float64_get_the_conversion_advice(broken_pixels):
    answers = {"fixed_feeds": {"pixels": broken_pixels.reshape(-1, 64)}}
    assert_check_failed(lab07.FixTheFeeds, answers, "convert with .astype(np.float32)")


def test_fixed_feeds_still_8_by_8_are_asked_to_reshape(broken_pixels):
    answers = {"fixed_feeds": {"pixels": broken_pixels.astype(np.float32)}}
    assert_check_failed(lab07.FixTheFeeds, answers, "expects rank 2")


def test_fixed_feeds_rescaled_are_told_values_changed(broken_pixels):
    answers = {"fixed_feeds": {"pixels": (broken_pixels.reshape(-1, 64) * 16).astype(np.float32)}}
    assert_check_failed(lab07.FixTheFeeds, answers, "pixel values changed")


def test_fixed_feeds_with_a_few_rows_are_asked_for_all(broken_pixels):
    answers = {"fixed_feeds": {"pixels": broken_pixels.reshape(-1, 64)[:16].astype(np.float32)}}
    assert_check_failed(lab07.FixTheFeeds, answers, "keep every test image")


def test_fixed_feeds_placeholder_is_not_attempted():
    assert_check_unattempted(lab07.FixTheFeeds)


# q6 ValidateKerasConversion — validating the TensorFlow conversion

def _keras_like(path, producer):
    """A stand-in for the tf2onnx conversion: logits = pixels [batch, 8, 8, 1] summed per image, times 10 classes."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["pixels", "axes"], ["total"], keepdims=0),
         helper.make_node("Mul", ["total", "scale"], ["logits"])], "keras_like",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["unk__1", 8, 8, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["unk__1", 10])],
        [onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
         onnx.numpy_helper.from_array(np.arange(10, dtype=np.float32).reshape(1, 10) / 10, "scale")])
    _save(graph, path, producer)
    pixels = load_digits_split().x_test[:64].reshape(-1, 8, 8, 1)
    scale = np.arange(10, dtype=np.float64) / 10

    def reference(feeds):
        return [feeds["pixels"].astype(np.float64).sum(axis=(1, 2)) * scale]

    return ExportedModel("keras-like", path, {"pixels": pixels}, reference, ("logits",), {"pixels": (0,)})


@pytest.fixture(scope="module")
def keras_like(tmp_path_factory):
    return _keras_like(tmp_path_factory.mktemp("lab07") / "keras.onnx", "tf2onnx")


def test_keras_reference_passes(keras_like):
    result = validate_model(keras_like, batch_sizes=(1, 7, 128))
    assert_check_passed(lab07.ValidateKerasConversion, {"keras_result": result})


def test_keras_default_batch_sizes_miss_the_asked_ones(keras_like):
    assert_check_failed(lab07.ValidateKerasConversion, {"keras_result": validate_model(keras_like, fp16=False)},
                        "no 'batch 7' row")


def test_keras_without_the_framework_reference_fails(keras_like):
    result = validate_model(keras_like.path, batch_sizes=(1, 7, 128), fp16=False)
    assert_check_failed(lab07.ValidateKerasConversion, {"keras_result": result}, "not compared with the framework")


def test_keras_check_on_a_pytorch_export_names_the_producer(tmp_path):
    other = _keras_like(tmp_path / "torch.onnx", "pytorch")
    assert_check_failed(lab07.ValidateKerasConversion, {"keras_result": validate_model(other, batch_sizes=(1, 7, 128))},
                        "made by pytorch")


def test_keras_session_instead_of_result_is_told_the_type(keras_like):
    session = onnxruntime.InferenceSession(str(keras_like.path), providers=["CPUExecutionProvider"])
    assert_check_failed(lab07.ValidateKerasConversion, {"keras_result": session}, "ValidationResult")


def test_keras_placeholder_is_not_attempted():
    assert_check_unattempted(lab07.ValidateKerasConversion)
