"""Lab 11 — benchmarking and profiling: method, three runtimes, batch and threads, the profiler, FLOP/s.

The exercises compute a percentile from raw timings, pick the throughput-optimal batch
within a latency budget from a sweep table, sum the profiler's kernel times per operator,
count the FLOPs of a convolution, and turn a model's FLOPs and latency into a fraction of the
machine's peak FLOP/s. The reference helpers below give the
notebook and the checks the same model in three runtimes: the seeded digits CNN of lab 04
(PyTorch), its ONNX graph written from the same weights, and a Keras twin holding them too.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from labsupport.checking import (
    EqualityProblem,
    FunctionProblem,
    Incorrect,
    ThoughtExperiment,
    assert_equal,
    make_binder,
)

LAB = "11_benchmarking_and_profiling"

CNN_INPUT = "pixels"
CNN_OUTPUT = "logits"
CNN_OPSET = 17


# ---------------------------------------------------------------------------
# One model, three runtimes
# ---------------------------------------------------------------------------

def digits_cnn(seed: int = 0):
    """Lab 04's digits CNN (PyTorch), seeded and in eval mode: conv 8 → max-pool → conv 16 → linear 10.

    Untrained: a latency does not depend on the values of the weights of a network without
    data-dependent branches (barring denormal numbers, which seeded weights do not produce),
    and training would cost seconds of the lab's budget without changing any timing.
    """
    from labsupport.models.torch_models import build_digits_cnn

    return build_digits_cnn(seed=seed).eval()


def _cnn_weights(model) -> dict[str, np.ndarray]:
    conv1, _, _, conv2, _, _, linear = model
    return {name: layer.detach().numpy().copy() for name, layer in (
        ("conv1.weight", conv1.weight), ("conv1.bias", conv1.bias), ("conv2.weight", conv2.weight),
        ("conv2.bias", conv2.bias), ("fc.weight", linear.weight), ("fc.bias", linear.bias))}


def digits_cnn_onnx(model):
    """The ONNX graph of :func:`digits_cnn`, written from its weights with ``onnx.helper``.

    These are the operators lab 04's exporter writes for this network (Conv, Relu, MaxPool, Conv,
    Relu, a flattening, Gemm), without paying seconds for a torch.export trace. Input
    ``pixels`` [batch, 1, 8, 8], output ``logits`` [batch, 10], batch dynamic, opset 17.
    """
    from onnx import TensorProto, helper, numpy_helper

    weights = _cnn_weights(model)
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", [CNN_INPUT, "conv1.weight", "conv1.bias"], ["conv1_out"], name="conv1", **conv),
        helper.make_node("Relu", ["conv1_out"], ["relu1_out"], name="relu1"),
        helper.make_node("MaxPool", ["relu1_out"], ["pool_out"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool_out", "conv2.weight", "conv2.bias"], ["conv2_out"], name="conv2", **conv),
        helper.make_node("Relu", ["conv2_out"], ["relu2_out"], name="relu2"),
        helper.make_node("Flatten", ["relu2_out"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], [CNN_OUTPUT], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn", [helper.make_tensor_value_info(CNN_INPUT, TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info(CNN_OUTPUT, TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()])
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", CNN_OPSET)],
                                    producer_name="labsupport.exercises.lab11")
    model_proto.ir_version = 10
    return model_proto


def save_digits_cnn_onnx(model, path: str | Path) -> Path:
    """Save :func:`digits_cnn_onnx` to ``path`` and return the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(digits_cnn_onnx(model), str(path))
    return path


def keras_twin(model):
    """A Keras 3 digits CNN (lab 05's layers, NHWC input) holding ``model``'s PyTorch weights.

    PyTorch stores a convolution kernel as (out, in, kh, kw) and Keras as (kh, kw, in, out);
    PyTorch flattens the last feature map channel-first (c, h, w) and Keras channel-last
    (h, w, c), so the dense layer's rows are reordered to match. Importing TensorFlow is the
    caller's business (``labsupport.models.keras_models``, which quiets it first).
    """
    from labsupport.models.keras_models import build_digits_keras_cnn

    weights = _cnn_weights(model)
    twin = build_digits_keras_cnn()
    dense = weights["fc.weight"].reshape(10, 16, 4, 4).transpose(2, 3, 1, 0).reshape(256, 10)
    twin.set_weights([weights["conv1.weight"].transpose(2, 3, 1, 0), weights["conv1.bias"],
                      weights["conv2.weight"].transpose(2, 3, 1, 0), weights["conv2.bias"], dense, weights["fc.bias"]])
    return twin


