"""Lab 15's exercises: reference answers pass, realistic wrong answers fail, blanks are not attempted.

The reference answers come from each problem's declared solution (``solution_answer``), so the
code learners are shown is the code proven to pass. The helpers that make the gate's bad
candidate are checked too: they do what the lab's prose says they do.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from labsupport.capstone import PYTHON_RUNTIME, ComparisonTable, MeasuredModel, ModelFile
from labsupport.checking import ____
from labsupport.exercises import lab15
from labsupport.models import load_digits_split
from labsupport.onnx_tools import cpu_session
from labsupport.testing import (
    assert_check_failed,
    assert_check_passed,
    assert_check_unattempted,
    evaluate,
    solution_answer,
)


def _failure(problem, answers, fragment):
    """``assert_check_failed``, then the message, for assertions about the rest of it."""
    assert_check_failed(problem, answers, fragment)
    return evaluate(problem, answers).message


# ---------------------------------------------------------------------------
# The bad candidate's helpers
# ---------------------------------------------------------------------------


def _gemm_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["pixels", "weight", "bias"], ["logits"])], "gemm",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(rng.normal(size=(64, 10)).astype(np.float32), "weight"),
         numpy_helper.from_array(np.zeros(10, np.float32), "bias")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_fix_batch_size_fixes_axis_zero_of_inputs_and_outputs_and_keeps_the_numbers():
    model = _gemm_model()
    fixed = lab15.fix_batch_size(model)
    onnx.checker.check_model(fixed, full_check=True)
    for value in [*fixed.graph.input, *fixed.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_value == 1
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch", "the original is left alone"
    pixels = np.random.default_rng(1).random((1, 64), dtype=np.float32)
    np.testing.assert_array_equal(cpu_session(fixed).run(None, {"pixels": pixels})[0],
                                  cpu_session(model).run(None, {"pixels": pixels})[0])


def test_glitched_calibration_changes_one_pixel_of_a_copy():
    images = np.random.default_rng(2).random((8, 1, 8, 8), dtype=np.float32)
    glitched = lab15.glitched_calibration(images)
    assert glitched.shape == images.shape and glitched.dtype == np.float32
    assert int(np.sum(glitched != images)) == 1 and glitched.max() == 255.0
    assert images.max() <= 1.0, "the caller's images are not changed"


# ---------------------------------------------------------------------------
# q1 ChooseVariant
# ---------------------------------------------------------------------------

choose_variant = solution_answer(lab15.ChooseVariant)


def test_choose_variant_reference_passes():
    assert_check_passed(lab15.ChooseVariant, {"choose_variant": choose_variant})


def _by_key(key):
    def choose(records, max_loss_points):
        return key(records, max_loss_points)["name"]
    return choose


def _allowed(records, max_loss_points, reference=None, strict=False):
    best = reference if reference is not None else max(record["accuracy_pct"] for record in records)
    if strict:
        return [record for record in records if best - record["accuracy_pct"] < max_loss_points]
    return [record for record in records if best - record["accuracy_pct"] <= max_loss_points]


WRONG_CHOICES = {
    "most accurate": (_by_key(lambda records, loss: max(records, key=lambda record: record["accuracy_pct"])),
                      "it is the most accurate"),
    "smallest, ignoring accuracy": (_by_key(lambda records, loss: min(records, key=lambda record: record["size_kb"])),
                                    "loses more than"),
    "loss measured from the first row": (
        _by_key(lambda records, loss: min(_allowed(records, loss, reference=records[0]["accuracy_pct"]),
                                          key=lambda record: (record["size_kb"], record["p50_ms_batch1"]))),
        "measures the loss from the most accurate row"),
    "strictly less than the limit": (
        _by_key(lambda records, loss: min(_allowed(records, loss, strict=True),
                                          key=lambda record: (record["size_kb"], record["p50_ms_batch1"]))),
        "which is allowed"),
    "no tie-break": (_by_key(lambda records, loss: min(_allowed(records, loss), key=lambda record: record["size_kb"])),
                     "ties in size go to the faster"),
    "the limit hard-coded to one point": (
        _by_key(lambda records, loss: min(_allowed(records, 1.0),
                                          key=lambda record: (record["size_kb"], record["p50_ms_batch1"]))),
        "loses more than 0 points"),
    "size ties broken at batch 64": (
        _by_key(lambda records, loss: min(_allowed(records, loss),
                                          key=lambda record: (record["size_kb"], record["p50_ms_batch64"]))),
        "the rule breaks a tie in size at batch 1"),
    "the loss as a fraction": (
        _by_key(lambda records, loss: min(_allowed(records, loss / 100),
                                          key=lambda record: (record["size_kb"], record["p50_ms_batch1"]))),
        "choose_variant("),
}


@pytest.mark.parametrize("wrong, fragment", WRONG_CHOICES.values(), ids=WRONG_CHOICES.keys())
def test_choose_variant_wrong_rules_are_explained(wrong, fragment):
    assert_check_failed(lab15.ChooseVariant, {"choose_variant": wrong}, fragment)


def test_choose_variant_tables_include_a_size_tie_that_batch_1_and_batch_64_break_differently():
    def faster(records, column):
        return min(records, key=lambda record: record[column])["name"]

    ties = [[record for record in records if record["size_kb"] == size]
            for records, _ in lab15._VARIANT_TABLES for size in {record["size_kb"] for record in records}]
    assert any(len(tie) > 1 and faster(tie, "p50_ms_batch1") != faster(tie, "p50_ms_batch64") for tie in ties)


def test_choose_variant_test_tables_do_not_reuse_the_labs_row_names():
    lab_names = {f"{framework} {variant}" for framework in ("PyTorch", "Keras", "scikit-learn")
                 for variant in ("fp32", "optimized", "int8 dynamic", "int8 static")}
    assert not lab_names & {record["name"] for records, _ in lab15._VARIANT_TABLES for record in records}


def test_choose_variant_messages_show_the_failing_tables_accuracies_and_say_one_point():
    def smallest(records, max_loss_points):
        return min(records, key=lambda record: record["size_kb"])["name"]

    message = _failure(lab15.ChooseVariant, {"choose_variant": smallest},
                                  "loses more than 1 point against the most accurate row")
    assert "not your table" in message and "'linear baseline': 4.4 KB, 95.78 %" in message
    assert "1 points" not in message


def test_choose_variant_returning_the_row_is_asked_for_its_name():
    def whole_row(records, max_loss_points):
        return next(record for record in records if record["name"] == choose_variant(records, max_loss_points))

    assert_check_failed(lab15.ChooseVariant, {"choose_variant": whole_row}, "returned a whole row")


def test_choose_variant_returning_a_position_is_reported():
    def position(records, max_loss_points):
        names = [record["name"] for record in records]
        return names.index(choose_variant(records, max_loss_points))

    assert_check_failed(lab15.ChooseVariant, {"choose_variant": position}, "is not the name of one of the rows")


def test_choose_variant_without_return_is_told_about_return():
    def no_return(records, max_loss_points):
        choose_variant(records, max_loss_points)

    assert_check_failed(lab15.ChooseVariant, {"choose_variant": no_return}, "forget a `return`")


def test_choose_variant_placeholder_is_not_attempted():
    assert_check_unattempted(lab15.ChooseVariant)
    assert_check_unattempted(lab15.ChooseVariant, {"choose_variant": lambda records, max_loss_points: ____})


def test_choose_variant_reads_the_capstone_tables_records():
    rows = [MeasuredModel(ModelFile("PyTorch", "fp32", lab15.lab_artifact("a.onnx")), PYTHON_RUNTIME, 17_000, 0.975),
            MeasuredModel(ModelFile("PyTorch", "int8", lab15.lab_artifact("b.onnx")), PYTHON_RUNTIME, 7_000, 0.972),
            MeasuredModel(ModelFile("Keras", "int8", lab15.lab_artifact("c.onnx")), PYTHON_RUNTIME, 6_000, 0.95)]
    for row in rows:
        row.latency = {}
    records = ComparisonTable(rows).records()
    assert choose_variant(records, 1.0) == lab15.reference_choose_variant(records, 1.0) == "PyTorch int8"


# ---------------------------------------------------------------------------
# q2 PredictionChange
# ---------------------------------------------------------------------------

prediction_change = solution_answer(lab15.PredictionChange)


def test_prediction_change_reference_passes():
    assert_check_passed(lab15.PredictionChange, {"prediction_change": prediction_change})


def test_prediction_change_cases_separate_changes_from_new_mistakes():
    cases = lab15.PredictionChange().cases()
    assert any(expected[0] == 0 and expected[1] > 0 for _, expected in cases), "a case with no drop but changes"
    assert any(expected[1] > int(np.sum((case[1] == case[0]) & (case[2] != case[0]))) for case, expected in cases)
    assert any(expected[0] < 0 for _, expected in cases), "a case where the candidate is better"


def _with(drop=None, changed=None):
    def wrong(labels, reference_predictions, candidate_predictions):
        right_drop, right_changed = prediction_change(labels, reference_predictions, candidate_predictions)
        return (right_drop if drop is None else drop(right_drop, labels, reference_predictions, candidate_predictions),
                right_changed if changed is None else changed(labels, reference_predictions, candidate_predictions))
    return wrong


def test_prediction_change_rounded_drop_is_told_not_to_round():
    def rounded(labels, reference_predictions, candidate_predictions):
        drop, changed = prediction_change(labels, reference_predictions, candidate_predictions)
        return round(drop, 2), changed

    message = _failure(lab15.PredictionChange, {"prediction_change": rounded},
                                  "is close, but rounded to 2 decimal places. Don't round")
    assert "not the difference of the two accuracies" not in message


WRONG_CHANGES = {
    "the drop as a fraction": (_with(drop=lambda value, *_: value / 100), "percentage points"),
    "the drop's sign reversed": (_with(drop=lambda value, *_: -value), "wrong sign"),
    "the drop as the fraction of changed rows": (
        _with(drop=lambda value, labels, reference, candidate: 100 * np.mean(reference != candidate)),
        "not the difference of the two accuracies"),
    "only the new mistakes counted": (
        _with(changed=lambda labels, reference, candidate: int(np.sum((reference == labels) & (candidate != labels)))),
        "newly gets wrong"),
    "the candidate's mistakes counted": (
        _with(changed=lambda labels, reference, candidate: int(np.sum(candidate != labels))), "too large"),
}


@pytest.mark.parametrize("wrong, fragment", WRONG_CHANGES.values(), ids=WRONG_CHANGES.keys())
def test_prediction_change_wrong_answers_are_explained(wrong, fragment):
    assert_check_failed(lab15.PredictionChange, {"prediction_change": wrong}, fragment)


def test_prediction_change_returning_one_number_is_asked_for_a_pair():
    def drop_only(labels, reference_predictions, candidate_predictions):
        return prediction_change(labels, reference_predictions, candidate_predictions)[0]

    assert_check_failed(lab15.PredictionChange, {"prediction_change": drop_only}, "return a pair")


def test_prediction_change_placeholder_is_not_attempted():
    assert_check_unattempted(lab15.PredictionChange)


# ---------------------------------------------------------------------------
# q3 SizeRatio
# ---------------------------------------------------------------------------

@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    """artifacts/15/ with the three files the check reads (their sizes are what matters), and a table over them."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "artifacts" / "15"
    folder.mkdir(parents=True)
    sizes = {lab15.EXPORTED_FILE: 24_034, lab15.FLOAT_FILE: 17_177, lab15.STATIC_FILE: 6_875,
             lab15.OPTIMIZED_FILE: 16_991, lab15.DYNAMIC_FILE: 7_181}
    for name, size in sizes.items():
        (folder / name).write_bytes(bytes(size))
    rows = [MeasuredModel(ModelFile("PyTorch", variant, lab15.lab_artifact(name)), PYTHON_RUNTIME, sizes[name], 0.97)
            for variant, name in (("fp32", lab15.FLOAT_FILE), ("int8 static", lab15.STATIC_FILE))]
    return sizes, ComparisonTable(rows)


