"""Timing a callable the way a benchmark should: warm-up, repeats, percentiles, a confidence interval.

Introduced in lab 11 (labs 08–10 use it before lab 11 explains it). :func:`measure` calls ``fn()``
``warmup`` times without timing (first calls pay for allocation, caches and lazy initialisation),
then times ``repeats`` calls one by one with :func:`time.perf_counter_ns` (and keeps going until
``min_seconds`` of timed calls have passed, or stops early at ``max_seconds``). Garbage
collection is paused while timing, as :mod:`timeit` does, so a collection of unrelated objects
does not land in one sample.

The :class:`BenchResult` reports the latency percentiles p50/p95/p99 (numpy's default linear
interpolation), the mean with its 95 % confidence interval (Student's t on the mean of the
samples), the throughput ``batch_size / mean`` in items per second, and ``warnings``: plain
sentences saying when the numbers should not be trusted (too few repeats, too wide a spread,
an unwarmed first call, a run cut short by ``max_seconds``). Nothing here prints:
``to_text()`` and :func:`bench_table` return text, :func:`show_table` shows a markdown table
in JupyterLab. Time each runtime in its own block:
alternating calls of two runtimes inside one loop slows both (lab 11 measures it).
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BenchResult",
    "COLD_START_FACTOR",
    "MIN_REPEATS",
    "MAX_RELATIVE_CI",
    "bench_table",
    "measure",
    "progress",
    "show_table",
]

#: Fewer timed calls than this and p95/p99 are little more than the slowest one or two samples.
MIN_REPEATS = 20
#: Warn when the 95 % confidence interval's half-width exceeds this fraction of the mean.
MAX_RELATIVE_CI = 0.10
#: Warn when the first timed call is this many times the median: the warm-up was too short.
COLD_START_FACTOR = 5.0


def _t_quantile_975(degrees_of_freedom: int) -> float:
    """Student's t 0.975 quantile (the 95 % two-sided critical value) for ``degrees_of_freedom``."""
    from scipy.special import stdtrit

    return float(stdtrit(degrees_of_freedom, 0.975))


@dataclass
class BenchResult:
    """The timed calls of one :func:`measure` run and the statistics derived from them.

    Attributes:
        label: what was timed (shown in tables).
        times_ms: each timed call's duration in milliseconds, in call order.
        batch_size: items each call processes (used for the throughput).
        warmup: untimed calls made before timing.
        warnings: sentences saying why the numbers may be unreliable (empty when they look fine).
    """

    label: str
    times_ms: np.ndarray
    batch_size: int = 1
    warmup: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def repeats(self) -> int:
        """How many calls were timed."""
        return int(self.times_ms.size)

    @property
    def p50_ms(self) -> float:
        """Median latency: half the calls were faster."""
        return float(np.percentile(self.times_ms, 50))

    @property
    def p95_ms(self) -> float:
        """95th percentile latency: one call in twenty was slower."""
        return float(np.percentile(self.times_ms, 95))

    @property
    def p99_ms(self) -> float:
        """99th percentile latency: one call in a hundred was slower (needs ≥ 100 repeats to mean much)."""
        return float(np.percentile(self.times_ms, 99))

    @property
    def mean_ms(self) -> float:
        """Mean latency."""
        return float(self.times_ms.mean())

    @property
    def std_ms(self) -> float:
        """Sample standard deviation of the latencies (0 for a single call)."""
        return float(self.times_ms.std(ddof=1)) if self.repeats > 1 else 0.0

    @property
    def ci95_ms(self) -> tuple[float, float]:
        """95 % confidence interval of the mean: ``mean ± t(0.975, n-1) · std / √n``."""
        if self.repeats < 2:
            return (self.mean_ms, self.mean_ms) if self.repeats else (math.nan, math.nan)
        half_width = _t_quantile_975(self.repeats - 1) * self.std_ms / math.sqrt(self.repeats)
        return (self.mean_ms - half_width, self.mean_ms + half_width)

    @property
    def throughput_per_s(self) -> float:
        """Items per second: ``batch_size`` divided by the mean latency."""
        return self.batch_size / (self.mean_ms / 1000.0) if self.mean_ms > 0 else math.inf

    @classmethod
    def from_times(cls, times_ms: Sequence[float], *, batch_size: int = 1, label: str = "",
                   warmup: int = 0) -> BenchResult:
        """A result for times you took yourself (e.g. two runtimes timed in one loop), with its warnings."""
        result = cls(label=label, times_ms=np.asarray(times_ms, dtype=np.float64), batch_size=batch_size,
                     warmup=warmup)
        result.warnings = _warnings_for(result)
        return result

    def to_row(self) -> dict[str, Any]:
        """The statistics as one flat dict (a table row, a DataFrame record)."""
        low, high = self.ci95_ms
        return {
            "label": self.label,
            "batch_size": self.batch_size,
            "repeats": self.repeats,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "ci95_low_ms": low,
            "ci95_high_ms": high,
            "throughput_per_s": self.throughput_per_s,
            "warnings": len(self.warnings),
        }

    def to_text(self) -> str:
        """One summary line, followed by one ``warning:`` line per warning."""
        low, high = self.ci95_ms
        name = f"{self.label}: " if self.label else ""
        line = (
            f"{name}p50 {self.p50_ms:.3f} ms, p95 {self.p95_ms:.3f} ms, p99 {self.p99_ms:.3f} ms, "
            f"mean {self.mean_ms:.3f} ms (95% CI {low:.3f}–{high:.3f}), "
            f"{self.throughput_per_s:,.0f} items/s at batch {self.batch_size}, n={self.repeats}"
        )
        return "\n".join([line, *(f"  warning: {text}" for text in self.warnings)])

    def __str__(self) -> str:
        return self.to_text()

    def _repr_markdown_(self) -> str:
        return bench_table([self], markdown=True)


