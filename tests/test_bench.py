"""labsupport.bench: statistics on known samples, and measure() driven by a scripted clock."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest

from labsupport import bench
from labsupport.bench import BenchResult, bench_table, measure, progress


def result_of(times_ms, *, batch_size=1, label="model"):
    return BenchResult.from_times(times_ms, batch_size=batch_size, label=label)


@pytest.fixture
def scripted_clock(monkeypatch):
    """perf_counter_ns returns start/stop pairs so that timed call i lasts durations_ms[i]."""

    def install(durations_ms):
        ticks = []
        now = 0
        for duration in durations_ms:
            ticks += [now, now + int(duration * 1e6)]
            now += int(duration * 1e6) + 1000
        clock = iter(ticks)
        monkeypatch.setattr(bench.time, "perf_counter_ns", lambda: next(clock))

    return install


# Statistics

def test_percentiles_use_linear_interpolation_between_sorted_samples():
    result = result_of(np.arange(1, 101))  # 1..100 ms
    assert result.p50_ms == pytest.approx(50.5)
    assert result.p95_ms == pytest.approx(95.05)
    assert result.p99_ms == pytest.approx(99.01)


def test_mean_confidence_interval_is_student_t_on_the_mean():
    times = [10.0, 12.0, 11.0, 13.0, 9.0]
    result = result_of(times)
    half_width = 2.7764451051977987 * np.std(times, ddof=1) / math.sqrt(5)  # t(0.975, 4)
    assert result.ci95_ms == pytest.approx((11.0 - half_width, 11.0 + half_width))


def test_confidence_interval_narrows_with_more_samples_of_the_same_spread():
    rng = np.random.default_rng(0)
    few = result_of(10 + rng.standard_normal(20))
    many = result_of(10 + rng.standard_normal(2000))
    assert np.diff(many.ci95_ms)[0] < np.diff(few.ci95_ms)[0] / 5


def test_throughput_is_batch_size_over_mean_latency():
    assert result_of([4.0, 4.0, 4.0], batch_size=64).throughput_per_s == pytest.approx(64 / 0.004)


def test_single_sample_has_a_degenerate_interval_and_zero_spread():
    result = result_of([3.0])
    assert result.ci95_ms == (3.0, 3.0) and result.std_ms == 0.0


# Warnings

def test_few_repeats_are_warned_about():
    assert any("only 5 timed calls" in text for text in result_of([1.0] * 5).warnings)


def test_enough_steady_repeats_give_no_warning():
    assert result_of(np.full(50, 2.0) + np.linspace(0, 0.01, 50)).warnings == []


def test_wide_spread_is_warned_about_with_its_relative_half_width():
    rng = np.random.default_rng(1)
    noisy = result_of(rng.exponential(5.0, 30) + 0.1)
    assert any(text.startswith("spread too wide") for text in noisy.warnings)


def test_cold_first_call_is_warned_about():
    result = result_of([50.0] + [1.0] * 40)
    assert any("first timed call took 50×" in text for text in result.warnings)


# measure()

def test_measure_warms_up_without_timing_then_times_each_call(scripted_clock):
    calls = []
    scripted_clock([2.0, 4.0, 6.0])
    result = measure(lambda: calls.append(1), warmup=4, repeats=3, batch_size=8, label="fake")
    assert len(calls) == 7
    assert result.times_ms.tolist() == [2.0, 4.0, 6.0]
    assert (result.label, result.batch_size, result.warmup, result.repeats) == ("fake", 8, 4, 3)
    assert result.throughput_per_s == pytest.approx(8 / 0.004)


def test_measure_keeps_timing_until_min_seconds_have_passed(scripted_clock):
    scripted_clock([100.0] * 20)
    result = measure(lambda: None, warmup=0, repeats=2, min_seconds=0.45)
    assert result.repeats == 5


def test_measure_stops_at_max_seconds_and_says_so(scripted_clock):
    scripted_clock([100.0] * 20)
    result = measure(lambda: None, warmup=0, repeats=10, max_seconds=0.25)
    assert result.repeats == 3
    assert "stopped at the 0.25 s limit after 3 of 10 timed calls" in result.warnings


def test_measure_times_at_least_one_call_even_past_max_seconds(scripted_clock):
    scripted_clock([500.0] * 3)
    assert measure(lambda: None, warmup=0, repeats=5, max_seconds=0.1).repeats == 1


def test_measure_within_max_seconds_has_no_limit_warning(scripted_clock):
    scripted_clock([1.0] * 30)
    result = measure(lambda: None, warmup=0, repeats=30, max_seconds=10)
    assert result.repeats == 30 and not any("limit" in text for text in result.warnings)


def test_measure_pauses_garbage_collection_only_while_timing():
    import gc

    seen = []
    result = measure(lambda: seen.append(gc.isenabled()), warmup=1, repeats=3)
    assert seen == [True, False, False, False] and gc.isenabled() and result.repeats == 3


def test_measure_rejects_zero_repeats_with_the_values_given():
    with pytest.raises(ValueError, match="repeats=0"):
        measure(lambda: None, repeats=0)


def test_measure_times_real_work_in_milliseconds():
    import time

    result = measure(lambda: time.sleep(0.002), warmup=1, repeats=5)
    assert 1.5 < result.p50_ms < 50


def test_results_from_your_own_times_get_the_same_warnings_as_measured_ones():
    result = BenchResult.from_times([4.0, 1.0, 1.0], batch_size=2, label="interleaved", warmup=3)
    assert (result.label, result.batch_size, result.warmup, result.repeats) == ("interleaved", 2, 3, 3)
    assert result.times_ms.dtype == np.float64 and any("only 3 timed calls" in text for text in result.warnings)


# Text and tables

def test_to_row_has_every_statistic_by_name():
    row = result_of([1.0, 2.0, 3.0], batch_size=2).to_row()
    assert set(row) == {"label", "batch_size", "repeats", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "ci95_low_ms",
                        "ci95_high_ms", "throughput_per_s", "warnings"}
    assert row["mean_ms"] == 2.0 and row["warnings"] == 2  # too few, and too wide a spread


def test_to_text_is_one_line_then_one_line_per_warning():
    lines = result_of([1.0] * 5, label="ort").to_text().splitlines()
    assert lines[0].startswith("ort: p50 1.000 ms") and "n=5" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("  warning: only 5")


def test_bench_table_aligns_rows_and_lists_warnings_after_them():
    text = bench_table([result_of([1.0] * 30, label="a"), result_of([2.0] * 5, label="bb", batch_size=64)])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["label", "batch", "n"]
    assert lines[2].split()[:3] == ["bb", "64", "5"]
    assert lines[-1].startswith("warning: bb at batch 64: only 5")


def test_bench_table_as_markdown_has_a_header_rule_and_one_row_per_result():
    lines = bench_table([result_of([1.0] * 30, label="a")], markdown=True).splitlines()
    assert lines[0].startswith("| label |") and lines[1].startswith("|---") and lines[2].startswith("| a | 1 | 30 |")


# Progress bar

def test_progress_bar_writes_to_stdout_not_stderr(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress(range(3), desc="sweep")) == [0, 1, 2]
    assert "sweep" in out.getvalue() and err.getvalue() == ""