def test_size_ratio_reference_passes(artifacts):
    _, table = artifacts
    assert_check_passed(lab15.SizeRatio, {"size_ratio": solution_answer(lab15.SizeRatio, table=table)})


def _ratio(sizes, numerator, denominator):
    return sizes[numerator] / sizes[denominator]


def test_size_ratio_inverted_is_reported(artifacts):
    sizes, _ = artifacts
    assert_check_failed(lab15.SizeRatio, {"size_ratio": _ratio(sizes, lab15.FLOAT_FILE, lab15.STATIC_FILE)},
                        "divide the other way round")


def test_size_ratio_against_the_file_as_exported_is_reported(artifacts):
    sizes, _ = artifacts
    assert_check_failed(lab15.SizeRatio, {"size_ratio": _ratio(sizes, lab15.STATIC_FILE, lab15.EXPORTED_FILE)},
                        "as exported with its metadata")


def test_size_ratio_is_right_when_the_export_had_no_metadata_to_strip(artifacts):
    sizes, table = artifacts
    exported = Path(lab15.lab_artifact(lab15.EXPORTED_FILE))
    exported.write_bytes(bytes(sizes[lab15.FLOAT_FILE]))
    assert_check_passed(lab15.SizeRatio, {"size_ratio": solution_answer(lab15.SizeRatio, table=table)})


