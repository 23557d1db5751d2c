"""Lab 15 — capstone: one pipeline, end to end, measured; the production-readiness gate.

The exercises choose the file to deploy from the comparison table by a stated rule, measure
what quantization changed beyond the accuracy (the predictions it flipped), compute how much
smaller the quantized file is than the float one, and read the resolution of the gate's
accuracy threshold on this test set. The helpers give the notebook the names of the files it
writes (the size check reads two of them) and a deliberately bad model for the gate.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from labsupport.checking import FunctionProblem, Incorrect, Problem, ThoughtExperiment, make_binder

LAB = "15_capstone"

FLOAT_FILE = "pytorch_fp32.onnx"
EXPORTED_FILE = "pytorch_exported.onnx"
STATIC_FILE = "pytorch_int8_static.onnx"


def lab_artifact(name: str) -> Path:
    """Where the notebook writes ``name``: ``artifacts/15/`` beside it (the folder ``artifacts_dir("15")`` makes)."""
    return Path("artifacts") / "15" / name


def fix_batch_size(model, batch: int = 1):
    """A copy of ``model`` whose inputs and outputs declare axis 0 as exactly ``batch`` (a static batch).

    The opposite of lab 12's repair: what an export without dynamic axes looks like. The graph
    still computes the same values for that batch size.
    """
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in [*fixed.graph.input, *fixed.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    return fixed


def glitched_calibration(images: np.ndarray, value: float = 255.0) -> np.ndarray:
    """A copy of calibration ``images`` with one pixel set to ``value``: lab 10's single bad sample.

    MinMax calibration stretches the input's range to reach it, so every ordinary pixel is
    quantized with a step hundreds of times too coarse.
    """
    glitched = np.array(images, dtype=np.float32, copy=True)
    glitched.reshape(len(glitched), -1)[len(glitched) // 2, 27] = value
    return glitched


# ---------------------------------------------------------------------------
# Exercise 1 — choose the file to deploy by a stated rule
# ---------------------------------------------------------------------------

def reference_choose_variant(records: Sequence[Mapping], max_loss_points: float) -> str:
    """The smallest file among the rows within ``max_loss_points`` of the most accurate; a tie goes to the faster."""
    best = max(record["accuracy_pct"] for record in records)
    allowed = [record for record in records if best - record["accuracy_pct"] <= max_loss_points]
    return min(allowed, key=lambda record: (record["size_kb"], record["p50_ms_batch1"]))["name"]


def _row(name: str, size_kb: float, accuracy_pct: float, p50_ms_batch1: float,
         p50_ms_batch64: float | None = None) -> dict:
    return {"name": name, "size_kb": size_kb, "accuracy_pct": accuracy_pct, "p50_ms_batch1": p50_ms_batch1,
            "p50_ms_batch64": 30 * p50_ms_batch1 if p50_ms_batch64 is None else p50_ms_batch64}


# The check's own tables: made-up rows whose names are not the lab's, so a message about one never contradicts the
# learner's table. One has a size tie that batch 1 and batch 64 would break in opposite ways.
_VARIANT_TABLES = [
    ([_row("cnn float", 17.2, 97.56, 0.031), _row("cnn fused", 17.0, 97.56, 0.029),
      _row("cnn int8 per call", 7.2, 97.56, 0.047), _row("cnn int8 calibrated", 6.9, 97.33, 0.041),
      _row("wide cnn float", 18.3, 97.78, 0.052), _row("linear baseline", 4.4, 95.78, 0.012)], 1.0),
    ([_row("fp32", 40.0, 96.0, 0.05), _row("fp16", 21.0, 96.0, 0.08), _row("int8", 11.0, 96.2, 0.06),
      _row("distilled", 9.0, 97.1, 0.03), _row("pruned", 7.0, 95.5, 0.03)], 1.0),
    ([_row("a", 30.0, 98.0, 0.04), _row("b", 12.0, 97.0, 0.05), _row("c", 11.5, 96.9, 0.05),
      _row("d", 20.0, 97.5, 0.04)], 1.0),
    ([_row("fp32", 17.2, 97.5, 0.030), _row("int8 per tensor", 6.9, 97.0, 0.045),
      _row("int8 per channel", 6.9, 97.25, 0.041), _row("int4", 4.1, 90.0, 0.09)], 1.0),
    ([_row("fp32", 17.2, 97.5, 0.030), _row("int8", 6.9, 97.0, 0.045), _row("fp16", 9.5, 97.5, 0.06)], 0.0),
    ([_row("fp32", 17.2, 97.5, 0.030), _row("int8", 6.9, 95.5, 0.045), _row("fp16", 9.5, 97.4, 0.06),
      _row("int4", 4.1, 94.0, 0.09)], 2.5),
    ([_row("fp32", 17.2, 97.5, 0.030, 0.9), _row("int8 A", 6.9, 97.1, 0.041, 0.6),
      _row("int8 B", 6.9, 97.2, 0.045, 0.5), _row("int4", 4.1, 93.0, 0.09, 2.0)], 1.0),
]


def _points(value: float) -> str:
    return f"{value:g} point" if value == 1 else f"{value:g} points"


def _describe_table(records: Sequence[Mapping]) -> str:
    rows = "; ".join(f"{record['name']!r}: {record['size_kb']:g} KB, {record['accuracy_pct']:g} %, "
                     f"{record['p50_ms_batch1']:g} ms @ 1, {record['p50_ms_batch64']:g} ms @ 64" for record in records)
    return f"[{rows}]"


class ChooseVariant(FunctionProblem):
    prompt = "return the name of the smallest file within max_loss_points of the most accurate row (ties: faster)"
    vars = ("choose_variant",)
    hints = ("Two steps: first decide which rows are allowed (their accuracy is at most `max_loss_points` below the "
             "best accuracy of the whole table, not below the first row's), then pick among them.",
             "Among the allowed rows the smallest `size_kb` wins; a tie in size goes to the smaller `p50_ms_batch1` "
             "(batch 1, not batch 64). Return that row's `name`, a string.")
    solution = """def choose_variant(records, max_loss_points):
    best = max(record["accuracy_pct"] for record in records)
    allowed = [record for record in records if best - record["accuracy_pct"] <= max_loss_points]
    chosen = min(allowed, key=lambda record: (record["size_kb"], record["p50_ms_batch1"]))
    return chosen["name"]"""

    def cases(self):
        return [((records, loss), reference_choose_variant(records, loss)) for records, loss in _VARIANT_TABLES]

    def describe_call(self, args):
        records, loss = args
        return (f"On the check's test table {_describe_table(records)} (not your table), "
                f"`choose_variant(rows, {loss:g})`")

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args)
            call = self.describe_call(args)
            records, loss = args
            if isinstance(actual, Mapping):
                raise Incorrect(f"{call} returned a whole row; return the chosen row's `name`, a string.")
            names = [record["name"] for record in records]
            if not isinstance(actual, str) or actual not in names:
                raise Incorrect(f"{call} returned {actual!r}, which is not the name of one of the rows.")
            if actual != expected:
                raise Incorrect(f"{call} returned {actual!r}: {self._why_not(records, loss, actual)}")

    @staticmethod
    def _why_not(records: Sequence[Mapping], loss: float, actual: str) -> str:
        chosen = next(record for record in records if record["name"] == actual)
        best = max(record["accuracy_pct"] for record in records)
        if best - chosen["accuracy_pct"] > loss:
            first = records[0]["accuracy_pct"]
            if first - chosen["accuracy_pct"] <= loss:
                return (f"it is within {_points(loss)} of the first row, but the rule measures the loss from the most "
                        "accurate row of the table.")
            return f"it loses more than {_points(loss)} against the most accurate row, so it is not allowed."
        allowed = [record for record in records if best - record["accuracy_pct"] <= loss]
        smallest = min(record["size_kb"] for record in allowed)
        if chosen["accuracy_pct"] == best and chosen["size_kb"] > smallest:
            return "it is the most accurate, but the rule asks for the smallest file among the allowed rows."
        if chosen["size_kb"] > smallest:
            boundary = [record for record in allowed if best - record["accuracy_pct"] == loss]
            if any(record["size_kb"] == smallest for record in boundary):
                return (f"a smaller row loses exactly {_points(loss)}, which is allowed: the rule says at most "
                        f"{loss:g}, not less than.")
            return "an allowed row has a smaller file."
        tied = [record for record in allowed if record["size_kb"] == smallest and record is not chosen]
        if any(record["p50_ms_batch64"] > chosen["p50_ms_batch64"] for record in tied):
            return ("it is faster at batch 64, but the rule breaks a tie in size at batch 1 (`p50_ms_batch1`): "
                    "compare that column.")
        return "another allowed row is just as small and faster at batch 1: ties in size go to the faster."


# ---------------------------------------------------------------------------
# Exercise 2 — what quantization changed: the accuracy drop and the flipped predictions
# ---------------------------------------------------------------------------

def reference_prediction_change(labels, reference_predictions, candidate_predictions) -> tuple[float, int]:
    """(reference accuracy − candidate accuracy in percentage points, how many predictions differ)."""
    labels, reference, candidate = (np.asarray(values) for values in
                                    (labels, reference_predictions, candidate_predictions))
    drop = 100 * (np.mean(reference == labels) - np.mean(candidate == labels))
    return float(drop), int(np.sum(reference != candidate))


def _prediction_cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(15)
    labels = rng.integers(0, 10, 450)
    reference = labels.copy()
    wrong = rng.choice(450, 11, replace=False)
    reference[wrong] = (labels[wrong] + 1) % 10
    right = np.flatnonzero(reference == labels)
    swapped = reference.copy()  # fixes two of the reference's mistakes and makes two new ones: no drop, four changes
    swapped[wrong[:2]] = labels[wrong[:2]]
    swapped[right[:2]] = (labels[right[:2]] + 3) % 10
    worse = reference.copy()  # three new mistakes, and two old mistakes turned into other wrong digits
    worse[right[5:8]] = (labels[right[5:8]] + 1) % 10
    worse[wrong[:2]] = (labels[wrong[:2]] + 5) % 10
    better = reference.copy()
    better[wrong[:5]] = labels[wrong[:5]]
    small_labels = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    one_flipped = np.array([3, 1, 4, 7, 5, 9, 2, 6])
    return [(labels, reference, swapped), (labels, reference, worse), (labels, reference, better),
            (labels, reference, reference.copy()), (small_labels, small_labels.copy(), one_flipped)]


class PredictionChange(FunctionProblem):
    prompt = "return (accuracy drop in points, number of changed predictions) between a reference and a candidate"
    vars = ("prediction_change",)
    hints = ("The drop compares each model with the true labels: the reference's accuracy minus the candidate's, "
             "in percentage points (× 100), positive when the candidate is worse.",
             "The changes compare the two models with each other, not with the labels: count the rows where the two "
             "predictions differ, whether either is right or not.")
    solution = """def prediction_change(labels, reference_predictions, candidate_predictions):
    drop = 100 * (np.mean(reference_predictions == labels) - np.mean(candidate_predictions == labels))
    changed = int(np.sum(reference_predictions != candidate_predictions))
    return drop, changed"""

    def cases(self):
        return [(case, reference_prediction_change(*case)) for case in _prediction_cases()]

    def describe_call(self, args):
        labels, reference, candidate = args
        return (f"`prediction_change` on {len(labels)} labels where the candidate differs from the reference on "
                f"{int(np.sum(reference != candidate))} rows")

    def check(self, fn):
        self.require_function(fn)
        for args, (drop, changed) in self.cases():
            actual = self.call_answer(fn, args)
            call = self.describe_call(args)
            if not isinstance(actual, (tuple, list)) or len(actual) != 2:
                raise Incorrect(f"{call} returned {type(actual).__name__} {actual!r}; return a pair "
                                "(drop in points, number of changed rows).")
            got_drop, got_changed = actual
            for name, value in (("the drop", got_drop), ("the count", got_changed)):
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
                    raise Incorrect(f"{call}: {name} should be a number, but it is a {type(value).__name__}.")
            labels, reference, candidate = args
            if drop != 0 and math.isclose(float(got_drop), drop / 100, abs_tol=1e-9):
                raise Incorrect(f"{call}: the drop is a fraction; express it in percentage points (× 100).")
            if drop != 0 and math.isclose(float(got_drop), -drop, abs_tol=1e-9):
                raise Incorrect(f"{call}: the drop has the wrong sign: the reference's accuracy minus the candidate's.")
            if not math.isclose(float(got_drop), drop, abs_tol=1e-9):
                self._refuse_rounded(call, float(got_drop), drop)
                raise Incorrect(f"{call}: the drop is not the difference of the two accuracies; compare each model's "
                                "predictions with the labels.")
            newly_wrong = int(np.sum((reference == labels) & (candidate != labels)))
            if got_changed != changed and got_changed == newly_wrong:
                raise Incorrect(f"{call}: the count is the rows the candidate newly gets wrong; count every row where "
                                "the two predictions differ.")
            if got_changed != changed:
                size = "too small" if got_changed < changed else "too large"
                raise Incorrect(f"{call}: the count of changed rows is {size}; compare the two predictions row by row.")

    @staticmethod
    def _refuse_rounded(call: str, got: float, drop: float) -> None:
        """Raise Incorrect when ``got`` is the drop rounded (or within a hundredth of a point of it)."""
        for digits in range(4):
            if math.isclose(got, round(drop, digits), abs_tol=1e-9):
                places = f"{digits} decimal place{'s' if digits != 1 else ''}" if digits else "a whole number"
                raise Incorrect(f"{call}: the drop {got:g} is close, but rounded to {places}. Don't round: return "
                                "the exact difference, and round only when you print it.")
        if abs(got - drop) < 0.01:
            raise Incorrect(f"{call}: the drop {got:g} is close, but not exact. Don't round or approximate: return "
                            "the exact difference of the two accuracies.")


# ---------------------------------------------------------------------------
# Exercise 3 — the size ratio of the quantized file
# ---------------------------------------------------------------------------

DYNAMIC_FILE = "pytorch_int8_dynamic.onnx"
OPTIMIZED_FILE = "pytorch_optimized.onnx"


class SizeRatio(Problem):
    prompt = "compute size_ratio: the PyTorch int8 static file's size on disk over the PyTorch fp32 file's"
    vars = ("size_ratio",)
    hints = ("Both files are in the table (its size column is in KB, rounded) and on disk in the lab's artifacts "
             "folder; their exact sizes in bytes come from the files themselves.",
             "The quantized file's byte count divided by the float file's: a number below 1. The float file is the "
             "one the table measured, with the exporter's metadata stripped.")
    solution = """size_ratio = table.row("PyTorch int8 static").size_bytes / table.row("PyTorch fp32").size_bytes"""

    def check(self, size_ratio):
        paths = {name: lab_artifact(name) for name in (FLOAT_FILE, STATIC_FILE, EXPORTED_FILE)}
        for path in paths.values():
            if not path.is_file():
                raise Incorrect(f"{path} is missing: run the cells above that export, quantize and measure the "
                                "models, then this one.")
        if isinstance(size_ratio, (bool, np.bool_)) or not isinstance(size_ratio, (numbers.Real, np.number)):
            raise Incorrect(f"`size_ratio` should be a number, but it is a {type(size_ratio).__name__}.")
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        for name in (DYNAMIC_FILE, OPTIMIZED_FILE):  # only for diagnoses: the check passes without them
            if lab_artifact(name).is_file():
                sizes[name] = lab_artifact(name).stat().st_size
        value, ratio = float(size_ratio), sizes[STATIC_FILE] / sizes[FLOAT_FILE]
        if math.isclose(value, ratio, rel_tol=1e-4):
            return
        for mistake, message in self._mistakes(sizes, ratio):
            if not math.isclose(mistake, ratio, rel_tol=1e-4) and math.isclose(value, mistake, rel_tol=1e-4):
                raise Incorrect(message)
        high = value > ratio
        raise Incorrect(f"`size_ratio` = {value:.4g} is too {'large' if high else 'small'}: divide the int8 static "
                        "file's size in bytes by the fp32 file's, both from the table's rows (`size_bytes`).")

    @staticmethod
    def _mistakes(sizes: Mapping[str, int], ratio: float) -> list[tuple[float, str]]:
        """(a value a known mistake gives, what to tell the learner who computed it)."""
        mistakes = [
            (1 / ratio, "`size_ratio` is the float size over the int8 size; divide the other way round."),
            (1 - ratio, "`size_ratio` is the saving (1 − ratio), the share of the bytes that went away; the ratio is "
                        "what is left: the int8 size over the float size."),
            (100 * ratio, "`size_ratio` is a percentage; give the ratio as a fraction (no × 100)."),
            (100 * (1 - ratio), "`size_ratio` is the saving in percent; give the ratio itself: the int8 size over "
                                "the float size, as a fraction."),
            (sizes[STATIC_FILE] / sizes[EXPORTED_FILE],
             f"`size_ratio` divides by the size of {EXPORTED_FILE}, the file as exported with its metadata; the "
             f"table's PyTorch fp32 row is {FLOAT_FILE}."),
        ]
        if OPTIMIZED_FILE in sizes:
            mistakes.append((sizes[STATIC_FILE] / sizes[OPTIMIZED_FILE],
                             "`size_ratio` divides by the PyTorch optimized file; the question compares with the "
                             "PyTorch fp32 row, the export before any optimization."))
        if DYNAMIC_FILE in sizes:
            mistakes.append((sizes[DYNAMIC_FILE] / sizes[FLOAT_FILE],
                             "`size_ratio` uses the PyTorch int8 dynamic row; the question asks about int8 static."))
        for digits in range(1, 4):
            places = f"{digits} decimal place{'s' if digits != 1 else ''}"
            mistakes.append((round(ratio, digits), f"`size_ratio` is close, but rounded to {places}. Don't round: "
                                                   "keep the exact quotient."))
        for digits in range(2):
            static, floating = (round(sizes[name] / 1000, digits) for name in (STATIC_FILE, FLOAT_FILE))
            if floating:
                mistakes.append((static / floating, "`size_ratio` divides the table's rounded kilobytes; divide the "
                                                    "two files' sizes in bytes instead (`size_bytes`)."))
        return mistakes


# ---------------------------------------------------------------------------
# Exercise 4 — the resolution of the gate's accuracy threshold
# ---------------------------------------------------------------------------

def gate_accuracy_limit() -> float:
    """The gate's default ``max_accuracy_drop`` (a fraction), read from :func:`labsupport.gate.run_gate`."""
    import inspect

    from labsupport.gate import run_gate

    return float(inspect.signature(run_gate).parameters["max_accuracy_drop"].default)