def conv2_flops_reference(batch: int = 64) -> int:
    """FLOPs of the CNN's second convolution at ``batch``, counted from the graph by labsupport."""
    from labsupport.profiling import count_flops

    counted = count_flops(digits_cnn_onnx(digits_cnn()), {CNN_INPUT: (batch, 1, 8, 8)})
    return next(node.flops for node in counted.nodes if node.name == "conv2")


# ---------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------

_PERCENTILE_FUNCTIONS = ("percentile", "quantile", "nanpercentile", "nanquantile")


class PercentileFunctionUsed(Exception):
    """Raised, while exercise 1 is checked, by NumPy's percentile functions: the exercise is to write one."""


class Percentile(FunctionProblem):
    prompt = "compute the q-th percentile of raw timings by hand, with NumPy's linear interpolation"
    vars = ("percentile",)
    hints = ("Sort the timings first. With n of them, the q-th percentile sits at the fractional position "
             "(n − 1) · q / 100, counting from 0.",
             "Split that position into a whole index and a fraction, and move that fraction of the way from the "
             "sorted value at the index to the next one (the last index has no next: stop there).")
    solution = """def percentile(times_ms, q):
    ordered = np.sort(np.asarray(times_ms, dtype=np.float64))
    position = (len(ordered) - 1) * q / 100
    below = int(np.floor(position))
    above = min(below + 1, len(ordered) - 1)
    return float(ordered[below] + (position - below) * (ordered[above] - ordered[below]))"""
    rtol = 1e-9

    def cases(self):
        rng = np.random.default_rng(11)
        heavy_tail = np.round(rng.lognormal(0.0, 0.6, 37) + 1.0, 4)
        raw = [
            ([3.0, 1.0, 2.0, 5.0, 4.0], 50),
            ([1.0, 2.0, 3.0, 4.0], 50),
            ([2.0, 9.0, 4.0, 7.0, 1.0, 3.0], 95),
            (list(heavy_tail), 99),
            (list(heavy_tail), 95),
            ([1.5, 1.2, 1.1, 30.0, 1.3, 1.4, 1.2, 1.6, 1.1, 1.3], 90),
            ([4.0, 8.0], 0),
            ([4.0, 8.0, 6.0], 100),
            ([2.5], 99),
        ]
        return [((times, q), float(np.percentile(times, q))) for times, q in raw]

    def describe_call(self, args):
        times, q = args
        return f"`percentile(<{len(times)} timings>, {q})`"

    def check(self, fn):
        self.require_function(fn)
        cases = self.cases()
        originals = {name: getattr(np, name) for name in _PERCENTILE_FUNCTIONS}

        def refuse(*args, **kwargs):
            raise PercentileFunctionUsed("this exercise asks you to compute the percentile from the sorted timings "
                                         "yourself, without NumPy's percentile or quantile")

        try:
            for name in _PERCENTILE_FUNCTIONS:
                setattr(np, name, refuse)
            for args, expected in cases:
                assert_equal(self.describe_call(args), self.call_answer(fn, args), expected, rtol=self.rtol)
        finally:
            for name, function in originals.items():
                setattr(np, name, function)