def test_size_ratio_from_the_tables_rounded_kilobytes_is_reported(artifacts):
    sizes, _ = artifacts
    rounded = round(sizes[lab15.STATIC_FILE] / 1000, 1) / round(sizes[lab15.FLOAT_FILE] / 1000, 1)
    assert_check_failed(lab15.SizeRatio, {"size_ratio": rounded}, "divides the table's rounded kilobytes")


def _exact(sizes):
    return sizes[lab15.STATIC_FILE] / sizes[lab15.FLOAT_FILE]


SIZE_MISTAKES = {
    "the saving": (lambda sizes: 1 - _exact(sizes), "is the saving (1 − ratio)"),
    "a percent": (lambda sizes: 100 * _exact(sizes), "is a percentage"),
    "the saving in percent": (lambda sizes: 100 * (1 - _exact(sizes)), "is the saving in percent"),
    "the int8 dynamic row": (lambda sizes: _ratio(sizes, lab15.DYNAMIC_FILE, lab15.FLOAT_FILE),
                             "uses the PyTorch int8 dynamic row"),
    "the optimized file as denominator": (lambda sizes: _ratio(sizes, lab15.STATIC_FILE, lab15.OPTIMIZED_FILE),
                                          "divides by the PyTorch optimized file"),
    "the ratio rounded": (lambda sizes: round(_exact(sizes), 2), "is close, but rounded to"),
}