def held_out_digit_count() -> int:
    """How many digits the test split holds (the rows the gate measures accuracy on)."""
    from labsupport.models import load_digits_split

    return len(load_digits_split().y_test)


def reference_extra_mistakes(test_size: int, max_accuracy_drop: float) -> int:
    """The most extra mistakes on ``test_size`` digits whose accuracy drop the gate still accepts.

    The gate passes a drop of ``k / test_size`` when it is at most ``max_accuracy_drop`` (the
    same comparison :func:`labsupport.gate.run_gate` makes, with its tolerance for float rounding).
    """
    return max(k for k in range(test_size + 1) if k / test_size <= max_accuracy_drop + 1e-12)


# (test digits, limit): this lab's test set first, then sizes where rounding the product to the nearest whole number
# goes over the limit (3.5, 4.7, 0.99, 12.5 mistakes' worth) and where it happens not to.
_SLACK_CASES = [(None, None), (350, 0.01), (470, 0.01), (99, 0.01), (250, 0.05), (250, 0.01), (1000, 0.01),
                (450, 0.02)]


class GateSlack(FunctionProblem):
    prompt = ("how many more test digits may the deployed model get wrong than the reference and still pass the gate? "
              "(a function of the test set's size and the limit)")
    vars = ("extra_mistakes_allowed",)
    hints = ("The gate's limit is a fraction of the rows: a drop of at most `max_accuracy_drop` in accuracy. Each "
             "extra mistake lowers the accuracy by one over the number of test digits.",
             "Try it by hand for 350 digits and a limit of 0.01: how many whole extra mistakes keep the drop within "
             "the limit? Would rounding that product to the nearest whole number ever go over it?")
    solution = """def extra_mistakes_allowed(test_size, max_accuracy_drop):
    return math.floor(max_accuracy_drop * test_size + 1e-9)"""

    def cases(self):
        count, limit = held_out_digit_count(), gate_accuracy_limit()
        cases = [(count, limit) if size is None else (size, drop) for size, drop in _SLACK_CASES]
        return [(args, reference_extra_mistakes(*args)) for args in cases]

    def describe_call(self, args):
        return f"`extra_mistakes_allowed({args[0]}, {args[1]:g})`"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            value = self.call_answer(fn, args)
            call = self.describe_call(args)
            count, limit = args
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
                raise Incorrect(f"{call} returned a {type(value).__name__}; return a number of digits.")
            if not float(value).is_integer():
                raise Incorrect(f"{call} = {value!r} is not a whole number: a model gets a digit right or wrong, so "
                                "keep the whole mistakes that fit under the limit.")
            value = int(value)
            if value > expected:
                rounded = value == round(limit * count) and limit * count % 1
                why = (" Rounding to the nearest whole number can go over the limit: keep only whole digits at or "
                       "under it." if rounded else " Keep only whole digits at or under the limit.")
                raise Incorrect(f"{call} = {value}: that many extra mistakes on {count} digits lower the accuracy by "
                                f"{100 * value / count:.2f} points, over the limit of {_points(100 * limit)}.{why}")
            if value < expected:
                raise Incorrect(f"{call} = {value} is too small: {value + 1} extra mistakes on {count} digits lower "
                                f"the accuracy by {100 * (value + 1) / count:.2f} points, still within the limit of "
                                f"{_points(100 * limit)}.")


