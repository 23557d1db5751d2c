"""Lab 10 — quantization: scale and zero point, calibration, size and accuracy, profiles, SQNR.

The exercises implement the affine quantize/dequantize pair, compute a scale and zero point
for a range (checked against ONNX Runtime's own ``compute_scale_zp``), write a calibration
data reader, compute the int8 model's size ratio and accuracy loss from its files, and find
the tensor where a quantized model's SQNR against the float model falls.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from labsupport.checking import (
    FunctionProblem,
    Incorrect,
    Problem,
    ThoughtExperiment,
    assert_equal,
    call_learner,
    make_binder,
)

LAB = "10_quantization"


# ---------------------------------------------------------------------------
# Exercise 1 — quantize and dequantize
# ---------------------------------------------------------------------------

def _reference_quantize(x, scale, zero_point, qmin, qmax):
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point, qmin, qmax)


def _reference_dequantize(q, scale, zero_point):
    return scale * (np.asarray(q, dtype=np.float64) - zero_point)


# (x, scale, zero_point, qmin, qmax): asymmetric uint8 (with values beyond the range), symmetric
# int8, and exact ties, which ONNX's QuantizeLinear rounds to the nearest even integer.
_QUANTIZE_CASES = [
    (np.array([-1.0, -0.3, 0.0, 0.37, 1.2, 2.5, 3.1, -1.4], np.float32), 3.5 / 255, 73, 0, 255),
    (np.array([-0.8, -0.05, 0.0, 0.33, 0.8, 1.1], np.float32), 0.8 / 127, 0, -127, 127),
    (np.array([0.25, 0.75, -0.25, 1.25, 2.0], np.float32), 0.5, 0, -128, 127),
    (np.array([[0.0, 0.5], [3.1, 6.0]], np.float32), 6.0 / 255, 0, 0, 255),
]
# (q, scale, zero_point): uint8 codes below and above the zero point, int8 codes.
_DEQUANTIZE_CASES = [
    (np.array([0, 30, 73, 200, 255], np.uint8), 3.5 / 255, 73),
    (np.array([-127, -3, 0, 64, 127], np.int8), 0.8 / 127, 0),
    (np.array([[0, 128], [255, 17]], np.uint8), 0.02, 128),
]


def _describe_array(values: np.ndarray) -> str:
    values = np.asarray(values)
    return f"{values.size} {values.dtype} values"


class QuantizeDequantize(Problem):
    prompt = "write quantize(x, scale, zero_point, qmin, qmax) and dequantize(q, scale, zero_point)"
    vars = ("quantize", "dequantize")
    hints = ("quantize: divide by the scale, round, shift by the zero point, then keep the result between qmin "
             "and qmax. dequantize undoes the shift and the division (rounding cannot be undone).",
             "Round with NumPy's rounding function, which sends exact halves to the even neighbour as ONNX's "
             "QuantizeLinear does; in dequantize, convert the codes to float before subtracting: uint8 arithmetic "
             "wraps around below 0.")
    solution = """def quantize(x, scale, zero_point, qmin, qmax):
    return np.clip(np.round(np.asarray(x) / scale) + zero_point, qmin, qmax)