class BestBatch(FunctionProblem):
    prompt = "from a sweep table, pick the batch size with the highest throughput whose latency fits a budget"
    vars = ("best_batch",)
    hints = ("Throughput is items per second: the batch size divided by the latency of one call (in seconds). "
             "It is not the batch with the smallest latency, nor necessarily the largest batch.",
             "Keep only the rows whose latency is within the budget, compute each one's throughput, and return "
             "the batch size of the best row (as an int).")
    solution = """def best_batch(batch_sizes, latencies_ms, budget_ms):
    best, best_throughput = None, 0.0
    for batch, latency in zip(batch_sizes, latencies_ms):
        throughput = batch / (latency / 1000)
        if latency <= budget_ms and throughput > best_throughput:
            best, best_throughput = batch, throughput
    return best"""

    test_cases = [
        (([1, 2, 4, 8, 16, 32, 64, 128], [0.10, 0.11, 0.13, 0.18, 0.30, 0.55, 1.30, 3.20], math.inf), 32),
        (([1, 8, 64, 512], [0.05, 0.09, 0.40, 2.0], math.inf), 512),
        (([1, 8, 64, 512], [0.05, 0.09, 0.40, 2.0], 1.0), 64),
        (([256, 1, 16, 64], [2.9, 0.02, 0.20, 0.70], math.inf), 64),
        (([256, 1, 16, 64], [2.9, 0.02, 0.20, 0.70], 0.5), 16),
        (([1, 4, 16], [0.30, 0.31, 2.0], 0.3), 1),
    ]

    def describe_call(self, args):
        batch_sizes, _, budget = args
        limit = "no budget" if math.isinf(budget) else f"a {budget:g} ms budget"
        return f"`best_batch` on the sweep over batch sizes {list(batch_sizes)} with {limit}"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args)
            if isinstance(actual, (bool, np.bool_)) or not isinstance(actual, (numbers.Integral, np.integer)):
                raise Incorrect(f"{self.describe_call(args)} returned {actual!r}: return the batch size itself "
                                "(an int from `batch_sizes`), not its throughput or its position.")
            if actual not in args[0]:
                raise Incorrect(f"{self.describe_call(args)} returned {actual}, which is not one of the batch sizes.")
            batch_sizes, latencies, budget = args
            latency = dict(zip(batch_sizes, latencies))[actual]
            if latency > budget:
                raise Incorrect(f"{self.describe_call(args)} returned batch {actual}, whose latency {latency:g} ms is "
                                "over the budget.")
            if actual != expected:
                within = "another batch" if math.isinf(budget) else "another batch within the budget"
                raise Incorrect(f"{self.describe_call(args)} returned batch {actual}; {within} processes more items "
                                "per second.")


class ConvFlops(EqualityProblem):
    prompt = "count the FLOPs of the CNN's second convolution at batch 64"
    vars = ("conv2_flops",)
    hints = ("Each output value of a convolution is one dot product over its filter: (input channels) × (kernel "
             "area) multiply–adds. Count the output values first: batch × output channels × output positions.",
             "Read the second Conv's shapes off the CNN built at the start of the lab: its input and output "
             "channels, the spatial size of its output (after the pool, with 'same' padding) and its kernel. "
             "How many FLOPs is one multiply–add?")
    solution = "conv2_flops = 2 * 64 * 16 * 4 * 4 * 8 * 3 * 3"

    def expected_value(self):
        return conv2_flops_reference(64)

    def check(self, conv2_flops):
        expected = self.expected_value()
        if isinstance(conv2_flops, (numbers.Real, np.number)) and not isinstance(conv2_flops, bool):
            ratio = float(conv2_flops) / expected
            if math.isclose(ratio, 0.5):
                raise Incorrect("`conv2_flops` is the number of multiply–adds (MACs); FLOPs count the multiply and "
                                "the add separately.")
            if math.isclose(ratio, 4.0):
                raise Incorrect("`conv2_flops` counts 8 × 8 output positions: the second Conv runs after the 2 × 2 "
                                "max-pool, on a 4 × 4 map.")
            if math.isclose(ratio, 2.0):
                raise Incorrect("`conv2_flops` sums over 16 input channels: the second Conv reads the first one's "
                                "outputs, after pooling.")
            if math.isclose(ratio, 1 / 8):
                raise Incorrect("`conv2_flops` leaves out the input channels: each output value sums over every input "
                                "channel of its 3 × 3 window.")
            if math.isclose(ratio, 1 / 16):
                raise Incorrect("`conv2_flops` leaves out the output channels: each of them has its own filter.")
            if math.isclose(ratio, 1 / 64):
                raise Incorrect("`conv2_flops` is the count for one image; the exercise asks for a batch of 64.")
        assert_equal("conv2_flops", conv2_flops, expected)