# ---------------------------------------------------------------------------
# Review questions
# ---------------------------------------------------------------------------

class OneFilePerTarget(ThoughtExperiment):
    prompt = "which row would you deploy to a phone, to a batching C++ service, and to a web page, and why?"
    solution = (
        "Not necessarily with one rule. For a web page and a phone app the file is downloaded or shipped inside the "
        "app, so bytes matter, and exercise 1's rule (the smallest file within a point of the best) fits: on the "
        "digits it may well pick the scikit-learn baseline or a static int8 CNN. On a phone I would first check the "
        "target runtime: a mobile build of ONNX Runtime (the ORT format and a reduced operator set, lab 08) or another "
        "engine must have every operator of the file, and a graph optimized with com.microsoft fusions ties the file "
        "to ONNX Runtime. For a C++ service that batches 64 requests, size hardly matters: I would rank the rows by "
        "p50 and p99 at batch 64 on the server's own CPU (lab 11: measure on the target), and keep a float file where "
        "int8 is not faster there (lab 10). For int8 files the accuracy belongs to the kernels too: the same file "
        "gave different digits in Python on this CPU and in the browser, so the accuracy is measured on the target's "
        "runtime. In every case the gate runs on the exact file that ships, with that target's provider and threads.")


class TwoExportsOneNetwork(ThoughtExperiment):
    prompt = "the PyTorch and Keras exports of the same network differ in operators, size and speed: why?"
    solution = (
        "ONNX describes a graph, not a network: each converter writes what its framework's own graph says. Keras "
        "keeps images channels-last (NHWC), while ONNX's Conv is channels-first, so tf2onnx transposes the input on "
        "the way in (a mere reshape for one channel) and back before Flatten to reproduce Keras's element order "
        "(lab 05); its Flatten becomes "
        "a dynamic reshape (Shape, Gather, Slice, Concat) where PyTorch's exporter wrote one Reshape with a constant, "
        "and the dense layer becomes MatMul plus Add instead of Gemm. The weights are the same size, so the files "
        "differ by graph structure and metadata, and the extra nodes cost a little time per call at batch 1, where "
        "fixed per-node costs dominate (lab 11). ONNX Runtime's optimizer removes some of it (lab 09): fusions, "
        "transpose elimination, constant folding of shape arithmetic. The lesson: compare exports by measuring them, "
        "validate each against its own framework (lab 07), and do not assume one file per architecture.")


