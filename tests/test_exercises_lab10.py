"""Lab 10 exercises: each reference answer passes, realistic wrong answers fail with a useful
message, and the placeholder is not attempted.

The size-and-accuracy exercise reads the lab's files from ``artifacts/10``; its tests write a
least-squares digits classifier and a deliberately badly calibrated int8 copy there, inside a
temporary folder, which takes a fraction of a second instead of training the lab's MLP.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, quantize_static

from labsupport.checking import ____
from labsupport.exercises import lab10
from labsupport.models import load_digits_split
from labsupport.notebook_build import render_source
from labsupport.onnx_tools import cpu_session
from labsupport.quantize import DigitsCalibrationReader, accuracy
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer


def _solution_namespace(problem, **context):
    """Every name a problem's declared solution defines, run for real."""
    namespace = {"np": np, **context}
    exec(compile(problem.solution, f"<{problem.__name__}.solution>", "exec"), namespace)
    return namespace


def _student_namespace(problem, cell_source, **context):
    """The names the student copy of an exercise cell defines, untouched."""
    namespace = {"np": np, "____": ____, **context}
    exec(render_source(cell_source, "test"), namespace)
    return {name: namespace[name] for name in problem.vars}


# ---------------------------------------------------------------------------
# q1 QuantizeDequantize
# ---------------------------------------------------------------------------

QUANTIZE_REFERENCE = _solution_namespace(lab10.QuantizeDequantize)


def _answers(quantize=None, dequantize=None):
    return {"quantize": quantize or QUANTIZE_REFERENCE["quantize"],
            "dequantize": dequantize or QUANTIZE_REFERENCE["dequantize"]}


def test_quantize_reference_passes():
    assert_check_passed(lab10.QuantizeDequantize, _answers())


def test_quantize_returning_typed_codes_passes():
    def typed(x, scale, zero_point, qmin, qmax):
        return QUANTIZE_REFERENCE["quantize"](x, scale, zero_point, qmin, qmax).astype(np.int32)

    assert_check_passed(lab10.QuantizeDequantize, _answers(quantize=typed))


