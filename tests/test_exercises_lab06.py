"""Lab 06's exercises: every reference answer passes, realistic slips fail with a useful message."""

from __future__ import annotations

import numpy as np
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

from labsupport.exercises import lab06
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer


# ---------------------------------------------------------------------------
# Reference answers: each problem's declared solution, run
# ---------------------------------------------------------------------------

zipmap_to_matrix = solution_answer(lab06.ZipMapToMatrix)
classification_parity = solution_answer(lab06.ClassificationParity)
evaluate_trees = solution_answer(lab06.EvaluateTinyTrees)


def convert_digits(*, name="input", shape=(None, 64), tensor_type=FloatTensorType, zipmap=False,
                   target_opset=None):
    """The digits pipeline converted with one knob per realistic slip; the defaults are the lab's options."""
    target_opset = {"": 17, "ai.onnx.ml": 3} if target_opset is None else target_opset
    return convert_sklearn(lab06.digits_pipeline(), initial_types=[(name, tensor_type(list(shape)))],
                           options={"zipmap": zipmap}, target_opset=target_opset)


def convert_mixed(initial_types=None, zipmap=False):
    initial_types = initial_types or [("numeric", FloatTensorType([None, 3])), ("categorical", StringTensorType([None, 2]))]
    return convert_sklearn(lab06.mixed_pipeline(), initial_types=initial_types, options={"zipmap": zipmap})


@pytest.fixture(scope="module")
def digits_onnx():
    return convert_digits()


@pytest.fixture(scope="module")
def mixed_onnx():
    return convert_mixed()


# ---------------------------------------------------------------------------
# Q1 ZipMapToMatrix
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


def test_zipmap_to_matrix_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.ZipMapToMatrix)


# ---------------------------------------------------------------------------
# Q2 ConvertDigitsPipeline
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
    assert_check_failed(lab06.ConvertDigitsPipeline, {"digits_onnx": lab06.digits_pipeline()}, "should be an onnx.ModelProto")


def test_convert_digits_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.ConvertDigitsPipeline)


# ---------------------------------------------------------------------------
# Q3 ClassificationParity
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

    assert_check_failed(lab06.ClassificationParity, {"classification_parity": signed}, "[1]")


def test_classification_parity_mean_difference_is_reported():
    def mean_difference(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities):
        agreement, _ = classification_parity(onnx_labels, onnx_probabilities, reference_labels, reference_probabilities)
        return agreement, float(np.abs(onnx_probabilities - reference_probabilities).mean())

    assert_check_failed(lab06.ClassificationParity, {"classification_parity": mean_difference}, "is too small")


def test_classification_parity_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.ClassificationParity)


# ---------------------------------------------------------------------------
# Q4 ConvertMixedPipeline
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
# Q5 Float32Discrepancy
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def float32_answers():
    _, x_test, _, y_test = lab06.timestamp_split()
    labels, probabilities = lab06.run_onnx(lab06.convert_timestamp_pipeline("float"), {"input": x_test.astype(np.float32)})
    model = lab06.timestamp_pipeline()
    return x_test, y_test, labels, probabilities, model


def test_float32_discrepancy_reference_passes(float32_answers):
    x_test, _, labels, probabilities, model = float32_answers
    answers = {"label_mismatches": int(np.sum(labels != model.predict(x_test))),
               "max_probability_diff": float(np.abs(probabilities - model.predict_proba(x_test)).max())}
    assert answers["label_mismatches"] > 0
    assert_check_passed(lab06.Float32Discrepancy, answers)


def test_float32_discrepancy_against_true_labels_is_reported(float32_answers):
    x_test, y_test, labels, probabilities, model = float32_answers
    answers = {"label_mismatches": int(np.sum(labels != y_test)),
               "max_probability_diff": float(np.abs(probabilities - model.predict_proba(x_test)).max())}
    assert_check_failed(lab06.Float32Discrepancy, answers, "`label_mismatches` =")


def test_float32_discrepancy_counting_matches_is_reported(float32_answers):
    x_test, _, labels, probabilities, model = float32_answers
    answers = {"label_mismatches": int(np.sum(labels == model.predict(x_test))),
               "max_probability_diff": float(np.abs(probabilities - model.predict_proba(x_test)).max())}
    assert_check_failed(lab06.Float32Discrepancy, answers, "is too large")


def test_float32_discrepancy_mean_difference_is_reported(float32_answers):
    x_test, _, labels, probabilities, model = float32_answers
    answers = {"label_mismatches": int(np.sum(labels != model.predict(x_test))),
               "max_probability_diff": float(np.abs(probabilities - model.predict_proba(x_test)).mean())}
    assert_check_failed(lab06.Float32Discrepancy, answers, "`max_probability_diff`")


def test_float32_discrepancy_placeholder_is_not_attempted():
    assert_check_unattempted(lab06.Float32Discrepancy)


# ---------------------------------------------------------------------------
# Q6 DoublePrecisionExport
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
# Q7 EvaluateTinyTrees
# ---------------------------------------------------------------------------

def test_evaluate_trees_reference_passes():
    assert_check_passed(lab06.EvaluateTinyTrees, {"evaluate_trees": evaluate_trees})


def test_evaluate_trees_reference_matches_onnx_runtime_everywhere():
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 21), np.linspace(0, 1, 21)), axis=-1).reshape(-1, 2).astype(np.float32)
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
    assert_check_failed(lab06.EvaluateTinyTrees, {"evaluate_trees": lambda x: evaluate_trees(x) - 0.125}, "is too small")


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
    mismatches, max_diff = lab06.float32_timestamp_discrepancy()
    assert mismatches > 0 and max_diff > 0.05
    _, x_test, _, _ = lab06.timestamp_split()
    labels, probabilities = lab06.run_onnx(lab06.convert_timestamp_pipeline("double"), {"input": x_test})
    model = lab06.timestamp_pipeline()
    assert np.array_equal(labels, model.predict(x_test))
    np.testing.assert_allclose(probabilities, model.predict_proba(x_test), atol=1e-12)
