"""Lab 14's exercises: reference answers pass, realistic wrong answers fail, blanks are not attempted.

The reference answers come from each problem's declared solution (``solution_answer``), so the
code learners are shown is the code proven to pass. The served model is checked here too: its
interface, its size and its dynamic batch axis are what the lab's prose says they are.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime
import pytest

from labsupport.checking import ____
from labsupport.exercises import lab14
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer

# ---------------------------------------------------------------------------
# The served model
# ---------------------------------------------------------------------------


def test_the_served_mlp_has_the_interface_and_size_the_lab_describes(tmp_path):
    path = lab14.save_serving_mlp(tmp_path / "mlp.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [node.op_type for node in model.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    weights = sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer)
    assert 4_300_000 < weights < 4_400_000
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for rows in (1, 7):
        pixels = np.random.default_rng(rows).random((rows, 64), dtype=np.float32)
        (logits,) = session.run(None, {lab14.SERVING_INPUT: pixels})
        assert logits.shape == (rows, 10) and np.isfinite(logits).all() and logits.std() > 0.1
    assert onnx.load(lab14.save_serving_mlp(tmp_path / "again.onnx")) == model


# ---------------------------------------------------------------------------
# q1 ThroughputOptimalBatch
# ---------------------------------------------------------------------------

def test_throughput_optimal_batch_reference_passes():
    answer = solution_answer(lab14.ThroughputOptimalBatch)
    assert_check_passed(lab14.ThroughputOptimalBatch, {"throughput_optimal_batch": answer})


@pytest.mark.parametrize("wrong, fragment", [
    (lambda batch_sizes, latencies_ms: batch_sizes[int(np.argmin(latencies_ms))], "another batch serves more rows"),
    (lambda batch_sizes, latencies_ms: max(batch_sizes), "another batch serves more rows"),
    (lambda batch_sizes, latencies_ms: int(np.argmax(np.asarray(batch_sizes) / np.asarray(latencies_ms))),
     "which is not one of the batch sizes"),
    (lambda batch_sizes, latencies_ms: float(np.max(np.asarray(batch_sizes) / np.asarray(latencies_ms))),
     "return the batch size itself"),
    (lambda batch_sizes, latencies_ms: batch_sizes[int(np.argmax(np.asarray(latencies_ms) / batch_sizes))],
     "another batch serves more rows"),
])
def test_throughput_optimal_batch_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab14.ThroughputOptimalBatch, {"throughput_optimal_batch": wrong}, fragment)


def test_throughput_optimal_batch_placeholder_is_not_attempted():
    assert_check_unattempted(lab14.ThroughputOptimalBatch)
    assert_check_unattempted(lab14.ThroughputOptimalBatch, {"throughput_optimal_batch": lambda *args: ____})


# ---------------------------------------------------------------------------
# q2 SplitRows
# ---------------------------------------------------------------------------

def test_split_rows_reference_passes():
    assert_check_passed(lab14.SplitRows, {"split_rows": solution_answer(lab14.SplitRows)})


def test_split_rows_into_equal_parts_fails():
    def equal_parts(batch_output, rows_per_request):
        return np.array_split(batch_output, len(rows_per_request))

    assert_check_failed(lab14.SplitRows, {"split_rows": equal_parts}, "request 0 got rows of shape (3, 10)")


def test_split_rows_starting_every_request_at_its_index_fails():
    def by_index(batch_output, rows_per_request):
        return [batch_output[index:index + rows] for index, rows in enumerate(rows_per_request)]

    assert_check_failed(lab14.SplitRows, {"split_rows": by_index}, "but another request's rows")


def test_split_rows_one_row_per_request_fails():
    def one_each(batch_output, rows_per_request):
        return [batch_output[index] for index in range(len(rows_per_request))]

    assert_check_failed(lab14.SplitRows, {"split_rows": one_each}, "expected shape (1, 10)")


def test_split_rows_returning_the_whole_batch_is_told_to_return_a_list():
    assert_check_failed(lab14.SplitRows, {"split_rows": lambda batch_output, rows: batch_output}, "return a list")


def test_split_rows_placeholder_is_not_attempted():
    assert_check_unattempted(lab14.SplitRows)


# ---------------------------------------------------------------------------
# q3 LittlesLaw
# ---------------------------------------------------------------------------

def test_littles_law_reference_passes():
    assert_check_passed(lab14.LittlesLaw, {"throughput_from_latency": solution_answer(lab14.LittlesLaw)})


@pytest.mark.parametrize("wrong, fragment", [
    (lambda concurrency, mean_latency_ms: concurrency / mean_latency_ms, "is per millisecond"),
    (lambda concurrency, mean_latency_ms: 1000 / mean_latency_ms, "is what one connection serves"),
    (lambda concurrency, mean_latency_ms: concurrency * mean_latency_ms, "multiplies concurrency by latency"),
    (lambda concurrency, mean_latency_ms: concurrency * mean_latency_ms / 1000, "multiplies concurrency by latency"),
    (lambda concurrency, mean_latency_ms: f"{concurrency / mean_latency_ms * 1000:.0f} req/s", "as a number"),
    (lambda concurrency, mean_latency_ms: (concurrency + 1) / (mean_latency_ms / 1000), "is too large"),
])
def test_littles_law_wrong_answers_are_reported(wrong, fragment):
    assert_check_failed(lab14.LittlesLaw, {"throughput_from_latency": wrong}, fragment)


def test_littles_law_placeholder_is_not_attempted():
    assert_check_unattempted(lab14.LittlesLaw)


# ---------------------------------------------------------------------------
# q4 BucketQuantile
# ---------------------------------------------------------------------------

def test_bucket_quantile_reference_passes():
    assert_check_passed(lab14.BucketQuantile, {"bucket_quantile": solution_answer(lab14.BucketQuantile)})


def test_bucket_quantile_without_interpolation_fails():
    def upper_bound(q, upper_bounds, cumulative_counts):
        rank = q * cumulative_counts[-1]
        finite = [bound for bound in upper_bounds if not math.isinf(bound)]
        return next(min(bound, finite[-1]) for bound, count in zip(upper_bounds, cumulative_counts) if count >= rank)

    assert_check_failed(lab14.BucketQuantile, {"bucket_quantile": upper_bound}, "interpolate inside the bucket")


def test_bucket_quantile_reading_counts_as_per_bucket_fails():
    def per_bucket(q, upper_bounds, cumulative_counts):
        running = np.cumsum(cumulative_counts)
        rank = q * running[-1]
        lower, below = 0.0, 0.0
        for upper, count in zip(upper_bounds, running):
            if count >= rank:
                return lower if math.isinf(upper) else lower + (upper - lower) * (rank - below) / (count - below)
            lower, below = upper, count

    assert_check_failed(lab14.BucketQuantile, {"bucket_quantile": per_bucket}, "`bucket_quantile(0.5")


def test_bucket_quantile_answering_inf_in_the_last_bucket_is_told_the_rule():
    def keeps_inf(q, upper_bounds, cumulative_counts):
        rank = q * cumulative_counts[-1]
        lower, below = 0.0, 0.0
        for upper, count in zip(upper_bounds, cumulative_counts):
            if count >= rank:
                return upper if math.isinf(upper) else lower + (upper - lower) * (rank - below) / (count - below)
            lower, below = upper, count

    assert_check_failed(lab14.BucketQuantile, {"bucket_quantile": keeps_inf}, "answer the largest finite bound")


def test_bucket_quantile_placeholder_is_not_attempted():
    assert_check_unattempted(lab14.BucketQuantile)


# ---------------------------------------------------------------------------
# Without a C++ toolchain
# ---------------------------------------------------------------------------

def test_a_missing_toolchain_fails_under_ci_and_is_explained_elsewhere(monkeypatch, capsys):
    from labsupport.native import NativeToolchainError

    error = NativeToolchainError("cmake is not installed; install it with `apt-get install cmake`")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(NativeToolchainError, match="cmake is not installed"):
        lab14.explain_missing(error)
    monkeypatch.delenv("CI")
    assert lab14.explain_missing(error) is None
    assert "apt-get install cmake" in capsys.readouterr().out
