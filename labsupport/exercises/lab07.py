"""Lab 07 — validation and parity: a reusable harness, tolerances, fp16, bad input.

The exercises compute a relative difference, choose tolerances that pass float32 noise but
catch a real conversion bug (an approximate GELU), vary a sequence length, measure what a
float16 copy loses, repair feeds from the harness's messages and validate a TensorFlow
conversion. The reference helpers below (:func:`save_gelu_mlp`, :func:`gelu_reference`,
:func:`reference_mlp_path`) are what the notebook and the checks share.
"""

from __future__ import annotations

import functools
import math
import numbers
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from labsupport.checking import FunctionProblem, Incorrect, Problem, ThoughtExperiment, assert_equal, make_binder
from labsupport.onnx_tools import cpu_session

LAB = "07_validation_and_parity"

SEQUENCE_SAMPLE_LENGTH = 12  # labsupport.models.torch_models.exported_sequence_model's sample tokens
KERAS_BATCH_SIZES = (1, 7, 128)


# ---------------------------------------------------------------------------
# Reference helpers shared by the notebook and the checks
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _scratch() -> Path:
    """A private folder for the files the checks write (never the learner's artifacts)."""
    return Path(tempfile.mkdtemp(prefix="lab07-"))


def gelu_mlp_weights(seed: int = 7) -> dict[str, np.ndarray]:
    """Seeded float32 weights of a 16 → 32 → 4 MLP with a GELU in the middle."""
    rng = np.random.default_rng(seed)
    return {"W1": (rng.standard_normal((16, 32)) / 2).astype(np.float32),
            "b1": (rng.standard_normal(32) / 4).astype(np.float32),
            "W2": (rng.standard_normal((32, 4)) / 3).astype(np.float32),
            "b2": np.zeros(4, np.float32)}


def gelu_sample_feeds(rows: int = 64, seed: int = 8) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((rows, 16)).astype(np.float32)}


def save_gelu_mlp(path: str | Path, *, approximate: bool = False) -> Path:
    """Save ``y = Gelu(x W1 + b1) W2 + b2`` (x: [batch, 16]) to ``path``.

    ``approximate=True`` writes ``Gelu(approximate="tanh")``, the tanh formula some
    frameworks use by default: a real conversion bug when the source model used the exact
    (erf) GELU, and one that every float32 run reproduces faithfully.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    attributes = {"approximate": "tanh"} if approximate else {}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W1", "b1"], ["hidden"]),
         helper.make_node("Gelu", ["hidden"], ["activated"], **attributes),
         helper.make_node("Gemm", ["activated", "W2", "b2"], ["y"])],
        "gelu_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(value, name) for name, value in gelu_mlp_weights().items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def gelu_reference(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """What the source model computes, in float64 NumPy with the exact GELU x·Φ(x)."""
    weights = gelu_mlp_weights()
    erf = np.vectorize(math.erf)
    hidden = feeds["x"].astype(np.float64) @ weights["W1"] + weights["b1"]
    activated = 0.5 * hidden * (1.0 + erf(hidden / math.sqrt(2.0)))
    return [activated @ weights["W2"] + weights["b2"]]


@functools.lru_cache(maxsize=1)
def _gelu_paths() -> tuple[Path, Path]:
    return save_gelu_mlp(_scratch() / "gelu_exact.onnx"), save_gelu_mlp(_scratch() / "gelu_tanh.onnx", approximate=True)


@functools.lru_cache(maxsize=1)
def reference_mlp_path() -> Path:
    """The trained digits MLP of lab 01 as an ONNX file, written from its weights with onnx.helper.

    The graph is what the exporter makes (Gemm with transB=1, Relu, Gemm) without paying for
    a torch.export trace: the checks only need its numbers.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from labsupport.models import train_digits_mlp

    first, _, second = train_digits_mlp()
    weights = {"W1": first.weight, "b1": first.bias, "W2": second.weight, "b2": second.bias}
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["pixels", "W1", "b1"], ["hidden"], transB=1),
         helper.make_node("Relu", ["hidden"], ["activated"]),
         helper.make_node("Gemm", ["activated", "W2", "b2"], ["logits"], transB=1)],
        "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(value.detach().numpy(), name) for name, value in weights.items()])
    path = _scratch() / "digits_mlp.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    return path


@functools.lru_cache(maxsize=1)
def reference_fp16_figures() -> tuple[float, float]:
    """(max |float16 − float32| over the test logits, smallest top-2 gap of the float32 logits)."""
    from labsupport.models import load_digits_split
    from labsupport.validate import convert_to_float16

    pixels = load_digits_split().x_test
    path = reference_mlp_path()
    full = cpu_session(path).run(None, {"pixels": pixels})[0]
    half = cpu_session(convert_to_float16(path)).run(None, {"pixels": pixels})[0]
    top_two = np.sort(full, axis=1)[:, -2:]
    return float(np.abs(half.astype(np.float64) - full).max()), float((top_two[:, 1] - top_two[:, 0]).min())