class OperatorTotals(FunctionProblem):
    prompt = "sum the profiler's kernel times per operator type from the trace's events"
    vars = ("operator_totals",)
    hints = ("Only the events whose category (`cat`) is \"Node\" are kernels; the \"Session\" events span whole "
             "runs and would count everything twice.",
             "Group by the operator type the runtime ran, which is in each event's `args` (not by the event's "
             "`name`, which is the node's), and add up `dur` (microseconds).")
    solution = """def operator_totals(events):
    totals = {}
    for event in events:
        if event["cat"] == "Node":
            op_type = event["args"]["op_name"]
            totals[op_type] = totals.get(op_type, 0) + event["dur"]
    return totals"""

    def cases(self):
        def node(name, op_type, duration, start):
            return {"cat": "Node", "name": f"{name}_kernel_time", "ts": start, "dur": duration, "ph": "X",
                    "args": {"op_name": op_type, "provider": "CPUExecutionProvider"}}

        def session(name, duration, start):
            return {"cat": "Session", "name": name, "ts": start, "dur": duration, "ph": "X", "args": {}}

        one_run = [session("model_loading_uri", 400, 0), session("session_initialization", 3000, 500),
                   node("conv1", "Conv", 120, 4000), node("relu1", "Relu", 10, 4130), node("conv2", "Conv", 80, 4150),
                   node("fc", "Gemm", 15, 4240), session("SequentialExecutor::Execute", 260, 3995),
                   session("model_run", 280, 3990)]
        two_runs = one_run + [node("conv1", "Conv", 100, 5000), node("relu1", "Relu", 12, 5110),
                              node("conv2", "Conv", 70, 5130), node("fc", "Gemm", 14, 5210),
                              session("model_run", 240, 4990)]
        fused = [node("relu_nchwc", "Conv", 230, 10), node("reorder", "ReorderOutput", 8, 250),
                 node("pool", "MaxPool", 40, 260), session("model_run", 300, 0)]
        return [((events,), self._reference(events)) for events in (one_run, two_runs, fused)]

    @staticmethod
    def _reference(events):
        from labsupport.profiling import operator_times

        return operator_times(events)

    def describe_call(self, args):
        (events,) = args
        nodes = sum(event["cat"] == "Node" for event in events)
        return f"`operator_totals` on {len(events)} events ({nodes} of them node kernels)"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args)
            call = self.describe_call(args)
            if not isinstance(actual, Mapping):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return a dict from operator type to "
                                "total microseconds.")
            extra = sorted(str(key) for key in set(actual) - set(expected))
            if any(key.endswith("_kernel_time") for key in extra):
                raise Incorrect(f"{call} has keys such as {extra[0]!r}: those are node names; group by the operator "
                                "type in the event's args.")
            if extra:
                raise Incorrect(f"{call} has keys {extra} that are not operator types of the node events: keep only "
                                "the events of category \"Node\".")
            missing = sorted(set(expected) - set(actual))
            if missing:
                raise Incorrect(f"{call} has no total for {missing}.")
            for op_type, total in expected.items():
                assert_equal(f"{call}[{op_type!r}]", actual[op_type], total, rtol=1e-9)


class FractionOfPeak(FunctionProblem):
    prompt = "write the achieved FLOP/s of a model as a fraction of the machine's peak FLOP/s"
    vars = ("fraction_of_peak",)
    hints = ("Achieved FLOP/s is the FLOPs of one call divided by the seconds one call takes; mind that the "
             "latency is given in milliseconds.",
             "The fraction is achieved FLOP/s over the peak FLOP/s: a number between 0 and 1 for any real model, "
             "not a percentage.")
    solution = """def fraction_of_peak(flops, latency_ms, peak_flops_per_s):
    achieved_flops_per_s = flops / (latency_ms / 1000)
    return achieved_flops_per_s / peak_flops_per_s"""
    rtol = 1e-6
    test_cases = [
        ((3_276_800, 0.1423, 7.1e10), 3_276_800 / 0.1423e-3 / 7.1e10),
        ((51_200, 0.021, 7.1e10), 51_200 / 0.021e-3 / 7.1e10),
        ((268_435_456, 4.0, 1.2e11), 268_435_456 / 4.0e-3 / 1.2e11),
        ((4.1e9, 35.0, 2.4e11), 4.1e9 / 35.0e-3 / 2.4e11),
    ]

    def describe_call(self, args):
        flops, latency_ms, peak = args
        return f"`fraction_of_peak({flops:.6g}, {latency_ms:g}, {peak:.3g})`"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args)
            call = self.describe_call(args)
            if isinstance(actual, bool) or not isinstance(actual, (numbers.Real, np.number)):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return the fraction as a number.")
            ratio = float(actual) / expected
            if math.isclose(ratio, 1e-3, rel_tol=1e-3):
                raise Incorrect(f"{call} is 1000 times too small: the latency is in milliseconds; convert it to "
                                "seconds first.")
            if math.isclose(ratio, 1e-6, rel_tol=1e-3):
                raise Incorrect(f"{call} is a million times too small: to turn milliseconds into seconds, divide by "
                                "1000, do not multiply.")
            if math.isclose(ratio, 100, rel_tol=1e-3):
                raise Incorrect(f"{call} is a percentage; return the fraction (between 0 and 1).")
            if math.isclose(float(actual) * expected, 1.0, rel_tol=1e-3):
                raise Incorrect(f"{call} is upside down: divide the achieved FLOP/s by the peak.")
            assert_equal(call, actual, expected, rtol=self.rtol)


