"""Lab 11's exercises: reference answers pass, realistic wrong answers fail, blanks are not attempted.

The reference answers come from each problem's declared solution (``solution_answer``), so the
code learners are shown is the code proven to pass. The same-model helpers (ONNX graph and Keras
twin from the PyTorch weights) are tested for parity here too; the Keras one imports TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime
import pytest
import torch

from labsupport.checking import ____
from labsupport.exercises import lab11
from labsupport.testing import assert_check_failed, assert_check_passed, assert_check_unattempted, solution_answer

# ---------------------------------------------------------------------------
# Reference helpers: one model, three runtimes
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn():
    return lab11.digits_cnn()


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)


def test_the_onnx_graph_computes_what_the_pytorch_cnn_computes(cnn, pixels, tmp_path):
    path = lab11.save_digits_cnn_onnx(cnn, tmp_path / "cnn.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = cnn(torch.from_numpy(pixels)).numpy()
    assert np.allclose(session.run(None, {"pixels": pixels})[0], expected, atol=1e-5)
    assert [node.op_type for node in lab11.digits_cnn_onnx(cnn).graph.node] == [
        "Conv", "Relu", "MaxPool", "Conv", "Relu", "Flatten", "Gemm"]


def test_the_keras_twin_holds_the_same_weights_in_channels_last_layout(cnn, pixels):
    twin = lab11.keras_twin(cnn)
    with torch.inference_mode():
        expected = cnn(torch.from_numpy(pixels)).numpy()
    actual = np.asarray(twin(pixels.transpose(0, 2, 3, 1), training=False))
    assert np.allclose(actual, expected, atol=1e-5)


# ---------------------------------------------------------------------------
# q1 Percentile
# ---------------------------------------------------------------------------

def test_percentile_reference_passes():
    assert_check_passed(lab11.Percentile, {"percentile": solution_answer(lab11.Percentile)})


def test_percentile_with_nearest_rank_instead_of_interpolation_fails():
    def nearest_rank(times_ms, q):
        ordered = sorted(times_ms)
        return float(ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)])

    assert_check_failed(lab11.Percentile, {"percentile": nearest_rank}, "`percentile(<")


def test_percentile_without_sorting_fails():
    def unsorted(times_ms, q):
        position = (len(times_ms) - 1) * q / 100
        below = int(position)
        above = min(below + 1, len(times_ms) - 1)
        return float(times_ms[below] + (position - below) * (times_ms[above] - times_ms[below]))

    assert_check_failed(lab11.Percentile, {"percentile": unsorted}, "`percentile(<5 timings>, 50)`")


def test_percentile_position_n_times_q_instead_of_n_minus_one_fails_or_crashes():
    def off_by_one(times_ms, q):
        ordered = np.sort(times_ms)
        position = len(ordered) * q / 100
        below = int(position)
        above = min(below + 1, len(ordered) - 1)
        return float(ordered[below] + (position - below) * (ordered[above] - ordered[below]))

    assert_check_failed(lab11.Percentile, {"percentile": off_by_one}, "`percentile(<")


def test_percentile_calling_numpy_is_told_to_compute_it_and_numpy_is_restored():
    assert_check_failed(lab11.Percentile, {"percentile": lambda times_ms, q: float(np.percentile(times_ms, q))},
                        "compute the percentile from the sorted timings yourself")
    assert np.percentile([1.0, 3.0], 50) == 2.0 and np.quantile([1.0, 3.0], 0.5) == 2.0


def test_percentile_placeholder_is_not_attempted():
    assert_check_unattempted(lab11.Percentile)
    assert_check_unattempted(lab11.Percentile, {"percentile": lambda times_ms, q: ____})


# ---------------------------------------------------------------------------
# q2 BestBatch
# ---------------------------------------------------------------------------

def test_best_batch_reference_passes():
    assert_check_passed(lab11.BestBatch, {"best_batch": solution_answer(lab11.BestBatch)})


def test_best_batch_picking_the_lowest_latency_fails():
    def fastest(batch_sizes, latencies_ms, budget_ms):
        return batch_sizes[int(np.argmin(latencies_ms))]

    assert_check_failed(lab11.BestBatch, {"best_batch": fastest}, "with no budget returned batch")


def test_best_batch_picking_the_largest_batch_within_budget_fails():
    def largest(batch_sizes, latencies_ms, budget_ms):
        return max(batch for batch, latency in zip(batch_sizes, latencies_ms) if latency <= budget_ms)

    assert_check_failed(lab11.BestBatch, {"best_batch": largest}, "with no budget returned batch")


def test_best_batch_ignoring_the_budget_is_told_so():
    def no_budget(batch_sizes, latencies_ms, budget_ms):
        return batch_sizes[int(np.argmax(np.array(batch_sizes) / np.array(latencies_ms)))]

    assert_check_failed(lab11.BestBatch, {"best_batch": no_budget}, "is over the budget")


def test_best_batch_returning_the_throughput_or_an_index_is_told_to_return_the_batch():
    def throughput(batch_sizes, latencies_ms, budget_ms):
        return max(batch / (latency / 1000) for batch, latency in zip(batch_sizes, latencies_ms)
                   if latency <= budget_ms)

    def position(batch_sizes, latencies_ms, budget_ms):
        return int(np.argmax(np.array(batch_sizes) / np.array(latencies_ms)))

    assert_check_failed(lab11.BestBatch, {"best_batch": throughput}, "return the batch size itself")
    assert_check_failed(lab11.BestBatch, {"best_batch": position}, "which is not one of the batch sizes")


def test_best_batch_with_a_strict_budget_comparison_returns_none_at_the_edge():
    def strict(batch_sizes, latencies_ms, budget_ms):
        rows = [(batch / latency, batch) for batch, latency in zip(batch_sizes, latencies_ms) if latency < budget_ms]
        return max(rows)[1] if rows else None

    assert_check_failed(lab11.BestBatch, {"best_batch": strict}, "returned None")


def test_best_batch_placeholder_is_not_attempted():
    assert_check_unattempted(lab11.BestBatch)


# ---------------------------------------------------------------------------
# q3 OperatorTotals
# ---------------------------------------------------------------------------

def test_operator_totals_reference_passes():
    assert_check_passed(lab11.OperatorTotals, {"operator_totals": solution_answer(lab11.OperatorTotals)})


def test_operator_totals_grouped_by_node_name_fails():
    def by_name(events):
        totals = {}
        for event in events:
            if event["cat"] == "Node":
                totals[event["name"]] = totals.get(event["name"], 0) + event["dur"]
        return totals

    assert_check_failed(lab11.OperatorTotals, {"operator_totals": by_name}, "those are node names")


def test_operator_totals_including_session_events_fails():
    def everything(events):
        totals = {}
        for event in events:
            key = event["args"].get("op_name", event["name"])
            totals[key] = totals.get(key, 0) + event["dur"]
        return totals

    assert_check_failed(lab11.OperatorTotals, {"operator_totals": everything}, "keep only the events of category")


def test_operator_totals_counting_events_instead_of_time_fails():
    def counts(events):
        totals = {}
        for event in events:
            if event["cat"] == "Node":
                totals[event["args"]["op_name"]] = totals.get(event["args"]["op_name"], 0) + 1
        return totals

    assert_check_failed(lab11.OperatorTotals, {"operator_totals": counts}, "is too small")


def test_operator_totals_returning_a_list_is_told_to_return_a_dict():
    def pairs(events):
        return [(event["args"]["op_name"], event["dur"]) for event in events if event["cat"] == "Node"]

    assert_check_failed(lab11.OperatorTotals, {"operator_totals": pairs}, "return a dict from operator type")


def test_operator_totals_placeholder_is_not_attempted():
    assert_check_unattempted(lab11.OperatorTotals)


# ---------------------------------------------------------------------------
# q4 ConvFlops
# ---------------------------------------------------------------------------

def test_conv_flops_reference_passes_and_matches_the_graph_count():
    answer = solution_answer(lab11.ConvFlops)
    assert answer == lab11.conv2_flops_reference(64)
    assert_check_passed(lab11.ConvFlops, {"conv2_flops": answer})


@pytest.mark.parametrize("wrong, fragment", [
    (64 * 16 * 4 * 4 * 8 * 3 * 3, "multiply–adds (MACs)"),
    (2 * 64 * 16 * 8 * 8 * 8 * 3 * 3, "after the 2 × 2 max-pool"),
    (2 * 64 * 16 * 4 * 4 * 16 * 3 * 3, "sums over 16 input channels"),
    (2 * 64 * 16 * 4 * 4 * 3 * 3, "leaves out the input channels"),
    (2 * 64 * 4 * 4 * 8 * 3 * 3, "leaves out the output channels"),
    (2 * 16 * 4 * 4 * 8 * 3 * 3, "for one image"),
    (2 * 64 * 16 * 4 * 4 * 8 * 3, "is too small"),
    ("2359296", "should be a number"),
])
def test_conv_flops_wrong_answers_are_explained(wrong, fragment):
    assert_check_failed(lab11.ConvFlops, {"conv2_flops": wrong}, fragment)


def test_conv_flops_placeholder_is_not_attempted():
    assert_check_unattempted(lab11.ConvFlops)


# ---------------------------------------------------------------------------
# q5 FractionOfPeak
# ---------------------------------------------------------------------------

def test_fraction_of_peak_reference_passes():
    assert_check_passed(lab11.FractionOfPeak, {"fraction_of_peak": solution_answer(lab11.FractionOfPeak)})


@pytest.mark.parametrize("wrong, fragment", [
    (lambda flops, latency_ms, peak: flops / latency_ms / peak, "1000 times too small: the latency is in milliseconds"),
    (lambda flops, latency_ms, peak: flops / (latency_ms * 1000) / peak, "a million times too small"),
    (lambda flops, latency_ms, peak: 100 * flops / (latency_ms / 1000) / peak, "is a percentage"),
    (lambda flops, latency_ms, peak: peak / (flops / (latency_ms / 1000)), "upside down"),
    (lambda flops, latency_ms, peak: flops / (latency_ms / 1000) / 1e9, "is too large"),
    (lambda flops, latency_ms, peak: f"{flops / (latency_ms / 1000) / peak:.1%}", "return the fraction as a number"),
])
def test_fraction_of_peak_wrong_answers_are_explained(wrong, fragment):
    assert_check_failed(lab11.FractionOfPeak, {"fraction_of_peak": wrong}, fragment)


def test_fraction_of_peak_messages_name_the_call():
    assert_check_failed(lab11.FractionOfPeak, {"fraction_of_peak": lambda flops, latency_ms, peak: 0.5},
                        "`fraction_of_peak(3.2768e+06, 0.1423, 7.1e+10)`")


def test_fraction_of_peak_placeholder_is_not_attempted():
    assert_check_unattempted(lab11.FractionOfPeak)