def _reference_relative_difference(actual, expected, floor):
    from labsupport.validate import max_relative_difference

    return max_relative_difference(actual, expected, floor)


def _as_result(name: str, value: Any):
    from labsupport.validate import ValidationResult

    if not isinstance(value, ValidationResult):
        raise Incorrect(f"`{name}` should be the ValidationResult that `validate_model(...)` returns, "
                        f"but it is a {type(value).__name__}.")
    return value


def _require_passed_rows(name: str, result: Any, checks: list[str]) -> None:
    for check in checks:
        row = result.row(check)
        if row is None:
            raise Incorrect(f"`{name}` has no '{check}' row: pass the sizes this exercise asks for.")
        if "vs the reference" not in row.detail:
            raise Incorrect(f"`{name}`'s '{check}' row was not compared with the framework's outputs; "
                            "validate the ExportedModel itself, so its reference is used.")
        if row.status != "ok":
            raise Incorrect(f"`{name}`'s '{check}' row is {row.status}: {row.detail}")


# ---------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------

class MaxRelativeDifference(FunctionProblem):
    prompt = "compute the largest relative difference, ignoring reference values at or below a floor"
    vars = ("max_relative_difference",)
    hints = ("Elementwise: |actual − expected| / |expected|. Which of the two is the yardstick, and can it be "
             "negative?",
             "Keep only the elements where |expected| > floor (a boolean mask), and return 0.0 when none are left.")
    solution = """def max_relative_difference(actual, expected, floor):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    kept = np.abs(expected) > floor
    if not kept.any():
        return 0.0
    return float(np.max(np.abs(actual - expected)[kept] / np.abs(expected)[kept]))"""
    rtol = 1e-9

    def cases(self):
        raw = [
            (np.array([1.1, 2.0, 3.6]), np.array([1.0, 2.0, 3.0]), 0.0),
            (np.array([-2.2, 4.0]), np.array([-2.0, 4.0]), 0.0),
            (np.array([0.5, 1.0]), np.array([0.0, 0.8]), 0.0),
            (np.array([2.0]), np.array([1.0]), 0.0),
            (np.array([1.0, 100.0]), np.array([2.0, 100.0]), 0.0),
            (np.array([1e-3, 10.5]), np.array([1e-6, 10.0]), 1e-5),
            (np.array([[0.3, 5.0], [1.0, -3.0]]), np.array([[0.25, 5.0], [1.0, -3.3]]), 0.1),
            (np.array([0.3]), np.array([0.0]), 0.0),
        ]
        return [((actual, expected, floor), _reference_relative_difference(actual, expected, floor))
                for actual, expected, floor in raw]

    def describe_call(self, args):
        expected, floor = np.asarray(args[1]), args[2]
        values = " × ".join(str(size) for size in expected.shape)
        return f"`{self.vars[0]}` on {values} values (expected {_span(expected)}, floor {floor:g})"


def _span(values: np.ndarray) -> str:
    """A short description of an array's values: the one value, or its smallest and largest."""
    low, high = float(values.min()), float(values.max())
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


class CatchTheGeluBug(Problem):
    prompt = "choose atol and rtol that pass the correct export but fail the one with the approximate GELU"
    vars = ("atol", "rtol")
    hints = ("The correct export's max abs and max rel differences above are float32 noise: your tolerance must sit "
             "above them, but not by orders of magnitude.",
             "About ten times the noise works: an atol a little above the max abs difference and an rtol a little "
             "above "
             "the max rel difference (atol also covers outputs near zero, where relative differences blow up).")
    solution = "atol = 1e-5\nrtol = 1e-5"

    def check(self, atol, rtol):
        from labsupport.validate import validate_model

        for name, value in (("atol", atol), ("rtol", rtol)):
            if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating)):
                raise Incorrect(f"`{name}` should be a number such as 1e-5, but it is a {type(value).__name__}.")
            if not math.isfinite(value) or value < 0:
                raise Incorrect(f"`{name}` = {value!r}: a tolerance is a finite number ≥ 0.")
        exact_path, tanh_path = _gelu_paths()
        options = {"default_tolerance": (float(atol), float(rtol)), "fp16": False}
        correct = validate_model(exact_path, gelu_sample_feeds(), gelu_reference, **options)
        if not correct.ok:
            raise Incorrect(f"With atol={atol:g}, rtol={rtol:g} the correct export fails "
                            f"({', '.join(correct.failed_checks)}): "
                            "that tolerance is tighter than float32 rounding; loosen it.")
        buggy = validate_model(tanh_path, gelu_sample_feeds(), gelu_reference, **options)
        if buggy.ok:
            raise Incorrect(f"With atol={atol:g}, rtol={rtol:g} the export with the tanh-approximated GELU passes too: "
                            "that tolerance is too loose to see a systematic error; tighten it.")