def dequantize(q, scale, zero_point):
    return scale * (np.asarray(q, dtype=np.float32) - zero_point)"""

    def check(self, quantize, dequantize):
        for name, function in (("quantize", quantize), ("dequantize", dequantize)):
            if not callable(function):
                raise Incorrect(f"`{name}` should be a function, but it is a {type(function).__name__}.")
        for x, scale, zero_point, qmin, qmax in _QUANTIZE_CASES:
            call = (f"`quantize` on {_describe_array(x)} with scale {scale:.4g}, zero point {zero_point}, "
                    f"[{qmin}, {qmax}]")
            actual = call_learner(quantize, (x, scale, zero_point, qmin, qmax), name="quantize", call=call)
            self._check_codes(call, actual, x, scale, zero_point, qmin, qmax)
        for q, scale, zero_point in _DEQUANTIZE_CASES:
            call = f"`dequantize` on {_describe_array(q)} with scale {scale:.4g}, zero point {zero_point}"
            actual = call_learner(dequantize, (q, scale, zero_point), name="dequantize", call=call)
            expected = _reference_dequantize(q, scale, zero_point)
            if np.shape(actual) != expected.shape:
                raise Incorrect(f"{call} returned shape {np.shape(actual)}; expected {expected.shape}.")
            wrapped = scale * (q - np.asarray(zero_point).astype(q.dtype)).astype(np.float64)
            if not np.allclose(actual, expected, rtol=1e-5, atol=1e-7):
                if np.allclose(actual, wrapped, rtol=1e-5, atol=1e-7):
                    raise Incorrect(f"{call} wrapped around: subtracting the zero point from {q.dtype} codes "
                                    "overflows. Convert the codes to float first.")
                raise Incorrect(f"{call} gives values that differ from scale · (q − zero_point).")

    @staticmethod
    def _check_codes(call, actual, x, scale, zero_point, qmin, qmax):
        expected = _reference_quantize(x, scale, zero_point, qmin, qmax)
        actual_array = np.asarray(actual)
        if actual_array.shape != expected.shape:
            raise Incorrect(f"{call} returned shape {actual_array.shape}; expected {expected.shape}.")
        if actual_array.dtype.kind not in "iuf" or not np.all(np.isfinite(actual_array)):
            raise Incorrect(f"{call} should return numbers, but it returned {actual_array.dtype} values.")
        if not np.array_equal(actual_array, np.round(actual_array)):
            raise Incorrect(f"{call} returned values with fractions: quantized codes are whole numbers; round them.")
        if np.array_equal(actual_array, expected):
            return
        if actual_array.min() < qmin or actual_array.max() > qmax:
            raise Incorrect(f"{call} returned codes outside [{qmin}, {qmax}]: clip values beyond the range.")
        unclipped = np.round(np.asarray(x, dtype=np.float64) / scale) + zero_point
        ties = np.isclose(np.abs(np.asarray(x, dtype=np.float64) / scale) % 1, 0.5)
        if np.array_equal(actual_array[~ties], expected[~ties]):
            raise Incorrect(f"{call} rounds exact halves away from zero; ONNX's QuantizeLinear rounds them to the "
                            "even neighbour (2.5 → 2), like `np.round`.")
        if np.array_equal(actual_array, np.clip(np.floor(np.asarray(x, dtype=np.float64) / scale) + zero_point,
                                                 qmin, qmax)):
            raise Incorrect(f"{call} truncates instead of rounding to the nearest code.")
        if np.array_equal(actual_array, np.clip(unclipped - 2 * zero_point, qmin, qmax)):
            raise Incorrect(f"{call} subtracts the zero point; quantizing adds it (dequantizing subtracts it).")
        wrong = int(np.sum(actual_array != expected))
        raise Incorrect(f"{call}: {wrong} of the {expected.size} codes are wrong.")


# ---------------------------------------------------------------------------
# Exercise 2 — scale and zero point for a range
# ---------------------------------------------------------------------------

def reference_scale_zero_point(rmin: float, rmax: float, qmin: int, qmax: int,
                               symmetric: bool = False) -> tuple[float, int]:
    """ONNX Runtime's own answer (``quant_utils.compute_scale_zp``), as (scale, zero_point)."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    zero_point, scale = compute_scale_zp(np.array(rmin, np.float32), np.array(rmax, np.float32),
                                         np.array(qmin, np.int32), np.array(qmax, np.int32), symmetric=symmetric)
    return float(scale), int(zero_point)


