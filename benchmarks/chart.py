"""The chart: calls started in the rolling window before each call, over time, one line per
contender, the vendor's limit drawn as a line. Needs matplotlib; without it the harness
says so and goes on (install it with ``pip install matplotlib``).
"""

from __future__ import annotations

import bisect
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .measure import Row


def rolling_counts(arrivals: Sequence[float], window: float) -> list[int]:
    """For each arrival, the calls that arrived in the window ``(t - window, t]``."""
    times = sorted(arrivals)
    return [i + 1 - bisect.bisect_right(times, t - window) for i, t in enumerate(times)]


def draw(rows: Sequence[Row], path: Path, titles: dict[str, str]) -> str:
    """Draw every scenario with a per-window limit into ``path``; a line saying what was done."""
    charted = [r for r in rows if r.arrivals and r.window and r.limit and r.window <= 600]
    if not charted:
        return "chart: no rate-limited scenario in this run"
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)"
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    scenarios = sorted({r.scenario for r in charted})
    figure, axes = pyplot.subplots(len(scenarios), 1, figsize=(11, 3.6 * len(scenarios)), squeeze=False)
    for axis, scenario in zip(axes[:, 0], scenarios, strict=True):
        group = [r for r in charted if r.scenario == scenario]
        for row in group:
            assert row.window is not None
            minutes = [t / 60.0 for t in sorted(row.arrivals)]
            axis.step(minutes, rolling_counts(row.arrivals, row.window), where="post", label=row.contender,
                      linewidth=1.2)
        limit, window = group[0].limit, group[0].window
        axis.axhline(limit, color="red", linestyle="--", linewidth=1, label=f"limit: {limit} per {window:g} s")
        axis.set_title(titles.get(scenario, f"scenario {scenario}"))
        axis.set_xlabel("vendor time (minutes from the first call)")
        axis.set_ylabel(f"calls in the last {window:g} s")
        axis.legend(loc="lower right", fontsize="small")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return f"chart: {path}"