class SequenceLengths(Problem):
    prompt = "validate the token classifier at a sequence length shorter and one longer than its samples (12)"
    vars = ("sequence_result",)
    hints = ("`validate_model` takes `dim_sizes`: a dict from a dimension's symbol, spelled as the graph spells it "
             "(`describe_model` above shows it), to the sizes to try.",
             "Pick one length below the samples' 12 tokens and one above; longer sequences repeat the sample tokens.")
    solution = 'sequence_result = validate_model(token_model, dim_sizes={"sequence": (5, 20)})'

    def check(self, sequence_result):
        result = _as_result("sequence_result", sequence_result)
        lengths = sorted(int(row.check.split()[1]) for row in result.rows if row.check.startswith("sequence "))
        if not lengths:
            raise Incorrect("`sequence_result` has no 'sequence N' rows: pass `dim_sizes={'sequence': (...)}`.")
        if min(lengths) >= SEQUENCE_SAMPLE_LENGTH:
            raise Incorrect(f"`sequence_result` tries lengths {lengths}; include one shorter than the samples' "
                            f"{SEQUENCE_SAMPLE_LENGTH} tokens.")
        if max(lengths) <= SEQUENCE_SAMPLE_LENGTH:
            raise Incorrect(f"`sequence_result` tries lengths {lengths}; include one longer than the samples' "
                            f"{SEQUENCE_SAMPLE_LENGTH} tokens.")
        _require_passed_rows("sequence_result", result, [f"sequence {length}" for length in lengths])


class Float16Loss(Problem):
    prompt = "measure the float16 copy's worst logit error on the test set and the smallest top-2 logit gap"
    vars = ("fp16_max_abs_diff", "smallest_margin")
    hints = ("Run the float32 file and the `convert_to_float16` copy on all of `data.x_test`; take max |half − full|.",
             "The margin of one image is its largest logit minus its second largest (of the float32 model): "
             "`np.sort(logits, axis=1)`, then the last column minus the one before; take the minimum over images.")
    solution = """full_logits = session.run(None, {"pixels": data.x_test})[0]
half_logits = half_session.run(None, {"pixels": data.x_test})[0]
fp16_max_abs_diff = float(np.abs(half_logits - full_logits).max())
top_two = np.sort(full_logits, axis=1)[:, -2:]
smallest_margin = float((top_two[:, 1] - top_two[:, 0]).min())"""

    def check(self, fp16_max_abs_diff, smallest_margin):
        worst, margin = reference_fp16_figures()
        if isinstance(fp16_max_abs_diff, (numbers.Real, np.floating)) and fp16_max_abs_diff < 0:
            raise Incorrect("`fp16_max_abs_diff` is negative: take the absolute value of the differences before "
                            "the max.")
        assert_equal("fp16_max_abs_diff", fp16_max_abs_diff, worst, rtol=1e-2)
        assert_equal("smallest_margin", smallest_margin, margin, rtol=1e-3)


class FixTheFeeds(Problem):
    prompt = "repair `broken_feeds` until the harness accepts them, without changing the pixel values"
    vars = ("fixed_feeds",)
    hints = ("Run the harness on your feeds and read its one-line message: it names the input, the dtype or the "
             "shape it expected; fix one thing at a time.",
             "The model wants one float32 input named `pixels` of shape (N, 64): fix the key, the dtype and the "
             "shape with NumPy's conversion and reshaping methods, and leave the values alone.")
    solution = 'fixed_feeds = {"pixels": broken_feeds["pixel"].reshape(-1, 64).astype(np.float32)}'

    def check(self, fixed_feeds):
        from labsupport.models import load_digits_split
        from labsupport.validate import TensorSignature, ValidationInputError, check_feeds

        expected_input = TensorSignature("pixels", 1, ("batch", 64))  # 1 = onnx.TensorProto.FLOAT
        try:
            check_feeds("digits_mlp.onnx", [expected_input], fixed_feeds)
        except ValidationInputError as error:
            raise Incorrect(f"The harness still rejects `fixed_feeds`: {error}") from None
        pixels = load_digits_split().x_test
        if fixed_feeds["pixels"].shape != pixels.shape:
            raise Incorrect(f"`fixed_feeds['pixels']` has shape {fixed_feeds['pixels'].shape}; keep every test image "
                            f"({pixels.shape[0]} rows).")
        if not np.array_equal(fixed_feeds["pixels"], pixels):
            raise Incorrect("`fixed_feeds['pixels']` has the right type and shape, but the pixel values changed: "
                            "convert and reshape only, do not rescale or reorder.")