class ScaleZeroPoint(FunctionProblem):
    prompt = "write scale_zero_point(rmin, rmax, qmin, qmax, symmetric=False) returning (scale, zero_point)"
    vars = ("scale_zero_point",)
    hints = ("First widen [rmin, rmax] so that it contains 0 (zero must be exact: padding and ReLU outputs are "
             "full of zeros). The scale spreads the float range over the qmax − qmin steps.",
             "Asymmetric: choose the zero point so that rmin maps exactly onto qmin (and round it, since it is a "
             "code). Symmetric: first make the range symmetric around 0 using the larger magnitude; the zero point "
             "is then the code in the middle of [qmin, qmax].")
    solution = """def scale_zero_point(rmin, rmax, qmin, qmax, symmetric=False):
    rmin, rmax = min(rmin, 0.0), max(rmax, 0.0)
    if symmetric:
        rmax = max(abs(rmin), abs(rmax))
        rmin = -rmax
    scale = (rmax - rmin) / (qmax - qmin)
    if symmetric:
        return scale, int(round((qmin + qmax) / 2))
    return scale, int(round(qmin - rmin / scale))"""
    rtol = 1e-5
    arguments = [(-1.0, 2.5, 0, 255, False), (0.2, 6.0, 0, 255, False), (-3.0, -0.5, 0, 255, False),
                 (-4.0, 1.0, -128, 127, False), (-0.8, 1.6, -127, 127, True), (0.0, 6.0, -127, 127, True)]

    def cases(self):
        return [((rmin, rmax, qmin, qmax, symmetric), reference_scale_zero_point(rmin, rmax, qmin, qmax, symmetric))
                for rmin, rmax, qmin, qmax, symmetric in self.arguments]

    def check(self, scale_zero_point):
        self.require_function(scale_zero_point)
        for args, (scale, zero_point) in self.cases():
            call = self.describe_call(args)
            actual = self.call_answer(scale_zero_point, args)
            if not isinstance(actual, (tuple, list)) or len(actual) != 2:
                raise Incorrect(f"{call} should return a pair (scale, zero_point), but it returned a "
                                f"{type(actual).__name__}.")
            if np.isclose(_as_float(actual[1]), scale, rtol=self.rtol) and _as_float(actual[0]) == zero_point:
                raise Incorrect(f"{call} returned (zero_point, scale), the order of ONNX Runtime's compute_scale_zp; "
                                "return (scale, zero_point).")
            rmin, rmax, qmin, qmax, _ = args
            narrow_scale = (rmax - rmin) / (qmax - qmin)
            if (rmin > 0 or rmax < 0) and isinstance(actual[0], numbers.Real) and np.isclose(actual[0], narrow_scale):
                raise Incorrect(f"{call} spreads only [{rmin}, {rmax}] over the codes; widen the range to include 0 "
                                "first.")
            assert_equal(f"the scale from {call}", actual[0], scale, rtol=self.rtol)
            assert_equal(f"the zero point from {call}", actual[1], zero_point)