class SystematicTuning(ThoughtExperiment):
    prompt = "a service's model got slower after an upgrade: describe, step by step, how you find out why"
    solution = (
        "1. Reproduce and quantify on a quiet machine: warm up, time each version in its own block (never "
        "interleaved), enough repeats for a narrow confidence interval, and compare p50 and p99, not one mean; if the "
        "intervals overlap there is nothing to explain yet. 2. Pin what changed: the same model file, inputs, batch "
        "size, thread counts, providers and session options in both runs; change one thing at a time. 3. Locate it: "
        "profile both versions and compare per-operator time (a new operator, a lost fusion, a layout change such as "
        "extra Reorder or Transpose nodes, or a kernel that moved to another provider); compare the optimized graphs' "
        "node counts. 4. Bound it: count the model's FLOPs and compare the achieved FLOP/s with the machine's measured "
        "peak — far below the peak means overhead or memory traffic, near it means the arithmetic itself. 5. Fix the "
        "biggest contributor, measure again with the same procedure, and keep the benchmark in CI so it does not "
        "come back.")


class TailLatency(ThoughtExperiment):
    prompt = "p50 is 0.1 ms but p99 is 20 ms on a shared server: what causes such a tail, which figures do you report?"
    solution = (
        "A tail a hundred times the median is not the model's arithmetic, which is the same every call: it is the "
        "machine. Other processes take the cores, so a call (or one of its worker threads, which the others then wait "
        "for) is descheduled for a time slice of milliseconds; thread pools that spin or oversubscribe the cores make "
        "it worse, as do garbage collection, page faults on first use and frequency changes. Report the percentiles "
        "the users feel: a latency objective is a p95 or p99 with the load it was measured under, and the mean is "
        "the wrong summary because a few slow calls drag it. To shrink the tail, give the service dedicated cores, "
        "use fewer threads than cores, disable spinning when cores are shared, and warm up before taking traffic.")


class LowFractionAtBatchOne(ThoughtExperiment):
    prompt = "the CNN reaches a tiny fraction of the matmul peak at batch 1: why, and what would you try, in order?"
    solution = (
        "At batch 1 the CNN does about fifty thousand FLOPs per call, which the peak would finish in about a "
        "microsecond; the call takes more than ten times that because fixed costs dominate — Python and the runtime's "
        "per-call work (checking inputs, allocating outputs, launching each kernel), layout reorders, and kernels too "
        "small to fill the vector units. The fraction of peak says that arithmetic is not the bottleneck. In order: "
        "batch requests (the sweep shows throughput rising with the batch until the work fills the cores); cut "
        "per-call overhead (reuse sessions and buffers, I/O binding, one run per batch instead of per item, C++ "
        "instead of Python for the serving loop); keep the graph optimizations on so operators fuse; only then "
        "consider threads, which cannot help a call that is mostly overhead.")


PROBLEMS = {
    "q1": Percentile,
    "q2": BestBatch,
    "q3": OperatorTotals,
    "q4": ConvFlops,
    "q5": FractionOfPeak,
    "q6": SystematicTuning,
    "q7": TailLatency,
    "q8": LowFractionAtBatchOne,
}
bind = make_binder(LAB, PROBLEMS)
