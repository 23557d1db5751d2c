"""Lab 06's exercises: every reference answer passes, realistic slips fail with a useful message."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

from labsupport.exercises import lab06
from labsupport.testing import (
    assert_check_failed,
    assert_check_passed,
    assert_check_unattempted,
    evaluate,
    solution_answer,
)

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# Reference answers: each problem's declared solution, run
# ---------------------------------------------------------------------------

zipmap_to_matrix = solution_answer(lab06.ZipMapToMatrix)
classification_parity = solution_answer(lab06.ClassificationParity)
float32_gap = solution_answer(lab06.Float32Discrepancy, lab06=lab06)
evaluate_trees = solution_answer(lab06.EvaluateTinyTrees)


def convert_digits(*, name="input", shape=(None, 64), tensor_type=FloatTensorType, zipmap=False,
                   target_opset=None):
    """The digits pipeline converted with one knob per realistic slip; the defaults are the lab's options."""
    target_opset = {"": 17, "ai.onnx.ml": 3} if target_opset is None else target_opset
    return convert_sklearn(lab06.digits_pipeline(), initial_types=[(name, tensor_type(list(shape)))],
                           options={"zipmap": zipmap}, target_opset=target_opset)


def convert_mixed(initial_types=None, zipmap=False):
    initial_types = initial_types or [("numeric", FloatTensorType([None, 3])),
                                      ("categorical", StringTensorType([None, 2]))]
    return convert_sklearn(lab06.mixed_pipeline(), initial_types=initial_types, options={"zipmap": zipmap})


@pytest.fixture(scope="module")
def digits_onnx():
    return convert_digits()


@pytest.fixture(scope="module")
def mixed_onnx():
    return convert_mixed()


# ---------------------------------------------------------------------------
# q1 ZipMapToMatrix
# ---------------------------------------------------------------------------

def test_zipmap_to_matrix_reference_passes():
    assert_check_passed(lab06.ZipMapToMatrix, {"zipmap_to_matrix": zipmap_to_matrix})


def test_zipmap_to_matrix_in_dict_order_is_reported():
    def values_in_dict_order(rows):
        return np.array([list(row.values()) for row in rows], dtype=np.float32)

    assert_check_failed(lab06.ZipMapToMatrix, {"zipmap_to_matrix": values_in_dict_order}, "differ from the reference")


def test_zipmap_to_matrix_in_float64_is_reported():
    def float64_matrix(rows):
        return zipmap_to_matrix(rows).astype(np.float64)

    assert_check_failed(lab06.ZipMapToMatrix, {"zipmap_to_matrix": float64_matrix}, "expected dtype float32")


def test_zipmap_to_matrix_with_integer_indexing_fails_on_string_labels():
    def by_position(rows):
        return np.array([[row[k] for k in range(len(row))] for row in rows], dtype=np.float32)

    assert_check_failed(lab06.ZipMapToMatrix, {"zipmap_to_matrix": by_position}, "raised KeyError")


def test_zipmap_to_matrix_messages_name_the_call_without_printing_the_rows():
    def values_in_dict_order(rows):
        return np.array([list(row.values()) for row in rows], dtype=np.float32)

    message = evaluate(lab06.ZipMapToMatrix, {"zipmap_to_matrix": values_in_dict_order}).message
    assert message.startswith("`zipmap_to_matrix` on 3 rows × 3 classes (integer labels, keys out of order) has the "
                              "right shape, but its values differ")
    assert "{" not in message and "0.25" not in message and len(message) < 200


def test_zipmap_to_matrix_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.ZipMapToMatrix)


# ---------------------------------------------------------------------------
# q2 ConvertDigitsPipeline
# ---------------------------------------------------------------------------

def test_convert_digits_reference_passes(digits_onnx):
    assert_check_passed(lab06.ConvertDigitsPipeline, {"digits_onnx": digits_onnx})