@pytest.mark.parametrize("case", range(len(lab10._QUANTIZE_CASES)))
def test_quantize_cases_agree_with_onnx_quantize_linear(case):
    x, scale, zero_point, qmin, qmax = lab10._QUANTIZE_CASES[case]
    code_type = TensorProto.UINT8 if qmin == 0 else TensorProto.INT8
    dtype = np.uint8 if qmin == 0 else np.int8
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["q"])], "quantize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("q", code_type, list(x.shape))],
        [numpy_helper.from_array(np.array(scale, np.float32), "scale"),
         numpy_helper.from_array(np.array(zero_point, dtype), "zero_point")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    codes = cpu_session(model).run(None, {"x": x})[0]
    assert np.array_equal(codes, lab10._reference_quantize(x, scale, zero_point, qmin, qmax))


def test_quantize_rounding_halves_away_from_zero_is_told_about_ties():
    def half_up(x, scale, zero_point, qmin, qmax):
        return np.clip(np.floor(np.asarray(x, dtype=np.float64) / scale + 0.5) + zero_point, qmin, qmax)

    assert_check_failed(lab10.QuantizeDequantize, _answers(quantize=half_up), "even neighbour")


def test_quantize_truncating_is_reported():
    def truncated(x, scale, zero_point, qmin, qmax):
        return np.clip((np.asarray(x) / scale + zero_point).astype(int), qmin, qmax)

    assert_check_failed(lab10.QuantizeDequantize, _answers(quantize=truncated), "truncates")


def test_quantize_without_clipping_is_reported():
    def unclipped(x, scale, zero_point, qmin, qmax):
        return np.round(np.asarray(x) / scale) + zero_point

    assert_check_failed(lab10.QuantizeDequantize, _answers(quantize=unclipped), "clip values beyond the range")


def test_quantize_subtracting_the_zero_point_is_reported():
    def subtracted(x, scale, zero_point, qmin, qmax):
        return np.clip(np.round(np.asarray(x) / scale) - zero_point, qmin, qmax)

    assert_check_failed(lab10.QuantizeDequantize, _answers(quantize=subtracted), "subtracts the zero point")


def test_quantize_without_rounding_is_reported():
    def unrounded(x, scale, zero_point, qmin, qmax):
        return np.clip(np.asarray(x) / scale + zero_point, qmin, qmax)

    assert_check_failed(lab10.QuantizeDequantize, _answers(quantize=unrounded), "with fractions")


def test_dequantize_in_the_codes_own_type_is_told_it_wrapped_around():
    def wrapping(q, scale, zero_point):
        return scale * (q - zero_point)

    assert_check_failed(lab10.QuantizeDequantize, _answers(dequantize=wrapping), "wrapped around")


def test_dequantize_forgetting_the_zero_point_is_reported():
    def no_zero_point(q, scale, zero_point):
        return scale * np.asarray(q, dtype=np.float32)

    assert_check_failed(lab10.QuantizeDequantize, _answers(dequantize=no_zero_point), "scale · (q − zero_point)")


def test_quantize_that_raises_is_reported_with_the_error():
    def broken(x, scale, zero_point, qmin, qmax):
        raise ValueError("not yet")

    assert_check_failed(lab10.QuantizeDequantize, _answers(quantize=broken), "raised ValueError: not yet")


def test_quantize_student_cell_is_not_attempted():
    cell = ("def quantize(x, scale, zero_point, qmin, qmax):\n    ### BEGIN SOLUTION\n    return 1\n"
            "    ### END SOLUTION\n\n\ndef dequantize(q, scale, zero_point):\n    ### BEGIN SOLUTION\n    return 1\n"
            "    ### END SOLUTION\n")
    assert_check_unattempted(lab10.QuantizeDequantize, _student_namespace(lab10.QuantizeDequantize, cell))


def test_quantize_placeholder_is_not_attempted():
    assert_check_unattempted(lab10.QuantizeDequantize)


# ---------------------------------------------------------------------------
# q2 ScaleZeroPoint
# ---------------------------------------------------------------------------

scale_zero_point = solution_answer(lab10.ScaleZeroPoint)


def test_scale_zero_point_reference_passes():
    assert_check_passed(lab10.ScaleZeroPoint, {"scale_zero_point": scale_zero_point})


def test_scale_zero_point_cases_include_ranges_without_zero_and_both_conventions():
    arguments = lab10.ScaleZeroPoint.arguments
    assert any(rmin > 0 for rmin, *_ in arguments) and any(rmax < 0 for _, rmax, *_ in arguments)
    assert {symmetric for *_, symmetric in arguments} == {True, False}
    assert lab10.reference_scale_zero_point(-3.0, -0.5, 0, 255) == pytest.approx((3.0 / 255, 255))


def test_scale_zero_point_without_widening_to_zero_is_reported():
    def narrow(rmin, rmax, qmin, qmax, symmetric=False):
        scale = (rmax - rmin) / (qmax - qmin)
        return scale, int(round(qmin - rmin / scale))

    assert_check_failed(lab10.ScaleZeroPoint, {"scale_zero_point": narrow}, "widen the range to include 0")


def test_scale_zero_point_in_ort_order_is_reported():
    def swapped(rmin, rmax, qmin, qmax, symmetric=False):
        scale, zero_point = scale_zero_point(rmin, rmax, qmin, qmax, symmetric)
        return zero_point, scale

    assert_check_failed(lab10.ScaleZeroPoint, {"scale_zero_point": swapped}, "return (scale, zero_point)")


def test_scale_zero_point_unrounded_is_reported():
    def unrounded(rmin, rmax, qmin, qmax, symmetric=False):
        rmin, rmax = min(rmin, 0.0), max(rmax, 0.0)
        scale = (rmax - rmin) / (qmax - qmin)
        return scale, qmin - rmin / scale

    assert_check_failed(lab10.ScaleZeroPoint, {"scale_zero_point": unrounded}, "should be a whole number")


def test_scale_zero_point_ignoring_symmetric_is_reported():
    def always_asymmetric(rmin, rmax, qmin, qmax, symmetric=False):
        return scale_zero_point(rmin, rmax, qmin, qmax, False)

    assert_check_failed(lab10.ScaleZeroPoint, {"scale_zero_point": always_asymmetric},
                        "the scale from `scale_zero_point(-0.8, 1.6, -127, 127, True)`")


def test_scale_zero_point_returning_one_number_is_reported():
    assert_check_failed(lab10.ScaleZeroPoint, {"scale_zero_point": lambda *args: 0.1}, "should return a pair")


def test_scale_zero_point_placeholder_is_not_attempted():
    assert_check_unattempted(lab10.ScaleZeroPoint, {"scale_zero_point": lambda *args: ____})


# ---------------------------------------------------------------------------
# q3 CalibrationReader
# ---------------------------------------------------------------------------

DigitsReader = solution_answer(lab10.CalibrationReader, CalibrationDataReader=CalibrationDataReader)


def test_calibration_reader_reference_passes():
    assert_check_passed(lab10.CalibrationReader, {"DigitsReader": DigitsReader})


def test_calibration_reader_reference_drives_a_real_calibration(tmp_path):
    path = _least_squares_model(tmp_path / "float.onnx")
    quantize_static(str(path), str(tmp_path / "int8.onnx"), DigitsReader(load_digits_split().x_train[:100], 32))
    assert onnx.load(str(tmp_path / "int8.onnx")).graph.node[0].op_type in ("QuantizeLinear", "DequantizeLinear")


def _reader(get_next, init=None):
    def default_init(self, images, batch_size):
        self.images, self.batch_size, self.position = images, batch_size, 0

    return type("DigitsReader", (CalibrationDataReader,), {"__init__": init or default_init, "get_next": get_next})


def test_calibration_reader_giving_everything_at_once_is_reported():
    def everything(self):
        if self.position:
            return None
        self.position = 1
        return {"pixels": self.images}

    assert_check_failed(lab10.CalibrationReader, {"DigitsReader": _reader(everything)}, "gave 1 batches")


def test_calibration_reader_that_never_stops_is_reported():
    def cycling(self):
        batch = self.images[self.position:self.position + self.batch_size]
        self.position = (self.position + self.batch_size) % len(self.images)
        return {"pixels": batch}

    assert_check_failed(lab10.CalibrationReader, {"DigitsReader": _reader(cycling)}, "never returned None")


def test_calibration_reader_raising_stop_iteration_is_told_to_return_none():
    def init(self, images, batch_size):
        self.batches = iter([images[start:start + batch_size] for start in range(0, len(images), batch_size)])

    def raising(self):
        return {"pixels": next(self.batches)}

    assert_check_failed(lab10.CalibrationReader, {"DigitsReader": _reader(raising, init)}, "return None instead")


def _slicing(key="pixels", dtype=np.float32):
    def get_next(self):
        if self.position >= len(self.images):
            return None
        batch = self.images[self.position:self.position + self.batch_size].astype(dtype)
        self.position += self.batch_size
        return {key: batch}

    return get_next


def test_calibration_reader_with_the_wrong_input_name_is_reported():
    assert_check_failed(lab10.CalibrationReader, {"DigitsReader": _reader(_slicing(key="input"))},
                        "the model's input is named 'pixels'")


def test_calibration_reader_giving_float64_is_reported():
    assert_check_failed(lab10.CalibrationReader, {"DigitsReader": _reader(_slicing(dtype=np.float64))},
                        "the model reads float32 arrays")


def test_calibration_reader_that_starts_again_after_none_is_reported():
    def restarting(self):
        if self.position >= len(self.images):
            self.position = 0
            return None
        batch = self.images[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return {"pixels": batch}

    assert_check_failed(lab10.CalibrationReader, {"DigitsReader": _reader(restarting)}, "started again")


def test_calibration_reader_instance_instead_of_class_is_reported():
    assert_check_failed(lab10.CalibrationReader, {"DigitsReader": DigitsReader(np.zeros((4, 64), np.float32), 2)},
                        "should be a class")


def test_calibration_reader_student_cell_is_not_attempted():
    cell = ("class DigitsReader(CalibrationDataReader):\n    def __init__(self, images, batch_size):\n"
            "        ### BEGIN SOLUTION\n        self.batches = iter([images])\n        ### END SOLUTION\n\n"
            "    def get_next(self):\n        ### BEGIN SOLUTION\n        return None\n        ### END SOLUTION\n")
    answers = _student_namespace(lab10.CalibrationReader, cell, CalibrationDataReader=CalibrationDataReader)
    assert_check_unattempted(lab10.CalibrationReader, answers)


def test_calibration_reader_placeholder_is_not_attempted():
    assert_check_unattempted(lab10.CalibrationReader)


# ---------------------------------------------------------------------------
# q4 SizeAndAccuracy
# ---------------------------------------------------------------------------

def _least_squares_model(path):
    """A one-Gemm digits classifier fitted by least squares: float32 pixels [batch, 64] → logits [batch, 10]."""
    data = load_digits_split()
    features = np.hstack([data.x_train, np.ones((len(data.x_train), 1), np.float32)])
    weights = np.linalg.lstsq(features, np.eye(10)[data.y_train], rcond=None)[0].astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["pixels", "weight", "bias"], ["logits"])], "least_squares",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(weights[:64], "weight"), numpy_helper.from_array(weights[64], "bias")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10), str(path))
    return path


