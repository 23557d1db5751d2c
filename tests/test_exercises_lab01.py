"""Lab 01's exercises: reference answers pass, wrong answers fail, blanks are not attempted."""

import numpy as np
import onnx
import onnxruntime
import pytest

from labsupport.checking import ____
from labsupport.exercises import lab01
from labsupport.models import export_digits_mlp, train_digits_mlp
from labsupport.testing import (
    assert_check_failed,
    assert_check_passed,
    assert_check_unattempted,
    evaluate,
    solution_answer,
)


@pytest.fixture(scope="module")
def reference_onnx(tmp_path_factory):
    """The reference export of the trained digits MLP (what exercise 3 asks for)."""
    return export_digits_mlp(tmp_path_factory.mktemp("lab01") / "digits_mlp.onnx", train_digits_mlp())


def _save_variant(model: onnx.ModelProto, path, **save_options):
    onnx.save_model(model, str(path), **save_options)
    return path


# q1 ConverterCount — converters_needed

converters_reference = solution_answer(lab01.ConverterCount)


def test_converter_count_reference_passes():
    assert_check_passed(lab01.ConverterCount, {"converters_needed": converters_reference})


def test_converter_count_with_the_cases_swapped_fails_on_a_named_call():
    def swapped(frameworks, runtimes, through_ir):
        return frameworks * runtimes if through_ir else frameworks + runtimes

    assert_check_failed(lab01.ConverterCount, {"converters_needed": swapped}, "converters_needed(3, 4, False)")


def test_converter_count_that_counts_pairs_both_ways_fails():
    def both_ways(frameworks, runtimes, through_ir):
        return frameworks + runtimes if through_ir else 2 * frameworks * runtimes

    assert_check_failed(lab01.ConverterCount, {"converters_needed": both_ways}, "too large")


def test_converter_count_without_return_is_told_about_return():
    def no_return(frameworks, runtimes, through_ir):
        frameworks * runtimes

    assert_check_failed(lab01.ConverterCount, {"converters_needed": no_return}, "forget a `return`")


def test_converter_count_placeholder_body_is_not_attempted():
    def untouched(frameworks, runtimes, through_ir):
        return ____

    assert_check_unattempted(lab01.ConverterCount, {"converters_needed": untouched})


# q2 PickleOpcode — the calling opcode

def test_pickle_opcode_reference_passes_in_any_case():
    assert_check_passed(lab01.PickleOpcode, {"calling_opcode": "REDUCE"})
    assert_check_passed(lab01.PickleOpcode, {"calling_opcode": "reduce"})


def test_pickle_opcode_stack_global_is_explained_as_lookup_only():
    assert_check_failed(lab01.PickleOpcode, {"calling_opcode": "STACK_GLOBAL"}, "does not call it")


def test_pickle_opcode_other_opcode_fails_without_revealing_the_answer():
    result = evaluate(lab01.PickleOpcode, {"calling_opcode": "TUPLE1"})
    assert result.status == "incorrect" and "REDUCE" not in result.message


def test_pickle_opcode_placeholder_is_not_attempted():
    assert_check_unattempted(lab01.PickleOpcode)


# q3 ExportDigitsMlp — the export

def test_export_reference_passes(reference_onnx):
    assert_check_passed(lab01.ExportDigitsMlp, {"onnx_path": reference_onnx})


def test_export_with_fixed_batch_is_asked_to_be_dynamic(reference_onnx, tmp_path):
    model = onnx.load(reference_onnx)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    path = _save_variant(model, tmp_path / "fixed.onnx")
    assert_check_failed(lab01.ExportDigitsMlp, {"onnx_path": path}, "should be dynamic")


def test_export_with_default_input_name_is_told_the_expected_names(reference_onnx, tmp_path):
    model = onnx.load(reference_onnx)
    old_name = model.graph.input[0].name
    model.graph.input[0].name = "input"
    for node in model.graph.node:
        node.input[:] = ["input" if name == old_name else name for name in node.input]
    path = _save_variant(model, tmp_path / "renamed.onnx")
    assert_check_failed(lab01.ExportDigitsMlp, {"onnx_path": path}, "expected ['pixels']")


def test_export_with_external_weights_is_asked_to_keep_them_inside(reference_onnx, tmp_path):
    path = _save_variant(onnx.load(reference_onnx), tmp_path / "external.onnx", save_as_external_data=True,
                         all_tensors_to_one_file=True, location="external.onnx.data", size_threshold=0)
    assert_check_failed(lab01.ExportDigitsMlp, {"onnx_path": path}, "separate file")


def test_export_of_an_untrained_model_differs_from_the_reference(tmp_path):
    from labsupport.models import build_digits_mlp

    path = export_digits_mlp(tmp_path / "untrained.onnx", build_digits_mlp().eval())
    assert_check_failed(lab01.ExportDigitsMlp, {"onnx_path": path}, "differ from the reference")


def test_export_path_that_was_never_written_is_reported(tmp_path):
    assert_check_failed(lab01.ExportDigitsMlp, {"onnx_path": tmp_path / "missing.onnx"}, "no such file")


def test_export_placeholder_is_not_attempted():
    assert_check_unattempted(lab01.ExportDigitsMlp)


# q4 RoundTripParity — running the session

def test_round_trip_reference_outputs_and_session_pass(reference_onnx):
    session = onnxruntime.InferenceSession(str(reference_onnx), providers=["CPUExecutionProvider"])
    pixels = lab01.reference_logits()[0]
    assert_check_passed(lab01.RoundTripParity, {"onnx_logits": session.run(None, {"pixels": pixels})[0]})
    assert_check_passed(lab01.RoundTripParity, {"onnx_logits": session})


def test_round_trip_on_only_the_first_images_has_the_wrong_shape(reference_onnx):
    session = onnxruntime.InferenceSession(str(reference_onnx), providers=["CPUExecutionProvider"])
    partial = session.run(None, {"pixels": lab01.reference_logits()[0][:10]})[0]
    assert_check_failed(lab01.RoundTripParity, {"onnx_logits": partial}, "expected shape (450, 10)")


def test_round_trip_with_softmax_probabilities_instead_of_logits_differs(reference_onnx):
    logits = lab01.reference_logits()[1]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert_check_failed(lab01.RoundTripParity, {"onnx_logits": probabilities.astype(np.float32)},
                        "differ from the reference")


def test_round_trip_with_float64_outputs_is_told_the_dtype():
    assert_check_failed(lab01.RoundTripParity, {"onnx_logits": lab01.reference_logits()[1].astype(np.float64)}, "dtype")


def test_round_trip_placeholder_is_not_attempted():
    assert_check_unattempted(lab01.RoundTripParity)