def test_convert_digits_with_zipmap_is_reported():
    assert_check_failed(lab06.ConvertDigitsPipeline, {"digits_onnx": convert_digits(zipmap=True)}, "added a ZipMap")


def test_convert_digits_with_default_opset_is_reported():
    assert_check_failed(lab06.ConvertDigitsPipeline, {"digits_onnx": convert_digits(target_opset=21)},
                        "asks for opset 17")


def test_convert_digits_with_to_onnx_input_name_is_reported():
    assert_check_failed(lab06.ConvertDigitsPipeline, {"digits_onnx": convert_digits(name="X")},
                        "graph inputs are named ['X']")


def test_convert_digits_with_fixed_batch_is_reported():
    assert_check_failed(lab06.ConvertDigitsPipeline, {"digits_onnx": convert_digits(shape=(1, 64))},
                        "fixed size 1 on axis 0")


def test_convert_digits_with_double_input_is_reported():
    assert_check_failed(lab06.ConvertDigitsPipeline, {"digits_onnx": convert_digits(tensor_type=DoubleTensorType)},
                        "expected FLOAT")


def test_convert_digits_path_or_pipeline_is_reported(digits_onnx):
    assert_check_failed(lab06.ConvertDigitsPipeline, {"digits_onnx": lab06.digits_pipeline()},
                        "should be an onnx.ModelProto")


def test_convert_digits_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.ConvertDigitsPipeline)


# ---------------------------------------------------------------------------
# q3 ClassificationParity
# ---------------------------------------------------------------------------

def test_classification_parity_reference_passes():
    assert_check_passed(lab06.ClassificationParity, {"classification_parity": classification_parity})


def test_classification_parity_as_a_fraction_is_reported():
    def fraction(*arrays):
        agreement, diff = classification_parity(*arrays)
        return agreement / 100, diff

    assert_check_failed(lab06.ClassificationParity, {"classification_parity": fraction}, "is too small")


def test_classification_parity_without_abs_is_reported():
    def signed(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
        agreement, _ = classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities)
        return agreement, float((onnx_probabilities - reference_probabilities).max())

    assert_check_failed(lab06.ClassificationParity, {"classification_parity": signed}, "`max_abs_prob_diff` = ")


def test_classification_parity_mean_difference_is_reported():
    def mean_difference(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
        agreement, _ = classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities)
        return agreement, float(np.abs(onnx_probabilities - reference_probabilities).mean())

    assert_check_failed(lab06.ClassificationParity, {"classification_parity": mean_difference}, "is too small")


def test_classification_parity_messages_name_the_call_without_printing_arrays():
    def signed(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
        agreement, _ = classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities)
        return agreement, float((onnx_probabilities - reference_probabilities).max())

    message = evaluate(lab06.ClassificationParity, {"classification_parity": signed}).message
    assert message.startswith("`classification_parity` on 8 rows × 3 classes: `max_abs_prob_diff` = ")
    assert "array(" not in message and "[" not in message and len(message) < 200


def test_classification_parity_with_the_reference_rounded_to_float32_is_told_why():
    def rounded_reference(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
        agreement, _ = classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities)
        return agreement, float(np.abs(onnx_probabilities - reference_probabilities.astype(np.float32)).max())

    assert_check_failed(lab06.ClassificationParity, {"classification_parity": rounded_reference},
                        "the size of float32 rounding: the reference probabilities were rounded to float32")


def test_classification_parity_returning_one_number_is_told_to_return_two():
    def agreement_only(*arrays):
        return classification_parity(*arrays)[0]

    assert_check_failed(lab06.ClassificationParity, {"classification_parity": agreement_only},
                        "should return two numbers, (agreement_percent, max_abs_prob_diff), but it returned a float")


def test_classification_parity_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.ClassificationParity)


# ---------------------------------------------------------------------------
# q4 ConvertMixedPipeline
# ---------------------------------------------------------------------------

def test_convert_mixed_reference_passes(mixed_onnx):
    assert_check_passed(lab06.ConvertMixedPipeline, {"mixed_onnx": mixed_onnx})