@pytest.fixture(scope="module")
def lab_folder(tmp_path_factory):
    """artifacts/10 with a float model and an int8 copy calibrated on data with one huge pixel (a real loss)."""
    folder = tmp_path_factory.mktemp("lab10")
    artifacts = folder / "artifacts" / "10"
    artifacts.mkdir(parents=True)
    fp32_path = _least_squares_model(artifacts / lab10.FP32_FILE)
    glitched = load_digits_split().x_train[:128].copy()
    glitched[0, 20] = 255.0
    quantize_static(str(fp32_path), str(artifacts / lab10.STATIC_FILE), DigitsCalibrationReader(glitched))
    return folder


@pytest.fixture
def measured(lab_folder, monkeypatch):
    monkeypatch.chdir(lab_folder)
    return _solution_namespace(lab10.SizeAndAccuracy, accuracy=accuracy, data=load_digits_split(),
                               fp32_path=lab10.lab_artifact(lab10.FP32_FILE),
                               static_path=lab10.lab_artifact(lab10.STATIC_FILE))


def test_size_and_accuracy_fixture_has_a_real_accuracy_loss(measured):
    assert measured["accuracy_loss_points"] > 1 and 0 < measured["size_ratio"] < 1


def test_size_and_accuracy_reference_passes(measured):
    assert_check_passed(lab10.SizeAndAccuracy, {name: measured[name] for name in lab10.SizeAndAccuracy.vars})