class WhatTheGateMisses(ThoughtExperiment):
    prompt = "the gate passed: what can still go wrong in production that none of its items measured?"
    solution = (
        "The gate measures the file on this machine with this data. It cannot see: preprocessing in the serving "
        "code that differs from training's (layout, scaling, colour order; lab 12), which silently lowers accuracy "
        "on real inputs; data drift, since the test digits are not tomorrow's inputs; a different runtime version or "
        "build at the target (the browser's onnxruntime-web is 1.30, Node.js's too, lab 13), which may lack an "
        "operator, an opset or an IR version; other hardware, where latency and even the best provider differ; "
        "behaviour under concurrent load, queueing and the tail latency a single-threaded benchmark does not show "
        "(lab 14); memory limits; and numerical edge cases outside the test set (large inputs, NaNs). A real "
        "pipeline adds these as evidence too: the serving code's own preprocessing in the parity test, a run on "
        "the target runtime, a load test with a p99 objective, and monitoring after release.")


class ThresholdStatistics(ThoughtExperiment):
    prompt = "how sure can a 1-point accuracy limit on 450 test digits make you that int8 is no worse?"
    solution = (
        "Not very: on 450 digits one mistake is 0.22 points, so the limit allows four extra mistakes, and the "
        "sampling error of an accuracy near 97 % on 450 images is about sqrt(0.97 × 0.03 / 450), 0.8 points. A "
        "model 1 point worse could pass and one as good could fail by luck. Two things help. Compare the two models "
        "on the same images pair by pair: only the images where they disagree carry information (exercise 2 counts "
        "them), and a McNemar test on those discordant pairs says whether the difference is real. And use more "
        "labelled data, or report a confidence interval of the drop (a bootstrap over images) and gate on its upper "
        "bound. The count of changed predictions also matters on its own: two models with the same accuracy can "
        "disagree on many inputs, which users notice even when the average does not move.")