def test_convert_mixed_with_one_input_per_column_is_reported():
    from labsupport.models.classical_models import MIXED_CATEGORICAL, MIXED_NUMERIC

    per_column = ([(name, FloatTensorType([None, 1])) for name in MIXED_NUMERIC]
                  + [(name, StringTensorType([None, 1])) for name in MIXED_CATEGORICAL])
    assert_check_failed(lab06.ConvertMixedPipeline, {"mixed_onnx": convert_mixed(per_column)}, "has 5 graph inputs")


def test_convert_mixed_with_swapped_names_is_reported():
    swapped = [("categorical", FloatTensorType([None, 3])), ("numeric", StringTensorType([None, 2]))]
    assert_check_failed(lab06.ConvertMixedPipeline, {"mixed_onnx": convert_mixed(swapped)}, "graph inputs are named")


def test_convert_mixed_with_zipmap_is_reported():
    assert_check_failed(lab06.ConvertMixedPipeline, {"mixed_onnx": convert_mixed(zipmap=True)}, "added a ZipMap")


def test_convert_mixed_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.ConvertMixedPipeline)


# ---------------------------------------------------------------------------
# q5 Float32Discrepancy (float32_gap)
# ---------------------------------------------------------------------------

def _count_mismatches(onnx_labels, reference_labels):
    return int(np.sum(onnx_labels != reference_labels))


def _gap_with(measure_probabilities, count=_count_mismatches):
    """A float32_gap that runs both models as the reference does and combines the outputs its own way."""
    def gap(onnx_model, reference_model, features):
        labels, probabilities = lab06.run_onnx(onnx_model, {"input": features.astype(np.float32)})
        return (count(labels, reference_model.predict(features)),
                measure_probabilities(probabilities, reference_model.predict_proba(features)))

    return gap


def test_float32_gap_reference_passes_and_finds_the_timestamp_gap():
    assert_check_passed(lab06.Float32Discrepancy, {"float32_gap": float32_gap})
    _, x_test, _, _ = lab06.timestamp_split()
    mismatches, max_diff = float32_gap(lab06.convert_timestamp_pipeline("float"), lab06.timestamp_pipeline(), x_test)
    assert mismatches > 0 and max_diff > 0.05


def test_float32_gap_signed_maximum_is_reported_although_it_is_right_on_the_binary_timestamps():
    signed = _gap_with(lambda onnx, reference: float((onnx - reference).max()))
    _, x_test, _, _ = lab06.timestamp_split()
    model, reference = lab06.convert_timestamp_pipeline("float"), lab06.timestamp_pipeline()
    assert signed(model, reference, x_test) == pytest.approx(float32_gap(model, reference, x_test))
    assert_check_failed(lab06.Float32Discrepancy, {"float32_gap": signed},
                        "`float32_gap` on the test digits whose largest float32 error is downward")
    assert_check_failed(lab06.Float32Discrepancy, {"float32_gap": signed}, "the largest *signed* difference")


def test_float32_gap_signed_maximum_the_other_way_round_is_reported():
    signed = _gap_with(lambda onnx, reference: float((reference - onnx).max()))
    assert_check_failed(lab06.Float32Discrepancy, {"float32_gap": signed},
                        "whose largest float32 error is upward (244 rows): `max_probability_diff` is the largest "
                        "*signed*")


def test_float32_gap_with_the_reference_rounded_to_float32_passes_within_the_stated_tolerance():
    # scikit-learn answers float32 digits in float32, and on the timestamps the rounding is 1e-7 of a 0.3 gap.
    rounded = _gap_with(lambda onnx, reference: float(np.abs(onnx - reference.astype(np.float32)).max()))
    assert lab06.Float32Discrepancy.rtol == 1e-5
    assert_check_passed(lab06.Float32Discrepancy, {"float32_gap": rounded})


