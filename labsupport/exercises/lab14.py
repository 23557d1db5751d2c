"""Lab 14 — serving: a C++ service with dynamic batching under load, its metrics, and Ray Serve.

The exercises find the throughput-optimal batch from a latency sweep, hand each caller its
own rows of a batched output (the last step of a dynamic batcher), turn a closed-loop load's
concurrency and latency into throughput with Little's law, and estimate a quantile from a
Prometheus histogram's buckets. The model the lab serves is built here with ``onnx.helper``,
so the notebook and the checks need no training and no torch.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np

from labsupport.checking import FunctionProblem, Incorrect, ThoughtExperiment, assert_equal, make_binder

LAB = "14_serving"

SERVING_INPUT = "pixels"
SERVING_OUTPUT = "logits"
SERVING_WIDTHS = (64, 2048, 2048, 10)
"""Layer widths of the served MLP: 64 pixels → 2048 → 2048 → 10 logits, 4.3 million weights."""


# ---------------------------------------------------------------------------
# The model the lab serves, and what to do without a C++ toolchain
# ---------------------------------------------------------------------------

def explain_missing(error: Exception) -> None:
    """The C++ service cannot be built: raise ``error`` under ``CI=true``; otherwise print it and return None.

    ``error`` is a :class:`labsupport.native.NativeToolchainError`, whose one line names what is
    missing and the command that installs it. Outside CI the lab goes on without the service.
    """
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        raise error
    print(f"The C++ service cannot be built on this machine: {error}")
    print("The cells that need the service say so and skip their work; the batching math, the exercises and "
          "Ray Serve still run.")


def serving_mlp(seed: int = 0):
    """A seeded, untrained MLP 64 → 2048 → 2048 → 10 (ReLU between) as an ONNX model, batch axis dynamic.

    Input ``pixels`` [batch, 64] float32, output ``logits`` [batch, 10]. It is deliberately heavy
    for its input: 4.3 million weights (17 MB) read for every call, so a call at batch 1 costs
    far more than the HTTP and JSON work around it, and batching has something to share. Its
    weights are random (He-scaled, seeded): a latency does not depend on the values of the
    weights of a network without data-dependent branches, and every answer is compared with
    Python's ONNX Runtime running the same file, which is what "correct" means for a server.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, current = [], [], SERVING_INPUT
    layers = list(zip(SERVING_WIDTHS[:-1], SERVING_WIDTHS[1:]))
    for index, (fan_in, fan_out) in enumerate(layers, start=1):
        weight = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)).astype(np.float32)
        weights += [numpy_helper.from_array(weight, f"dense{index}.weight"),
                    numpy_helper.from_array(np.zeros(fan_out, np.float32), f"dense{index}.bias")]
        last = index == len(layers)
        output = SERVING_OUTPUT if last else f"dense{index}_out"
        nodes.append(helper.make_node("Gemm", [current, f"dense{index}.weight", f"dense{index}.bias"], [output],
                                      name=f"dense{index}"))
        if not last:
            nodes.append(helper.make_node("Relu", [output], [f"relu{index}_out"], name=f"relu{index}"))
            current = f"relu{index}_out"
    graph = helper.make_graph(
        nodes, "serving_mlp", [helper.make_tensor_value_info(SERVING_INPUT, TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info(SERVING_OUTPUT, TensorProto.FLOAT, ["batch", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="labsupport.exercises.lab14")
    model.ir_version = 10
    return model


def save_serving_mlp(path: str | Path, seed: int = 0) -> Path:
    """Save :func:`serving_mlp` to ``path`` and return the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(serving_mlp(seed), str(path))
    return path


# ---------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------

def _is_number(value) -> bool:
    return isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_))


class ThroughputOptimalBatch(FunctionProblem):
    prompt = "from a latency sweep T(B), return the throughput-optimal batch B* = argmax B / T(B)"
    vars = ("throughput_optimal_batch",)
    hints = ("A batch of B rows that takes T(B) milliseconds serves B / T(B) rows per millisecond. The smallest "
             "latency is batch 1's, and the largest batch is not always the best either.",
             "Compute rows per second for every row of the sweep, find the position of the largest, and return the "
             "batch size at that position (an int).")
    solution = """def throughput_optimal_batch(batch_sizes, latencies_ms):
    rows_per_second = np.asarray(batch_sizes) / (np.asarray(latencies_ms) / 1000)
    return int(batch_sizes[int(np.argmax(rows_per_second))])"""

    test_cases = [
        (([1, 2, 4, 8, 16, 32, 64, 128], [0.42, 0.60, 0.68, 1.55, 2.10, 4.00, 7.60, 15.80]), 64),
        (([1, 2, 4, 8, 16, 32, 64, 128], [0.10, 0.11, 0.13, 0.18, 0.30, 0.55, 1.30, 3.20]), 32),
        (([1, 8, 64, 512], [0.05, 0.09, 0.40, 2.0]), 512),
        (([256, 1, 16, 64], [2.9, 0.02, 0.20, 0.70]), 64),
        (([1, 2, 4], [0.30, 0.70, 1.50]), 1),
    ]

    def describe_call(self, args):
        batch_sizes, _ = args
        return f"`throughput_optimal_batch` on the sweep over batch sizes {list(batch_sizes)}"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args)
            call = self.describe_call(args)
            if isinstance(actual, (bool, np.bool_)) or not isinstance(actual, (numbers.Integral, np.integer)):
                raise Incorrect(f"{call} returned {actual!r}: return the batch size itself (an int from "
                                "`batch_sizes`), not its throughput.")
            if actual not in args[0]:
                raise Incorrect(f"{call} returned {actual}, which is not one of the batch sizes: return the batch "
                                "size at the best position, not the position.")
            if actual != expected:
                raise Incorrect(f"{call} returned batch {actual}; another batch serves more rows per second.")


class SplitRows(FunctionProblem):
    prompt = "split a batched output back into each request's own rows, in the order the requests were batched"
    vars = ("split_rows",)
    hints = ("Request i owns a run of consecutive rows of the batch: it starts where the rows of the requests "
             "before it end, and it is as long as that request's own row count.",
             "A running total of the row counts gives every request's end; its start is its end minus its own "
             "count. Slice the batch's first axis with them.")
    solution = """def split_rows(batch_output, rows_per_request):
    ends = np.cumsum(rows_per_request)
    return [batch_output[end - rows:end] for rows, end in zip(rows_per_request, ends)]"""

    def cases(self):
        rng = np.random.default_rng(14)
        batch = rng.standard_normal((9, 10)).astype(np.float32)
        labels = np.arange(12, dtype=np.int64).reshape(6, 2)
        raw = [(batch, [1, 3, 2, 3]), (batch[:4], [1, 1, 1, 1]), (labels, [4, 2]), (batch[:5], [5]),
               (labels, [2, 1, 3])]
        return [((output, rows), [output[sum(rows[:index]):sum(rows[:index + 1])] for index in range(len(rows))])
                for output, rows in raw]

    def describe_call(self, args):
        output, rows = args
        return f"`split_rows(<output of shape {output.shape}>, {list(rows)})`"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args)
            call = self.describe_call(args)
            if not isinstance(actual, (list, tuple)):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return a list with one array per "
                                "request.")
            if len(actual) != len(expected):
                raise Incorrect(f"{call} returned {len(actual)} arrays; there are {len(expected)} requests.")
            for index, (got, want) in enumerate(zip(actual, expected)):
                got = np.asarray(got)
                if got.shape != want.shape:
                    raise Incorrect(f"{call}: request {index} got rows of shape {got.shape}; it sent "
                                    f"{want.shape[0]} row(s), so expected shape {want.shape}.")
                if not np.array_equal(got, want):
                    raise Incorrect(f"{call}: request {index} got the right number of rows, but another request's "
                                    "rows. Start each request where the previous one ended.")


class LittlesLaw(FunctionProblem):
    prompt = "with Little's law, turn a closed-loop load's concurrency and mean latency into requests per second"
    vars = ("throughput_from_latency",)
    hints = ("Little's law: the average number of requests in the system equals the rate they arrive at times the "
             "average time each spends there. In a closed loop, the number in the system is the concurrency.",
             "Solve it for the rate. The latency is in milliseconds and the answer is per second.")
    solution = """def throughput_from_latency(concurrency, mean_latency_ms):
    return concurrency / (mean_latency_ms / 1000)"""
    rtol = 1e-9
    test_cases = [((1, 0.5), 2000.0), ((64, 11.2), 64 / 0.0112), ((8, 3.2), 2500.0), ((16, 250.0), 64.0)]

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args)
            call = self.describe_call(args)
            if not _is_number(actual):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return requests per second as a number.")
            concurrency, latency_ms = args
            if math.isclose(float(actual), expected / 1000, rel_tol=1e-6):
                raise Incorrect(f"{call} is per millisecond; the answer is per second.")
            if math.isclose(float(actual), 1000 / latency_ms, rel_tol=1e-6) and concurrency > 1:
                raise Incorrect(f"{call} is what one connection serves; {concurrency} connections each have a "
                                "request in flight.")
            if any(math.isclose(float(actual), concurrency * latency_ms * scale, rel_tol=1e-6) for scale in (1, 1e-3)):
                raise Incorrect(f"{call} multiplies concurrency by latency; Little's law gives the concurrency as "
                                "that product, so the rate is a quotient.")
            assert_equal(call, actual, expected, rtol=self.rtol)


class BucketQuantile(FunctionProblem):
    prompt = "estimate a quantile from a Prometheus histogram's cumulative buckets, as histogram_quantile does"
    vars = ("bucket_quantile",)
    hints = ("The counts are cumulative: bucket i holds every observation up to its bound. The q-quantile is the "
             "observation of rank q · total (the total is the last, +Inf, bucket's count).",
             "Find the first bucket whose count reaches that rank, then interpolate linearly between the bucket's "
             "lower bound (the previous bound, or 0 for the first bucket) and its upper bound, by how far the rank "
             "is into the bucket's own observations. If that bucket is +Inf, answer the largest finite bound.")
    solution = """def bucket_quantile(q, upper_bounds, cumulative_counts):
    rank = q * cumulative_counts[-1]
    lower, below = 0.0, 0.0
    for upper, count in zip(upper_bounds, cumulative_counts):
        if count >= rank:
            break
        lower, below = upper, count
    if upper == float("inf"):
        return lower
    return lower + (upper - lower) * (rank - below) / (count - below)"""
    rtol = 1e-9

    def cases(self):
        from labsupport.serving import Sample, histogram_quantile

        inf = float("inf")
        raw = [(0.5, [0.1, 0.2, 0.4, inf], [2, 6, 10, 10]),
               (0.9, [0.1, 0.2, 0.4, inf], [2, 6, 10, 10]),
               (0.1, [0.1, 0.2, 0.4, inf], [2, 6, 10, 10]),
               (0.99, [0.001, 0.0025, 0.005, 0.01, inf], [0, 40, 97, 100, 100]),
               (0.5, [0.001, 0.0025, 0.005, 0.01, inf], [0, 40, 97, 100, 100]),
               (0.99, [1.0, 2.0, inf], [1, 1, 4])]
        cases = []
        for q, bounds, counts in raw:
            samples = [Sample("h_bucket", {"le": "+Inf" if math.isinf(bound) else repr(bound)}, float(count))
                       for bound, count in zip(bounds, counts)]
            cases.append(((q, bounds, counts), histogram_quantile(q, samples, "h")))
        return cases

    def describe_call(self, args):
        q, bounds, counts = args
        return f"`bucket_quantile({q}, {bounds}, {counts})`"

    def check(self, fn):
        self.require_function(fn)
        for args, expected in self.cases():
            actual = self.call_answer(fn, args)
            call = self.describe_call(args)
            if not _is_number(actual):
                raise Incorrect(f"{call} returned a {type(actual).__name__}; return the estimate as a number.")
            q, bounds, counts = args
            if math.isinf(float(actual)):
                raise Incorrect(f"{call} is infinite: when the rank falls in the +Inf bucket, answer the largest "
                                "finite bound.")
            if float(actual) in bounds and not math.isclose(float(actual), expected, rel_tol=1e-9):
                raise Incorrect(f"{call} returned a bucket's bound; interpolate inside the bucket instead.")
            assert_equal(call, actual, expected, rtol=self.rtol)


class BoundedQueue(ThoughtExperiment):
    prompt = "why does the service answer 503 at once when its queue is full, instead of queueing every request?"
    solution = (
        "A queue longer than the server can drain only turns overload into latency: every request behind it waits "
        "for all the ones ahead, so under a burst the wait grows until clients time out — and a client that has "
        "timed out still costs the server its full work when its request finally runs. Memory grows without bound "
        "too. A bounded queue caps the worst wait at about (capacity ÷ throughput), keeps memory fixed, and tells "
        "the caller immediately that this replica is full, so a load balancer can send the request elsewhere or the "
        "client can back off and retry (the answer carries Retry-After). The 503s are counted in /metrics, which is "
        "the signal to add replicas. Size the queue from the latency objective: with throughput X and an objective "
        "of L seconds, about X·L requests may wait; more cannot meet the objective anyway.")


class RealCluster(ThoughtExperiment):
    prompt = "what changes when Ray Serve runs on a real cluster instead of this one machine?"
    solution = (
        "On a cluster, one head node runs Ray's control plane (the GCS, which holds the cluster's state, and Serve's "
        "controller) and every worker node runs a raylet that starts worker processes; replicas are placed on any "
        "node with free resources (CPUs, GPUs, memory), and Serve runs an HTTP proxy on each node (or one per "
        "cluster) behind an external load balancer. Requests cross the network twice (client to proxy, proxy to "
        "replica), which adds latency, so the model's own time should dominate. Autoscaling adds and removes "
        "replicas from the ongoing requests per replica (target_ongoing_requests, min/max_replicas), and the Ray "
        "autoscaler or KubeRay adds nodes when replicas do not fit. Failures become normal: a lost node's replicas "
        "are restarted elsewhere, and the head node needs fault tolerance. Security changes too: here everything "
        "stayed on 127.0.0.1, but on a cluster the nodes listen on network addresses, so the network must be "
        "private, token authentication and TLS matter, and the dashboard must not be exposed.")


class TritonAndKserve(ThoughtExperiment):
    prompt = "how would Triton Inference Server or KServe host this same model.onnx, and what would you configure?"
    solution = (
        "Triton: put the file in a model repository as digits/1/model.onnx with a digits/config.pbtxt naming "
        "platform onnxruntime_onnx, max_batch_size (inputs and outputs then list only the per-row dims, e.g. [64] and "
        "[10]), instance_group { count: 2 kind: KIND_CPU } for two model instances, and dynamic_batching with "
        "preferred_batch_size, max_queue_delay_microseconds (this lab's max wait) and default_queue_policy "
        "{ max_queue_size } (this lab's bounded queue, rejecting at once when full). Triton serves the KServe v2 "
        "protocol over HTTP and gRPC and Prometheus metrics, and its perf_analyzer and model_analyzer do this lab's "
        "load test and batch search. KServe: on Kubernetes, an InferenceService whose predictor has modelFormat onnx, "
        "protocolVersion v2 and a storageUri pointing at the folder holding model.onnx; KServe picks the Triton "
        "runtime, pulls the file, and adds request-based autoscaling (scale to zero if wanted), revisions and "
        "canary rollouts. The ONNX file is the same; only the server around it changes.")


class ChooseBatchSettings(ThoughtExperiment):
    prompt = "how do you choose max batch and max wait for a service with a p99 objective and a varying load?"
    solution = (
        "Start from the runtime: measure T(B) and take B* = argmax B / T(B), but cap the batch where T(B) alone "
        "would use too much of the latency budget; the max batch is that cap. The max wait is paid in full by a "
        "request that arrives alone, so at low load it adds directly to every latency: keep it a small fraction of "
        "the objective (and small next to T(1)), and accept that at low load batches are small, which is fine "
        "because the server has spare capacity then. At high load, batches fill before the wait runs out, so the "
        "wait costs nothing. Then verify under a closed-loop load at several concurrencies: p50, p99 and throughput "
        "against the objective, and the batch-size histogram to see which limit fires. Size the queue so that the "
        "worst wait (queue length ÷ throughput) stays within the objective, and scale out when 503s appear.")


PROBLEMS = {
    "q1": ThroughputOptimalBatch,
    "q2": SplitRows,
    "q3": LittlesLaw,
    "q4": BucketQuantile,
    "q5": BoundedQueue,
    "q6": RealCluster,
    "q7": TritonAndKserve,
    "q8": ChooseBatchSettings,
}
bind = make_binder(LAB, PROBLEMS)