def _warnings_for(result: BenchResult) -> list[str]:
    """Why ``result``'s numbers may mislead, as sentences a learner can act on."""
    found = []
    if result.repeats < MIN_REPEATS:
        found.append(
            f"only {result.repeats} timed calls (fewer than {MIN_REPEATS}): p95/p99 are just the slowest "
            "samples; raise repeats"
        )
    if result.repeats >= 2:
        low, high = result.ci95_ms
        relative = (high - low) / 2 / result.mean_ms if result.mean_ms > 0 else 0.0
        if relative > MAX_RELATIVE_CI:
            found.append(
                f"spread too wide: the mean is only known to ±{relative * 100:.3g}% (limit ±{MAX_RELATIVE_CI:.0%}); "
                "raise repeats or quiet the machine"
            )
        if result.times_ms[0] > COLD_START_FACTOR * result.p50_ms:
            found.append(
                f"the first timed call took {result.times_ms[0] / result.p50_ms:.0f}× the median: the warm-up was "
                "too short (raise warmup) or the machine had a hiccup"
            )
    return found


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 5,
    repeats: int = 50,
    batch_size: int = 1,
    label: str = "",
    min_seconds: float = 0.0,
    max_seconds: float | None = None,
) -> BenchResult:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``repeats`` timed ones.

    Args:
        fn: a callable taking no arguments; bind inputs with a lambda or :func:`functools.partial`.
        warmup: calls made before timing starts.
        repeats: the minimum number of timed calls.
        batch_size: items one call processes, for ``throughput_per_s``.
        label: a name for tables.
        min_seconds: keep timing past ``repeats`` until this much time has been spent in timed calls.
        max_seconds: stop timing once this much time has been spent in timed calls, even before
            ``repeats`` (at least one call is timed); the result then says so in its warnings. A cap
            for a busy machine, where a call that usually takes microseconds can take milliseconds.

    Returns:
        A :class:`BenchResult` with the per-call times and the warnings that apply to them.

    Raises:
        ValueError: when ``warmup`` or ``repeats`` is negative or ``repeats`` is 0.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"measure needs warmup >= 0 and repeats >= 1 (got warmup={warmup}, repeats={repeats})")
    for _ in range(warmup):
        fn()
    times_ns: list[int] = []
    max_ns = math.inf if max_seconds is None else max_seconds * 1e9
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        spent_ns, min_ns = 0, int(min_seconds * 1e9)
        while (len(times_ns) < repeats or spent_ns < min_ns) and not (times_ns and spent_ns >= max_ns):
            start = time.perf_counter_ns()
            fn()
            elapsed = time.perf_counter_ns() - start
            times_ns.append(elapsed)
            spent_ns += elapsed
    finally:
        if gc_was_enabled:
            gc.enable()
    result = BenchResult.from_times(np.asarray(times_ns, dtype=np.float64) / 1e6, batch_size=batch_size, label=label,
                                    warmup=warmup)
    if len(times_ns) < repeats:
        result.warnings.append(f"stopped at the {max_seconds:g} s limit after {len(times_ns)} of {repeats} timed calls")
    return result


_COLUMNS = (
    ("label", "label", "{}"),
    ("batch", "batch_size", "{}"),
    ("n", "repeats", "{}"),
    ("p50 ms", "p50_ms", "{:.3f}"),
    ("p95 ms", "p95_ms", "{:.3f}"),
    ("p99 ms", "p99_ms", "{:.3f}"),
    ("mean ms", "mean_ms", "{:.3f}"),
    ("95% CI ms", None, None),
    ("items/s", "throughput_per_s", "{:,.0f}"),
    ("warnings", "warnings", "{}"),
)


def _cells(result: BenchResult) -> list[str]:
    row = result.to_row()
    cells = []
    for _, key, form in _COLUMNS:
        if key is None:
            cells.append(f"{row['ci95_low_ms']:.3f}–{row['ci95_high_ms']:.3f}")
        else:
            cells.append(form.format(row[key]))
    return cells


def bench_table(results: Sequence[BenchResult], *, markdown: bool = False) -> str:
    """The results as a table: aligned plain text, or a markdown table with ``markdown=True``.

    Each result's warnings follow the table as ``label at batch N: warning`` lines, so a table never hides them.
    """
    headers = [name for name, _, _ in _COLUMNS]
    rows = [_cells(result) for result in results]
    notes = [f"{result.label or '(unlabelled)'} at batch {result.batch_size}: {text}"
             for result in results for text in result.warnings]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        if notes:
            lines += ["", *(f"- ⚠️ warning: {note}" for note in notes)]
        return "\n".join(lines)
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [headers, *rows]]
    lines += [f"warning: {note}" for note in notes]
    return "\n".join(lines)


def show_table(results: Sequence[BenchResult]) -> None:
    """Show :func:`bench_table` as markdown in JupyterLab, as plain text in a console."""
    from labsupport.display import show

    show(bench_table(results, markdown=True), bench_table(results))


def progress(iterable: Iterable, *, desc: str = "", total: int | None = None) -> Iterable:
    """Wrap a loop a learner waits for (a sweep, a series of benchmarks) in a ``tqdm.auto`` progress bar.

    With ipywidgets installed, ``tqdm.auto`` draws a widget in JupyterLab. The course environment
    does not pin ipywidgets, so it falls back to the text bar, and its import warns
    "IProgress not found" on stderr: that warning is silenced here, because the text bar is what
    we want. The text bar goes to **stdout** (tqdm's default is stderr), so a notebook run shows
    it as ordinary output. ``mininterval`` keeps redraws rare, so the bar costs nothing
    measurable next to the work it reports.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stdout, mininterval=0.5, leave=True)