def test_float32_gap_counting_matches_is_reported():
    matches = _gap_with(lambda onnx, reference: float(np.abs(onnx - reference).max()),
                        count=lambda onnx_labels, reference_labels: int(np.sum(onnx_labels == reference_labels)))
    assert_check_failed(lab06.Float32Discrepancy, {"float32_gap": matches}, "`label_mismatches` = 488 is too large")


def test_float32_gap_as_a_fraction_is_reported():
    fraction = _gap_with(lambda onnx, reference: float(np.abs(onnx - reference).max()),
                         count=lambda onnx_labels, reference_labels: float(np.mean(onnx_labels != reference_labels)))
    assert_check_failed(lab06.Float32Discrepancy, {"float32_gap": fraction}, "should be a whole number")


def test_float32_gap_mean_difference_is_reported():
    mean = _gap_with(lambda onnx, reference: float(np.abs(onnx - reference).mean()))
    assert_check_failed(lab06.Float32Discrepancy, {"float32_gap": mean}, "`max_probability_diff` = ")


def test_float32_gap_feeding_float64_to_the_onnx_model_is_reported():
    def uncast(onnx_model, reference_model, features):
        labels, probabilities = lab06.run_onnx(onnx_model, {"input": features})
        return int(np.sum(labels != reference_model.predict(features))), 0.0

    assert_check_failed(lab06.Float32Discrepancy, {"float32_gap": uncast},
                        "`float32_gap` on the timestamp test set (500 rows) raised InvalidArgument")


def test_float32_gap_returning_one_number_is_told_to_return_two():
    assert_check_failed(lab06.Float32Discrepancy, {"float32_gap": lambda *args: float32_gap(*args)[1]},
                        "should return two numbers, (label_mismatches, max_probability_diff)")


def test_float32_gap_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.Float32Discrepancy)


# ---------------------------------------------------------------------------
# q6 DoublePrecisionExport
# ---------------------------------------------------------------------------

def test_double_export_reference_passes():
    assert_check_passed(lab06.DoublePrecisionExport,
                        {"timestamps_double_onnx": lab06.convert_timestamp_pipeline("double")})


def test_double_export_with_float_input_is_reported():
    assert_check_failed(lab06.DoublePrecisionExport,
                        {"timestamps_double_onnx": lab06.convert_timestamp_pipeline("float")}, "DoubleTensorType")


def test_double_export_with_zipmap_is_reported():
    model = convert_sklearn(lab06.timestamp_pipeline(), initial_types=[("input", DoubleTensorType([None, 3]))])
    assert_check_failed(lab06.DoublePrecisionExport, {"timestamps_double_onnx": model}, "added a ZipMap")


def test_double_export_of_another_model_is_reported():
    model = convert_sklearn(lab06.digits_pipeline(), initial_types=[("input", DoubleTensorType([None, 64]))],
                            options={"zipmap": False})
    assert_check_failed(lab06.DoublePrecisionExport, {"timestamps_double_onnx": model}, "running it failed")


def test_double_export_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.DoublePrecisionExport)


# ---------------------------------------------------------------------------
# q7 EvaluateTinyTrees
# ---------------------------------------------------------------------------

def test_evaluate_trees_reference_passes():
    assert_check_passed(lab06.EvaluateTinyTrees, {"evaluate_trees": evaluate_trees})


def test_evaluate_trees_reference_matches_onnx_runtime_everywhere():
    axis = np.linspace(0, 1, 21)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2).astype(np.float32)
    by_hand = np.array([evaluate_trees(point) for point in grid])
    np.testing.assert_allclose(by_hand, lab06.evaluate_tiny_trees_onnx(grid), rtol=1e-6)


def test_evaluate_trees_with_strict_comparison_is_reported():
    def strict(x):
        x0, x1 = float(x[0]), float(x[1])
        tree_0 = (1.0 if x1 < 0.25 else 2.0) if x0 < 0.5 else (3.0 if x1 < 0.75 else 5.0)
        tree_1 = (-0.5 if x0 < 0.25 else 0.25) if x1 < 0.5 else 0.75
        return 0.125 + tree_0 + tree_1

    assert_check_failed(lab06.EvaluateTinyTrees, {"evaluate_trees": strict}, "evaluate_trees((0.5, 0.25))")