def test_size_and_accuracy_inverted_ratio_is_reported(measured):
    answers = {"size_ratio": 1 / measured["size_ratio"], "accuracy_loss_points": measured["accuracy_loss_points"]}
    assert_check_failed(lab10.SizeAndAccuracy, answers, "divide the other way round")


def test_size_and_accuracy_fraction_instead_of_points_is_reported(measured):
    answers = {"size_ratio": measured["size_ratio"], "accuracy_loss_points": measured["accuracy_loss_points"] / 100}
    assert_check_failed(lab10.SizeAndAccuracy, answers, "percentage points")


def test_size_and_accuracy_wrong_sign_is_reported(measured):
    answers = {"size_ratio": measured["size_ratio"], "accuracy_loss_points": -measured["accuracy_loss_points"]}
    assert_check_failed(lab10.SizeAndAccuracy, answers, "wrong sign")


def test_size_and_accuracy_sizes_in_rounded_kilobytes_are_reported(measured, lab_folder):
    artifacts = lab_folder / "artifacts" / "10"
    rounded = round((artifacts / lab10.STATIC_FILE).stat().st_size / 1000) / round(
        (artifacts / lab10.FP32_FILE).stat().st_size / 1000)
    answers = {"size_ratio": rounded, "accuracy_loss_points": measured["accuracy_loss_points"]}
    assert_check_failed(lab10.SizeAndAccuracy, answers, "`size_ratio` = ")