class ValidateKerasConversion(Problem):
    prompt = "validate the Keras model's tf2onnx conversion against Keras at batch sizes 1, 7 and 128"
    vars = ("keras_result",)
    hints = ("Pass the ExportedModel itself, so its Keras reference and sample feeds are used.",
             "The sizes go in the `batch_sizes` keyword, as a tuple; 128 is more than the 64 sample rows, so the "
             "harness repeats them.")
    solution = "keras_result = validate_model(keras_model, batch_sizes=(1, 7, 128))"

    def check(self, keras_result):
        import onnx

        result = _as_result("keras_result", keras_result)
        if not Path(result.path).is_file():
            raise Incorrect(f"`keras_result` refers to {result.path}, which no longer exists: validate again.")
        producer = onnx.load(str(result.path), load_external_data=False).producer_name
        if producer != "tf2onnx":
            raise Incorrect(f"`keras_result` validates a model made by {producer or 'an unknown producer'}; "
                            "this exercise is about the Keras model converted by tf2onnx.")
        for check in ("checker", "load"):
            row = result.row(check)
            if row is None or row.status != "ok":
                raise Incorrect(f"`keras_result`'s {check} row did not pass.")
        _require_passed_rows("keras_result", result, [f"batch {size}" for size in KERAS_BATCH_SIZES])
        if not result.ok:
            raise Incorrect(f"`keras_result`'s verdict is {result.verdict}.")


class BatchOneOnly(ThoughtExperiment):
    prompt = "an export matches at batch 1 but not at batch 16: name two causes and how to tell them apart"
    solution = (
        "1. Something in the graph depends on the batch: a BatchNormalization or Dropout exported in training mode "
        "(batch statistics), a Reshape or Expand whose target shape was traced as a constant, a reduction over axis 0. "
        "Validating without a reference shows it: the model disagrees with itself when the same rows are run in "
        "batches of different sizes. 2. The batch axis was exported as fixed, or a later op silently broadcasts: the "
        "graph's input shape says so (`describe_model`), and ONNX Runtime refuses other sizes or gives outputs of the "
        "wrong shape. If the model agrees with itself at every batch but not with the framework, look instead at the "
        "reference: was the framework model in eval mode, with the same preprocessing?")


class LooseTolerance(ThoughtExperiment):
    prompt = ("why is `atol=1e-2, rtol=0` for every output a poor choice? Think of logits near 20 and probabilities "
              "near 1e-4")
    solution = (
        "A single absolute tolerance ignores scale. For logits around 20, float32 noise is about 20 × 1e-7 × (number "
        "of accumulated terms), far below 1e-2, so an error of 0.5 % of the value (0.1) is still caught, but a "
        "systematic error of 0.009 passes. For probabilities around 1e-4, 1e-2 is a hundred times the value itself: "
        "a probability that is wrong by a factor of 50 passes. Use rtol for the part of the error that scales with "
        "the value (a few hundred float32 epsilons, ~1e-5 to 1e-4) and a small atol only for values near zero, and "
        "set them per output, because outputs of different scales need different tolerances.")


class ShipFloat16(ThoughtExperiment):
    prompt = ("the float16 copy's logits differ by up to 0.004 and no test label changes: ship it? What else would "
              "you check?")
    solution = (
        "For classification, a label can only change if the error exceeds half the gap between the two largest "
        "logits; with a smallest gap of about 0.4 on the test set and errors of 0.004 there is a factor of 50 to "
        "spare, so labels are safe on data like this. Before shipping, check data unlike the test set (out-of-range "
        "inputs that could overflow float16's 65,504 maximum, or tiny values that underflow), any consumer of the raw "
        "scores (calibrated probabilities, thresholds, rankings), and measure on the target hardware: ONNX Runtime's "
        "CPU provider upcasts float16 operators without a float16 kernel, while a GPU computes in float16 and can "
        "differ more. If none of that matters, the halved file size and faster GPU inference are worth it.")


PROBLEMS = {
    "q1": MaxRelativeDifference,
    "q2": CatchTheGeluBug,
    "q3": SequenceLengths,
    "q4": Float16Loss,
    "q5": FixTheFeeds,
    "q6": ValidateKerasConversion,
    "q7": BatchOneOnly,
    "q8": LooseTolerance,
    "q9": ShipFloat16,
}
bind = make_binder(LAB, PROBLEMS)