class TwoWeeksInOneFile(ThoughtExperiment):
    prompt = "trace one digit from training to the browser: where do its layout, type and precision change?"
    solution = (
        "The digit starts as 64 integers 0–16 in scikit-learn's data, scaled to float32 in [0, 1] by "
        "load_digits_split. PyTorch reads it as [1, 1, 8, 8] (NCHW), Keras as [1, 8, 8, 1] (NHWC), scikit-learn as "
        "64 flat values: the same row-major bytes with different shapes (lab 02's index arithmetic, lab 05's "
        "layouts). Each exporter writes float32 weights into an ONNX graph with its own opset and operators (labs "
        "04–06); the checker and lab 07's harness prove the file computes what the framework did. Static "
        "quantization (lab 10) then rounds the weights to int8 with a scale per tensor and inserts Quantize/"
        "DequantizeLinear around each operator; ONNX Runtime's optimizer (lab 09) fuses them into QLinearConv and "
        "QGemm, so the pixels become int8 codes inside the graph while the file's input and output stay float32. "
        "The C++ CLI (lab 13) reads the same float32 bytes from a .npy file and passes a pointer and a shape to "
        "CreateTensor; the browser receives the same bytes (base64 in a message) as a Float32Array and runs the "
        "file in WebAssembly with an older runtime, whose int8 kernels may round differently "
        "from the x86 ones. At every boundary the check was the same: outputs compared with Python's within a stated "
        "tolerance.")


PROBLEMS = {
    "q1": ChooseVariant,
    "q2": PredictionChange,
    "q3": SizeRatio,
    "q4": GateSlack,
    "q5": OneFilePerTarget,
    "q6": TwoExportsOneNetwork,
    "q7": WhatTheGateMisses,
    "q8": ThresholdStatistics,
    "q9": TwoWeeksInOneFile,
}

bind = make_binder(LAB, PROBLEMS)