def test_size_and_accuracy_text_is_reported(measured):
    answers = {"size_ratio": f"{measured['size_ratio']:.3f}", "accuracy_loss_points": measured["accuracy_loss_points"]}
    assert_check_failed(lab10.SizeAndAccuracy, answers, "should be a number")


def test_size_and_accuracy_without_the_files_says_which_cells_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_check_failed(lab10.SizeAndAccuracy, {"size_ratio": 0.26, "accuracy_loss_points": 0.0}, "is missing")


def test_size_and_accuracy_placeholder_is_not_attempted():
    assert_check_unattempted(lab10.SizeAndAccuracy)


# ---------------------------------------------------------------------------
# q5 LargestSqnrDrop
# ---------------------------------------------------------------------------

largest_sqnr_drop = solution_answer(lab10.LargestSqnrDrop)


def test_largest_sqnr_drop_reference_passes():
    assert_check_passed(lab10.LargestSqnrDrop, {"largest_sqnr_drop": largest_sqnr_drop})


def test_largest_sqnr_drop_cases_tell_the_lowest_and_the_qdq_answers_apart():
    for errors, order in lab10._SQNR_CASES:
        expected = lab10.reference_largest_sqnr_drop(errors, order)
        assert expected != min(errors, key=lambda name: errors[name]["xmodel_err"])
    by_qdq = {name: {"xmodel_err": values["qdq_err"]} for name, values in lab10._SQNR_CASES[1][0].items()}
    assert lab10.reference_largest_sqnr_drop(by_qdq, lab10._SQNR_CASES[1][1]) != lab10.reference_largest_sqnr_drop(
        *lab10._SQNR_CASES[1])


def test_largest_sqnr_drop_returning_the_lowest_sqnr_is_reported():
    def lowest(activation_errors, order):
        return min(activation_errors, key=lambda name: activation_errors[name]["xmodel_err"])

    assert_check_failed(lab10.LargestSqnrDrop, {"largest_sqnr_drop": lowest}, "largest fall")


def test_largest_sqnr_drop_returning_the_tensor_before_the_fall_is_reported():
    def before(activation_errors, order):
        present = [name for name in order if name in activation_errors]
        return present[present.index(largest_sqnr_drop(activation_errors, order)) - 1]

    assert_check_failed(lab10.LargestSqnrDrop, {"largest_sqnr_drop": before}, "just before the fall")


def test_largest_sqnr_drop_using_qdq_err_is_reported():
    def by_qdq(activation_errors, order):
        renamed = {name: {"xmodel_err": values["qdq_err"]} for name, values in activation_errors.items()}
        return largest_sqnr_drop(renamed, order)

    assert_check_failed(lab10.LargestSqnrDrop, {"largest_sqnr_drop": by_qdq}, "('xmodel_err')")


def test_largest_sqnr_drop_not_skipping_absent_tensors_is_reported():
    def unskipped(activation_errors, order):
        drops = {later: activation_errors[earlier]["xmodel_err"] - activation_errors[later]["xmodel_err"]
                 for earlier, later in zip(order, order[1:])}
        return max(drops, key=drops.get)

    assert_check_failed(lab10.LargestSqnrDrop, {"largest_sqnr_drop": unskipped}, "raised KeyError")


def test_largest_sqnr_drop_placeholder_is_not_attempted():
    assert_check_unattempted(lab10.LargestSqnrDrop, {"largest_sqnr_drop": lambda activation_errors, order: ____})