def _as_float(value) -> float:
    """``value`` as a float, or NaN when it is not a number (so comparisons with it are False)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        return float("nan")
    return float(value)


# ---------------------------------------------------------------------------
# Exercise 3 — a calibration data reader
# ---------------------------------------------------------------------------

_READER_CALLS_LIMIT = 1000


class CalibrationReader(Problem):
    prompt = "write DigitsReader(images, batch_size): a CalibrationDataReader feeding {'pixels': batch} until done"
    vars = ("DigitsReader",)
    hints = ("ONNX Runtime calls `get_next()` again and again; each call returns one batch as a dict from the model "
             "input's name to a float32 array, and `None` once every image has been given.",
             "In `__init__`, cut the images into consecutive slices of `batch_size` rows (the last one may be "
             "shorter) and keep an iterator over them; `get_next` asks the iterator for the next slice with a "
             "default of None.")
    solution = """class DigitsReader(CalibrationDataReader):
    def __init__(self, images, batch_size):
        self.batches = iter([images[start:start + batch_size] for start in range(0, len(images), batch_size)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"pixels": batch.astype(np.float32)}"""

    def check(self, DigitsReader):  # noqa: N803 — the learner's class name
        if not isinstance(DigitsReader, type):
            raise Incorrect(f"`DigitsReader` should be a class, but it is a {type(DigitsReader).__name__}.")
        if not callable(getattr(DigitsReader, "get_next", None)):
            raise Incorrect("`DigitsReader` has no `get_next` method: that is what ONNX Runtime calls.")
        images = np.random.default_rng(10).random((70, 64), dtype=np.float32)
        for batch_size in (32, 16, 100):
            self._check_batches(DigitsReader, images, batch_size)

    @staticmethod
    def _check_batches(reader_class, images, batch_size):
        call = f"`DigitsReader(images, {batch_size})` on {len(images)} images"
        try:
            reader = reader_class(images.copy(), batch_size)
        except Exception as error:  # the learner's constructor failed: report it
            raise Incorrect(f"{call} raised {type(error).__name__}: {error}.") from None
        given = []
        for _ in range(_READER_CALLS_LIMIT):
            batch = _next_batch(reader, call)
            if batch is None or (isinstance(batch, Mapping) and not batch):
                break
            given.append(batch)
        else:
            raise Incorrect(f"{call}: `get_next()` never returned None, so calibration would never stop.")
        if _next_batch(reader, call) is not None:
            raise Incorrect(f"{call}: after returning None once, `get_next()` started again; it must keep "
                            "returning None.")
        expected_sizes = [len(images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
        for number, batch in enumerate(given, start=1):
            if not isinstance(batch, Mapping):
                raise Incorrect(f"{call}: batch {number} is a {type(batch).__name__}; return a dict from the input's "
                                "name to the array.")
            if set(batch) != {"pixels"}:
                raise Incorrect(f"{call}: batch {number} has the keys {sorted(batch)}; the model's input is named "
                                "'pixels'.")
            array = batch["pixels"]
            if not isinstance(array, np.ndarray) or array.dtype != np.float32:
                kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
                raise Incorrect(f"{call}: batch {number} holds {kind}; the model reads float32 arrays.")
        sizes = [len(batch["pixels"]) for batch in given]
        if sizes != expected_sizes:
            raise Incorrect(f"{call} gave {len(sizes)} batches of {sizes} rows; expected {len(expected_sizes)} "
                            f"batches of at most {batch_size} rows.")
        if not np.array_equal(np.concatenate([batch["pixels"] for batch in given]), images):
            raise Incorrect(f"{call}: the batches do not hold the images in order, each exactly once.")


def _next_batch(reader, call):
    from labsupport.checking import NotAttempted, contains_placeholder

    try:
        batch = reader.get_next()
    except StopIteration:
        raise Incorrect(f"{call}: `get_next()` raised StopIteration when the images ran out; return None "
                        "instead (give `next` a default).") from None
    except Exception as error:  # the learner's get_next failed: report it
        raise Incorrect(f"{call}: `get_next()` raised {type(error).__name__}: {error}.") from None
    if contains_placeholder(batch):
        raise NotAttempted("`DigitsReader.get_next` still returns the placeholder `____`.")
    return batch


# ---------------------------------------------------------------------------
# Exercise 4 — size ratio and accuracy loss
# ---------------------------------------------------------------------------

FP32_FILE = "wide_mlp_fp32.onnx"
STATIC_FILE = "wide_mlp_int8_static.onnx"


def lab_artifact(name: str) -> Path:
    """Where the notebook writes ``name``: ``artifacts/10/`` beside it (the folder ``artifacts_dir("10")`` makes)."""
    return Path("artifacts") / "10" / name


def reference_size_and_loss(fp32_path: str | Path, int8_path: str | Path) -> tuple[float, float]:
    """(int8 size / fp32 size, fp32 accuracy − int8 accuracy in points) on the digits test split."""
    from labsupport.models import load_digits_split
    from labsupport.quantize import accuracy

    data = load_digits_split()
    ratio = Path(int8_path).stat().st_size / Path(fp32_path).stat().st_size
    loss = 100 * (accuracy(fp32_path, data.x_test, data.y_test) - accuracy(int8_path, data.x_test, data.y_test))
    return ratio, loss


class SizeAndAccuracy(Problem):
    prompt = "compute size_ratio (static int8 file / float32 file) and accuracy_loss_points on the test digits"
    vars = ("size_ratio", "accuracy_loss_points")
    hints = ("The size is the file's length in bytes on disk (`Path.stat()` knows it). The accuracy is measured on "
             "`data.x_test` / `data.y_test` with each file's own session (`accuracy` from labsupport.quantize).",
             "The ratio is the int8 file's size over the float32 file's; the loss is the float32 accuracy minus the "
             "int8 one, in percentage points (× 100), positive when int8 is worse.")
    solution = """size_ratio = static_path.stat().st_size / fp32_path.stat().st_size
accuracy_loss_points = 100 * (accuracy(fp32_path, data.x_test, data.y_test)
                              - accuracy(static_path, data.x_test, data.y_test))"""

    def check(self, size_ratio, accuracy_loss_points):
        fp32_path, static_path = lab_artifact(FP32_FILE), lab_artifact(STATIC_FILE)
        for path in (fp32_path, static_path):
            if not path.is_file():
                raise Incorrect(f"{path} is missing: run the cells above that write the float32 and static int8 "
                                "models, then this one.")
        ratio, loss = reference_size_and_loss(fp32_path, static_path)
        for name, value in (("size_ratio", size_ratio), ("accuracy_loss_points", accuracy_loss_points)):
            if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating)):
                raise Incorrect(f"`{name}` should be a number, but it is a {type(value).__name__}.")
        if np.isclose(float(size_ratio), 1 / ratio, rtol=1e-3):
            raise Incorrect("`size_ratio` is the float32 size over the int8 size; divide the other way round.")
        assert_equal("size_ratio", float(size_ratio), ratio, rtol=1e-3)
        if loss != 0 and np.isclose(float(accuracy_loss_points), loss / 100, rtol=0, atol=1e-9):
            raise Incorrect("`accuracy_loss_points` is a fraction; express it in percentage points (× 100).")
        if loss != 0 and np.isclose(float(accuracy_loss_points), -loss, rtol=0, atol=1e-6):
            raise Incorrect("`accuracy_loss_points` has the wrong sign: float32 accuracy minus int8 accuracy.")
        assert_equal("accuracy_loss_points", float(accuracy_loss_points), loss, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------
# Exercise 5 — where the SQNR falls
# ---------------------------------------------------------------------------

def _errors(values: Mapping[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    return {name: {"qdq_err": qdq, "xmodel_err": xmodel} for name, (qdq, xmodel) in values.items()}


_SQNR_CASES = [
    (_errors({"pixels": (56.5, 56.5), "relu": (42.2, 43.1), "relu_1": (5.2, 0.1), "logits": (4.6, 0.0)}),
     ["pixels", "linear", "relu", "linear_1", "relu_1", "logits"]),
    (_errors({"x": (50.0, 50.0), "a": (48.0, 20.0), "b": (20.0, 18.0), "c": (19.0, 2.0), "y": (18.0, 1.0)}),
     ["x", "a", "b", "c", "y"]),
    (_errors({"input": (48.0, 48.0), "conv": (9.0, 41.0), "pool": (40.0, 40.5), "fc": (38.0, 35.0),
              "out": (39.0, 30.0)}),
     ["input", "conv", "pool", "fc", "out"]),
    (_errors({"in": (60.0, 60.0), "h1": (20.0, 25.0), "h2": (30.0, 24.0), "out": (30.0, 23.5)}),
     ["in", "skip_me", "h1", "h2", "out"]),
]


def reference_largest_sqnr_drop(activation_errors: Mapping[str, Mapping[str, float]], order: list[str]) -> str:
    """The tensor of ``order`` whose SQNR against the float model falls most from the tensor before it."""
    present = [name for name in order if name in activation_errors]
    drops = {later: activation_errors[earlier]["xmodel_err"] - activation_errors[later]["xmodel_err"]
             for earlier, later in zip(present, present[1:])}
    return max(drops, key=drops.get)


class LargestSqnrDrop(FunctionProblem):
    prompt = "write largest_sqnr_drop(activation_errors, order): the tensor where the SQNR vs float falls the most"
    vars = ("largest_sqnr_drop",)
    hints = ("Compare each tensor with the one before it along `order`, using the SQNR against the float model "
             "('xmodel_err'); 'qdq_err' only measures the tensor's own Q/DQ pair. Skip names the dict does not have.",
             "Keep the names of `order` that are keys of `activation_errors`; for each neighbouring pair compute "
             "earlier SQNR − later SQNR and return the later name of the pair with the largest difference.")
    solution = """def largest_sqnr_drop(activation_errors, order):
    present = [name for name in order if name in activation_errors]
    drops = {}
    for earlier, later in zip(present, present[1:]):
        drops[later] = activation_errors[earlier]["xmodel_err"] - activation_errors[later]["xmodel_err"]
    return max(drops, key=drops.get)"""

    def cases(self):
        return [((errors, order), reference_largest_sqnr_drop(errors, order)) for errors, order in _SQNR_CASES]

    def describe_call(self, args):
        errors, order = args
        unmeasured = [name for name in order if name not in errors]
        note = f" ({', '.join(map(repr, unmeasured))} in `order` have no SQNR)" if unmeasured else ""
        return f"`largest_sqnr_drop` on {len(errors)} tensors with SQNRs, `order` = {list(order)}{note}"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            call = self.describe_call(args)
            actual = self.call_answer(fn, args)
            if actual == expected:
                continue
            errors, order = args
            lowest = min(errors, key=lambda name: errors[name]["xmodel_err"])
            if actual == lowest:
                raise Incorrect(f"{call} returned the tensor with the lowest SQNR; errors add up along the graph, "
                                "so look for the largest fall from one tensor to the next.")
            present = [name for name in order if name in errors]
            if actual in present and present.index(actual) + 1 < len(present) \
                    and present[present.index(actual) + 1] == expected:
                raise Incorrect(f"{call} returned the tensor just before the fall; return the one after it, where the "
                                "SQNR is already low.")
            raise Incorrect(f"{call} returned {actual!r}, which is not where the SQNR against the float model "
                            "('xmodel_err') falls the most.")


# ---------------------------------------------------------------------------
# Check yourself
# ---------------------------------------------------------------------------

class StaticOrDynamic(ThoughtExperiment):
    prompt = "when would you choose dynamic quantization, and when static QDQ? Give one model of each kind."
    solution = (
        "Dynamic quantization stores the weights in int8 and computes each activation's scale at run time from the "
        "batch itself (DynamicQuantizeLinear), so it needs no calibration data and cannot be fooled by a "
        "calibration set that misses a range; it pays for computing min/max and quantizing the input on every call, "
        "and only weight-heavy operators (MatMul, Gemm turned into MatMul, LSTM, Attention) are converted. It suits "
        "transformers and recurrent networks whose activation ranges vary a lot from input to input and whose time "
        "is spent in MatMuls. Static QDQ fixes every activation's scale ahead of time from calibration data, so "
        "the runtime can chain integer kernels (QGemm, QLinearConv) without measuring anything: it is the faster "
        "choice for CNNs and MLPs on CPUs, and the only one most NPUs, DSPs and TensorRT-style accelerators accept. "
        "Its risk is calibration: unrepresentative data or a single outlier sets a bad range.")


class SlowerInt8(ThoughtExperiment):
    prompt = "your int8 model is slower than the float32 one on a CPU: list causes and how you would confirm each"
    solution = (
        "Profile both (enable_profiling, sum kernel time by operator type) before guessing. Causes: (1) the model is "
        "tiny or the batch is 1, so fixed costs dominate: every QuantizeLinear/DequantizeLinear and every extra node "
        "costs a kernel launch, more than the integer GEMM saves; the profile shows Q/DQ time comparable to the "
        "compute. (2) Q/DQ pairs were not fused because an operator between them has no quantized kernel: the "
        "profile shows DequantizeLinear → float op → QuantizeLinear chains, and float kernels still doing the work. "
        "(3) Dynamic quantization measures and quantizes every activation on every call (DynamicQuantizeLinear or "
        "DynamicQuantizeMatMul). (4) The float32 path has better kernels on this machine (NCHWc convolutions, AVX-512 "
        "FMA) while the CPU lacks VNNI, so int8 dot products are emulated. (5) Graph optimizations were disabled, so "
        "nothing was fused. Confirm with the per-operator profile, the provider assignment and the optimized graph.")


class CollapseDiagnosis(ThoughtExperiment):
    prompt = "a static int8 model scores 10 % where float32 scored 97 %: how do you find and fix the cause?"
    solution = (
        "Collapse means a range is wrong, not that int8 is too coarse. First rule out the data: run the float model "
        "on the same inputs and preprocessing, and check the calibration set (normalised like inference data, "
        "representative, no corrupted values). Then localise: check weight SQNR (create_weight_matching, "
        "compute_weight_error) — a weight far below its peers wants per-channel quantization. Collect activations of "
        "the float and QDQ models (modify_model_output_intermediate_tensors, collect_activations, "
        "create_activation_matching, compute_activation_error) and walk the tensors in graph order: the node where "
        "the SQNR against the float model falls is where the damage enters; look at its inputs' ranges. A range "
        "hundreds of times wider than most values (an outlier calibration sample, a massive activation channel) "
        "rounds the normal values to zero. Fix the data, use Percentile or Entropy calibration, per-channel weights, "
        "16-bit for that tensor (TensorQuantOverrides), or leave the offending nodes in float — then re-measure.")


PROBLEMS = {
    "q1": QuantizeDequantize,
    "q2": ScaleZeroPoint,
    "q3": CalibrationReader,
    "q4": SizeAndAccuracy,
    "q5": LargestSqnrDrop,
    "q6": StaticOrDynamic,
    "q7": SlowerInt8,
    "q8": CollapseDiagnosis,
}
bind = make_binder(LAB, PROBLEMS)