@pytest.mark.parametrize("wrong, fragment", SIZE_MISTAKES.values(), ids=SIZE_MISTAKES.keys())
def test_size_ratio_mistakes_get_their_own_diagnosis_not_the_kilobytes_advice(artifacts, wrong, fragment):
    sizes, _ = artifacts
    message = _failure(lab15.SizeRatio, {"size_ratio": wrong(sizes)}, fragment)
    assert "kilobytes" not in message


def test_size_ratio_unexplained_wrong_number_names_the_two_rows(artifacts):
    assert_check_failed(lab15.SizeRatio, {"size_ratio": 0.55}, "is too large: divide the int8 static file's size")


def test_size_ratio_as_text_is_reported(artifacts):
    sizes, _ = artifacts
    answer = f"{_ratio(sizes, lab15.STATIC_FILE, lab15.FLOAT_FILE):.3f}"
    assert_check_failed(lab15.SizeRatio, {"size_ratio": answer}, "should be a number")


def test_size_ratio_without_the_files_says_which_cells_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_check_failed(lab15.SizeRatio, {"size_ratio": 0.4}, "is missing: run the cells above")


def test_size_ratio_placeholder_is_not_attempted():
    assert_check_unattempted(lab15.SizeRatio)


# ---------------------------------------------------------------------------
# q4 GateSlack
# ---------------------------------------------------------------------------

extra_mistakes_allowed = solution_answer(lab15.GateSlack, math=math)


def test_gate_slack_reference_passes():
    assert extra_mistakes_allowed(len(load_digits_split().y_test), 0.01) == 4
    assert_check_passed(lab15.GateSlack, {"extra_mistakes_allowed": extra_mistakes_allowed})


def test_gate_slack_follows_the_gates_default_limit_and_test_set():
    from labsupport.gate import run_gate

    assert lab15.gate_accuracy_limit() == 0.01 and run_gate.__kwdefaults__["max_accuracy_drop"] == 0.01
    assert lab15.held_out_digit_count() == len(load_digits_split().y_test)
    assert lab15.GateSlack().cases()[0] == ((lab15.held_out_digit_count(), 0.01), 4)


def test_gate_slack_cases_include_a_set_size_where_rounding_goes_over_the_limit():
    assert any(round(limit * size) > expected for (size, limit), expected in lab15.GateSlack().cases())


def _slack(formula):
    return lambda test_size, max_accuracy_drop: formula(max_accuracy_drop * test_size)


@pytest.mark.parametrize("wrong, fragment", [
    (_slack(round), "Rounding to the nearest whole number can go over the limit: keep only whole digits at or under"),
    (_slack(math.ceil), "over the limit of 1 point"),
    (_slack(lambda product: product), "is not a whole number"),
    (_slack(lambda product: math.floor(product) - 1), "is too small"),
    (_slack(lambda product: str(math.floor(product))), "return a number of digits"),
    (lambda test_size, max_accuracy_drop: 4, "`extra_mistakes_allowed(350, 0.01)` = 4"),
])
def test_gate_slack_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab15.GateSlack, {"extra_mistakes_allowed": wrong}, fragment)


def test_gate_slack_accepts_a_whole_float():
    assert_check_passed(lab15.GateSlack, {"extra_mistakes_allowed": _slack(lambda product: float(int(product)))})


def test_gate_slack_placeholder_is_not_attempted():
    assert_check_unattempted(lab15.GateSlack)
    assert_check_unattempted(lab15.GateSlack, {"extra_mistakes_allowed": lambda test_size, max_accuracy_drop: ____})