def test_evaluate_trees_without_base_value_is_reported():
    assert_check_failed(lab06.EvaluateTinyTrees, {"evaluate_trees": lambda x: evaluate_trees(x) - 0.125},
                        "is too small")


def test_evaluate_trees_averaging_the_trees_is_reported():
    def average(x):
        return 0.125 + (evaluate_trees(x) - 0.125) / 2

    assert_check_failed(lab06.EvaluateTinyTrees, {"evaluate_trees": average}, "is too small")


def test_evaluate_trees_missing_return_is_reported():
    assert_check_failed(lab06.EvaluateTinyTrees, {"evaluate_trees": lambda x: None}, "forget a `return`")


def test_evaluate_trees_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.EvaluateTinyTrees)


# ---------------------------------------------------------------------------
# Reference helpers and review questions
# ---------------------------------------------------------------------------

def test_tiny_tree_model_passes_the_checker_and_subsets_of_trees_add_up():
    import onnx

    onnx.checker.check_model(lab06.tiny_tree_model(), full_check=True)
    points = lab06.tiny_tree_points()
    tree_0 = lab06.run_onnx(lab06.tiny_tree_model(trees=(0,), base_value=0.0), {"x": points})[0][:, 0]
    tree_1 = lab06.run_onnx(lab06.tiny_tree_model(trees=(1,), base_value=0.0), {"x": points})[0][:, 0]
    np.testing.assert_allclose(lab06.TINY_TREE_BASE + tree_0 + tree_1, lab06.evaluate_tiny_trees_onnx(points))


def test_timestamp_data_makes_float32_disagree_and_double_agree():
    _, x_test, _, _ = lab06.timestamp_split()
    mismatches, max_diff = lab06.float32_gap(lab06.convert_timestamp_pipeline("float"), lab06.timestamp_pipeline(),
                                             x_test)
    assert mismatches > 0 and max_diff > 0.05
    labels, probabilities = lab06.run_onnx(lab06.convert_timestamp_pipeline("double"), {"input": x_test})
    model = lab06.timestamp_pipeline()
    assert np.array_equal(labels, model.predict(x_test))
    np.testing.assert_allclose(probabilities, model.predict_proba(x_test), atol=1e-12)


# ---------------------------------------------------------------------------
# The notebook's prose
# ---------------------------------------------------------------------------

_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def powers_of_two_that_disagree(text: str) -> list[str]:
    """Each "2ᵃ⁻ᵇ = N" (superscript exponent) in ``text`` whose power of two is not N."""
    wrong = []
    for exponent, claimed in re.findall(r"2([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)\s*=\s*(\d[\d,]*)", text):
        terms = [int(term) for term in exponent.translate(_SUPERSCRIPT).split("-") if term]
        power = terms[0] - sum(terms[1:]) if not exponent.startswith("⁻") else -sum(terms)
        if 2.0 ** power != float(claimed.replace(",", "")):
            wrong.append(f"2{exponent} = {claimed}")
    return wrong


def test_a_power_of_two_typed_into_the_prose_is_checked():
    assert powers_of_two_that_disagree("neighbouring values are 2³¹⁻²³ = 128 s apart") == ["2³¹⁻²³ = 128"]
    assert powers_of_two_that_disagree("spacing 2³⁰⁻²³ = 128 s, and 2¹⁰ = 1,024") == []


def test_lab06_prose_states_no_wrong_power_of_two():
    notebook = nbformat.read(str(ROOT / "solutions" / f"{lab06.LAB}.ipynb"), as_version=4)
    wrong = [claim for cell in notebook.cells if cell.cell_type == "markdown"
             for claim in powers_of_two_that_disagree(cell.source)]
    assert not wrong, f"wrong powers of two in lab 06's prose: {wrong}; print the computed value in a cell instead"
