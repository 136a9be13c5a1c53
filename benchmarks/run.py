"""The one command: run every scenario against the project's mocks and print the table.

    .venv/bin/python -m benchmarks.run            # the full run, a few minutes
    .venv/bin/python -m benchmarks.run --quick    # everything tiny, well under a minute
    .venv/bin/python -m benchmarks.run --only 1,5 # some scenarios
    .venv/bin/python -m benchmarks.run --plain-wire  # the mocks' answers in one piece

The mocks write every answer as real vendors' arrive: gzip, chunked, in pieces
(:data:`benchmarks.mockproc.FRAGMENTED`), unless ``--plain-wire``.

Every case (one contender of one scenario) runs in its own process, and its mock in another
(:mod:`benchmarks.mockproc`), so each peak RSS is its own and no state leaks between cases.
The contenders of a rate-limited scenario run side by side (they wait on their vendor's
clock, not on the CPU); the CPU-bound scenarios 5 and 6 run one case at a time. The table
is printed as markdown, saved with every figure as JSON under ``benchmarks/results/``
(git-ignored), and drawn as a PNG when matplotlib is installed.

Goals are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from unenroll.cli.plugins import PluginError, vendors

from . import chart
from .measure import Row, machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

TITLES = {
    "1": "1 Zoho",
    "2": "2 Zoho, faults",
    "3": "3 SmarterU",
    "4": "4 Docebo",
    "5": "5 overhead",
    "6": "6 growth",
    "7": "7 shared quota",
    "8": "8 learning",
}
CHART_TITLES = {
    "1": "Zoho batch unenroll",
    "2": "Zoho with 5% 5xx, 1% dropped connections, 2% not enrolled",
    "3": "SmarterU, the mock's 429 limit on",
}
ALL_SCENARIOS = ("1", "2", "3", "4", "5", "6", "7", "8")
# the vendor plugin whose adapter and mock each scenario drives (5 and 6: the loopback cases' Zoho mock)
SCENARIO_VENDORS = {"1": "zoho", "2": "zoho", "3": "smarteru", "4": "docebo", "5": "zoho", "6": "zoho", "7": "zoho",
                    "8": "smarteru"}

# goals (printed, never asserted)
S1_EFFICIENCY, S2_EFFICIENCY, S4_BUSY = 0.98, 0.90, 0.97
S5_IN_PROCESS, S5_LOOPBACK, S5_RSS_MB, S5_RSS_AT = 300_000, 150_000, 200.0, 1_000_000
S6_LINEAR, S6_FLAT = 1.25, 1.10  # time per item, peak RSS: largest size over the reference size
S7_SHARED = 0.95  # combined efficiency at every N over the single process's, through a shared store
S7_PROCESSES, S7_PROCESSES_QUICK = (1, 2, 4, 8), (1, 2, 4)
S8_FIRST, S8_FIRST_THROTTLES, S8_SECOND, S8_SECOND_THROTTLES = 0.90, 10, 0.95, 2


@dataclass(frozen=True)
class Case:
    """One contender of one scenario, run in its own process."""

    scenario: str
    contender: str
    kind: str  # what :func:`run_case` runs
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return f"{self.scenario}-{self.contender}".replace(" ", "-").replace(",", "")


# -- the plan ---------------------------------------------------------------------------


def plan(quick: bool, only: Sequence[str], fragmented: bool = True) -> list[list[Case]]:
    """Groups of cases; the cases of a group run side by side, groups one after another.
    ``fragmented``: the mocks' answers gzip, chunked, in pieces (else in one piece)."""
    groups: list[list[Case]] = []
    if quick:
        zoho: dict[str, Any] = {"items": 6_000, "batches": 2, "time_scale": 0.01, "one_by_one_cap": 10,
                                "deadline": 600.0}
        smarteru: dict[str, Any] = {"items": 6_500, "time_scale": 0.01}
        docebo: dict[str, Any] = {"pairs": 20_000, "courses": 4, "time_scale": 0.01}
        sizes = (2_000, 5_000, 20_000)
    else:
        # time_scale 0.05: a 60 s window lasts 3 s. The adapters' own margins: the limiter counts
        # each window from an answer, so network and CPU delays need no margin of ours
        zoho = {"items": 60_000, "batches": 20, "time_scale": 0.05, "one_by_one_cap": 120, "deadline": 2_400.0}
        smarteru = {"items": 50_000, "time_scale": 0.05}
        # 0.1: a call of 1,000 users lasts about 0.46 s; the milliseconds between calls are CPU and
        # are not scaled, so they weigh ten times what they would at the vendor's pace
        docebo = {"pairs": 200_000, "courses": 20, "time_scale": 0.1}
        sizes = (10_000, 100_000, 1_000_000)
    zoho, smarteru, docebo = (params | {"fragmented": fragmented} for params in (zoho, smarteru, docebo))
    wire = {"fragmented": fragmented}
    if "1" in only:
        groups.append([
            Case("1", "unenroll", "zoho.unenroll", zoho),
            Case("1", "naive burst", "zoho.naive", zoho),
            Case("1", "careful script", "zoho.careful", zoho),
            Case("1", "one by one", "zoho.one_by_one", zoho),
        ])
    if "2" in only:
        faulty = zoho | {"faults": True, "not_enrolled_share": 0.02}
        groups.append([
            Case("2", "unenroll", "zoho.unenroll", faulty),
            Case("2", "careful script", "zoho.careful", faulty),
        ])
    if "3" in only:
        groups.append([
            Case("3", "unenroll, limit configured", "smarteru", smarteru | {"learn": False}),
            Case("3", "unenroll, learnt from 429s", "smarteru", smarteru | {"learn": True}),
        ])
    if "4" in only:
        groups.append([Case("4", "unenroll", "docebo", docebo)])
    largest = sizes[-1]
    if "5" in only:
        groups.append([Case("5", "in-process", "in_process", {"items": largest, "scenario": "5"})])
        groups.append([Case("5", "loopback HTTP", "loopback",
                            {"items": largest, "scenario": "5", "in_flight": 8} | wire)])
    if "6" in only:
        growth = sizes if "5" not in only else sizes[:-1]  # with 5, its largest runs are reused
        for size in growth:
            groups.append([Case("6", "in-process", "in_process", {"items": size, "scenario": "6"})])
        for size in growth:
            groups.append([Case("6", "loopback HTTP", "loopback",
                                {"items": size, "scenario": "6", "in_flight": 8} | wire)])
    if "7" in only:
        from .quota import STORES
        from .quota import params as quota_params

        for store in STORES:  # one case at a time: each runs N processes of its own
            for n in (S7_PROCESSES_QUICK if quick else S7_PROCESSES):
                groups.append([Case("7", f"{store}, {n} process{'es' if n > 1 else ''}", "quota",
                                    quota_params(store, n, quick, fragmented))])
    if "8" in only:
        from .learning import CONTENDERS, SHAPES
        from .learning import params as learning_params

        for shape in SHAPES.values():  # the contenders of a shape side by side: they wait on the vendor's clock
            groups.append([Case("8", contender, "learning", learning_params(shape, contender, quick, fragmented))
                           for contender in CONTENDERS])
    return groups


def needing_absent_vendors(only: Sequence[str], installed: Collection[str]) -> dict[str, str]:
    """The scenarios of ``only`` whose vendor is not an installed plugin, with that vendor:
    the harness skips them and says so, instead of failing inside a case."""
    return {s: SCENARIO_VENDORS[s] for s in only if SCENARIO_VENDORS[s] not in installed}


async def run_case(kind: str, params: dict[str, Any]) -> Row:
    """Run one case in this process."""
    from . import docebo, learning, overhead, quota, smarteru, zoho

    match kind:
        case "zoho.unenroll":
            return await zoho.unenroll_contender(zoho.ZohoScenario(**params))
        case "zoho.naive":
            return await zoho.naive_burst(zoho.ZohoScenario(**params))
        case "zoho.careful":
            return await zoho.careful_script(zoho.ZohoScenario(**params))
        case "zoho.one_by_one":
            return await zoho.one_by_one(zoho.ZohoScenario(**params))
        case "smarteru":
            return await smarteru.smarteru_contender(smarteru.SmarterUScenario(**params))
        case "docebo":
            return await docebo.docebo_contender(docebo.DoceboScenario(**params))
        case "in_process":
            return await overhead.in_process(overhead.OverheadScenario(**params))
        case "loopback":
            return await overhead.loopback(overhead.OverheadScenario(**params))
        case "quota":
            return await quota.shared_quota_contender(quota.QuotaScenario(**params))
        case "learning":
            return await learning.learning_contender(learning.LearningScenario(**params))
    raise ValueError(f"unknown case kind {kind!r}")


def child(kind: str, params: dict[str, Any], out: Path, profile: Path | None) -> None:
    """The case's own process: run it, write its row as JSON to ``out``."""
    from unenroll.observe.logs import configure_logging

    configure_logging(level="error")  # throttle warnings are the figures' business here
    profiler: Any = None
    if profile is not None:
        try:
            import importlib

            profiler = importlib.import_module("pyinstrument").Profiler(interval=0.001, async_mode="disabled")
        except ImportError:
            print("profile skipped: pyinstrument is not installed", file=sys.stderr)
    if profiler is not None:
        profiler.start()
    row = asyncio.run(run_case(kind, params))
    if profiler is not None:
        profiler.stop()
        assert profile is not None
        profile.write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")
    out.write_text(json.dumps(row.as_dict()), encoding="utf-8")


# -- running the plan -------------------------------------------------------------------


def _failed(case: Case, why: str) -> Row:
    return Row(scenario=case.scenario, contender=case.contender, items=0, accounted=0, calls=0, elapsed=0.0,
               notes=[f"FAILED: {why}"], extra={"failed": True})


def run_group(cases: Sequence[Case], workdir: Path, timeout: float, profile_dir: Path | None,
              parallel: bool) -> list[Row]:
    """Start each case's process (all at once if ``parallel``), wait, read the rows."""

    def start(case: Case) -> tuple[Case, subprocess.Popen[bytes], Path, float]:
        out = workdir / f"{case.slug}-{case.params.get('items', '')}.json"
        command = [sys.executable, "-m", "benchmarks.run", "--case", case.kind,
                   "--params", json.dumps(case.params), "--out", str(out)]
        if profile_dir is not None:
            command += ["--profile-out", str(profile_dir / f"profile-{case.slug}-{case.params.get('items', '')}.txt")]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return case, process, out, time.monotonic()

    def finish(case: Case, process: subprocess.Popen[bytes], out: Path, started: float) -> Row:
        try:
            _, stderr = process.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return _failed(case, f"timed out after {timeout:.0f} s")
        if process.returncode != 0 or not out.exists():
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            return _failed(case, f"exit {process.returncode}: {' / '.join(tail)}")
        return Row.from_dict(json.loads(out.read_text(encoding="utf-8")))

    rows: list[Row] = []
    if parallel:
        started = [start(case) for case in cases]
        rows = [finish(*s) for s in started]
    else:
        for case in cases:
            rows.append(finish(*start(case)))
    for case, row in zip(cases, rows, strict=True):
        shown = f"{row.elapsed:.1f}s" if not row.extra.get("failed") else row.notes[0]
        size = case.params.get("items", case.params.get("pairs", ""))
        print(f"  {TITLES[case.scenario]:<15} {case.contender:<28} {size:>9}  {shown}", file=sys.stderr, flush=True)
    return rows


# -- goals ------------------------------------------------------------------------------


@dataclass
class Goal:
    scenario: str
    target: str
    measured: str
    met: bool


def _find(rows: Sequence[Row], scenario: str, contender: str) -> Row | None:
    return next((r for r in rows if r.scenario == scenario and r.contender == contender
                 and not r.extra.get("failed")), None)


def _eff(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def judge(rows: list[Row]) -> list[Goal]:
    """Compare the figures with the issue's goals; mark each judged row met / MISSED."""
    goals: list[Goal] = []

    def mark(row: Row, met: bool) -> None:
        row.goal = "MISSED" if not met or row.goal == "MISSED" else "met"

    if (row := _find(rows, "1", "unenroll")) is not None:
        met = row.efficiency is not None and row.efficiency >= S1_EFFICIENCY and row.throttles == 0
        naive = _find(rows, "1", "naive burst")
        beside = (f"; naive burst: efficiency {_eff(naive.efficiency)}, {naive.throttles} locks"
                  if naive is not None else "")
        goals.append(Goal("1", f"efficiency >= {S1_EFFICIENCY} with zero locks",
                          f"efficiency {_eff(row.efficiency)} (ceiling {_eff(row.ceiling)}), "
                          f"{row.throttles} locks{beside}", met))
        mark(row, met)
    if (row := _find(rows, "2", "unenroll")) is not None:
        met = row.accounted == row.items and row.efficiency is not None and row.efficiency >= S2_EFFICIENCY
        careful = _find(rows, "2", "careful script")
        beside = (f"; careful script: {careful.accounted:,} of {careful.items:,} accounted, "
                  f"efficiency {_eff(careful.efficiency)}" if careful is not None else "")
        goals.append(Goal("2", f"every item accounted; efficiency >= {S2_EFFICIENCY}",
                          f"{row.accounted:,} of {row.items:,} accounted, efficiency {_eff(row.efficiency)}{beside}",
                          met))
        mark(row, met)
    if (row := _find(rows, "4", "unenroll")) is not None:
        met = row.efficiency is not None and row.efficiency >= S4_BUSY
        projected = row.extra.get("busy_share_at_1x")
        goals.append(Goal("4", f"endpoint busy >= {S4_BUSY:.0%} of the wall time",
                          f"busy {_eff(row.efficiency)} as run (time scale {row.time_scale:g}); "
                          f"{_eff(projected)} projected at the vendor's pace", met))
        mark(row, met)
    for contender, floor in (("in-process", S5_IN_PROCESS), ("loopback HTTP", S5_LOOPBACK)):
        if (row := _find(rows, "5", contender)) is not None:
            met = row.items_per_second >= floor
            measured = f"{row.items_per_second:,.0f} items/s at {row.items:,} items"
            target = f"{contender}: >= {floor:,} items/s"
            if row.items >= S5_RSS_AT:
                met = met and row.peak_rss_mb < S5_RSS_MB
                target += f"; peak RSS < {S5_RSS_MB:.0f} MB at {S5_RSS_AT:,} items"
                measured += f", peak RSS {row.peak_rss_mb:.0f} MB"
            goals.append(Goal("5", target, measured, met))
            mark(row, met)
    for contender in ("in-process", "loopback HTTP"):
        growth = sorted((r for r in rows if r.scenario == "6" and r.contender == contender
                         and not r.extra.get("failed")), key=lambda r: r.items)
        if len(growth) < 3:
            continue
        small, middle, large = growth[0], growth[-2], growth[-1]
        per_item = (large.elapsed / large.items) / (middle.elapsed / middle.items)
        rss = large.peak_rss_mb / small.peak_rss_mb
        bytes_per_item = (large.peak_rss_mb - small.peak_rss_mb) * 2**20 / (large.items - small.items)
        met = per_item <= S6_LINEAR and rss <= S6_FLAT
        goals.append(Goal(
            "6", f"{contender}: time linear (time per item at {large.items:,} within x{S6_LINEAR} of "
                 f"{middle.items:,}); peak RSS flat (within x{S6_FLAT} of {small.items:,})",
            f"time per item x{per_item:.2f} ({middle.elapsed / middle.items * 1e6:.1f} -> "
            f"{large.elapsed / large.items * 1e6:.1f} us); peak RSS x{rss:.2f} ({small.peak_rss_mb:.0f} -> "
            f"{large.peak_rss_mb:.0f} MB, {bytes_per_item:.0f} bytes per extra item)", met))
        mark(large, met)
    _judge_shared_quota(rows, goals, mark)
    _judge_learning(rows, goals, mark)
    return goals


def _judge_learning(rows: Sequence[Row], goals: list[Goal], mark: Any) -> None:
    """Scenario 8: the learner's first run and second run against each hidden shape."""
    for contender, floor, most in (("learner, first run", S8_FIRST, S8_FIRST_THROTTLES),
                                   ("learner, second run", S8_SECOND, S8_SECOND_THROTTLES)):
        runs = [r for r in rows if r.scenario == "8" and r.extra.get("contender") == contender
                and not r.extra.get("failed")]
        if not runs:
            continue
        met = all(r.efficiency is not None and r.efficiency >= floor and r.throttles <= most
                  and r.accounted == r.items for r in runs)
        goals.append(Goal("8", f"{contender}: efficiency >= {floor} with <= {most} throttles, outcomes exact",
                          "; ".join(f"{r.extra['shape']}: {_eff(r.efficiency)}, {r.throttles} throttles, "
                                    f"{r.accounted:,}/{r.items:,}" for r in runs), met))
        for run in runs:
            mark(run, met)


def _judge_shared_quota(rows: Sequence[Row], goals: list[Goal], mark: Any) -> None:
    """Scenario 7: through a shared store, every N keeps S7_SHARED of the single process's
    combined efficiency with 0 locks; the unshared contender locks once N > 1."""
    seven = [r for r in rows if r.scenario == "7" and not r.extra.get("failed")]
    for store in ("sqlite", "redis"):
        runs = sorted((r for r in seven if r.extra.get("store") == store), key=lambda r: r.extra["processes"])
        if len(runs) < 2 or runs[0].extra["processes"] != 1 or runs[0].efficiency is None:
            continue
        single = runs[0].efficiency
        shares = [(r.extra["processes"], (r.efficiency or 0.0) / single, r.throttles) for r in runs]
        met = all(share >= S7_SHARED and locks == 0 for _, share, locks in shares) and all(
            r.accounted == r.items for r in runs)
        goals.append(Goal("7", f"{store}: combined efficiency >= {S7_SHARED} of the single process's at every N, "
                               "0 locks, every item accounted",
                          "; ".join(f"N={n}: x{share:.3f}, {locks} locks" for n, share, locks in shares), met))
        for run in runs:
            mark(run, met)
    unshared = [r for r in seven if r.extra.get("store") == "unshared" and r.extra["processes"] > 1]
    if unshared:
        met = all(r.throttles > 0 for r in unshared)
        goals.append(Goal("7", "unshared (each process its own limiter): locks once N > 1",
                          "; ".join(f"N={r.extra['processes']}: {r.throttles} locks, "
                                    f"{r.extra.get('refused_calls', 0)} calls refused" for r in unshared), met))


# -- the table --------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


COLUMNS = ("scenario", "contender", "scale", "items", "accounted", "calls", "elapsed", "vendor time", "efficiency",
           "ceiling", "locks/429s", "retries", "items/s", "peak RSS MB", "goal")


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in rows:
        failed = bool(row.extra.get("failed"))
        cells = [
            TITLES.get(row.scenario, row.scenario),
            row.contender,
            f"{row.time_scale:g}",
            f"{row.items:,}",
            f"{row.accounted:,}",
            f"{row.calls:,}",
            f"{row.elapsed:.1f}s",
            _duration(row.vendor_seconds) if not failed else "",
            _eff(row.efficiency) if row.window is not None or row.efficiency is not None else "—",
            _eff(row.ceiling) if row.ceiling is not None else "—",
            str(row.throttles),
            str(row.retries),
            _rate(row.items_per_second) if not failed else "",
            f"{row.peak_rss_mb:.0f}",
            row.goal or ("FAILED" if failed else ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(rows: Sequence[Row]) -> str:
    lines = []
    for row in rows:
        for note in row.notes:
            lines.append(f"- {TITLES.get(row.scenario, row.scenario)}, {row.contender}"
                         f"{f' ({row.items:,})' if row.scenario == '6' else ''}: {note}")
    return "\n".join(lines)


LEGEND = """\
Columns: *scale* is the time scale (every window, lock and latency multiplied by it; 0.05: a
60 s window lasts 3 s); *elapsed* is wall time as run, *vendor time* the same on the vendor's
clock. *efficiency* = the least time the vendor's limits allow for the calls it served
(EndpointSpec.least_seconds_for) / the span from the first to the last call's arrival, as the
mock saw them; n/a when the served calls fit in one window (the limits do not bind); Docebo:
the share of the span with a call in flight. *ceiling*: the most the engine's limiter can
reach, window / (window + latency + margin), as it counts each window from the answer of the
call N before; for the careful script, its own 2 s pace. *accounted*: items whose reported
outcome matches what the mock did, each once. *items/s* per second of vendor time. *peak
RSS*: the case's own process at the end of the job (ru_maxrss); every mock runs in a process
of its own; for 1-4 it includes the benchmark's input list and outcome log."""


def render(rows: list[Row], goals: Sequence[Goal], header: Sequence[str]) -> str:
    parts = [*header, "", table(rows), "", LEGEND, "", "Goals (printed beside the figures, never asserted in tests):"]
    for goal in goals:
        parts.append(f"- scenario {goal.scenario}: {goal.target}: {goal.measured}: "
                     f"**{'met' if goal.met else 'MISSED'}**")
    if not goals:
        parts.append("- none judged in this run")
    parts += ["", "Notes:", notes(rows)]
    return "\n".join(parts)


# -- main -------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every scenario tiny: well under a minute")
    parser.add_argument("--only", default=",".join(ALL_SCENARIOS), help="scenarios to run, e.g. 1,5")
    parser.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    parser.add_argument("--serial", action="store_true", help="run contenders one at a time")
    parser.add_argument("--plain-wire", action="store_true",
                        help="the mocks write each answer in one piece (default: gzip, chunked, in pieces)")
    parser.add_argument("--profile", action="store_true",
                        help="profile every case with pyinstrument (if installed); text files in the results")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    # one case, in this process (the harness starts these)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.case:
        child(args.case, json.loads(args.params or "{}"), args.out, args.profile_out)
        return 0
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in ALL_SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(ALL_SCENARIOS)}", file=sys.stderr)
        return 2
    try:
        installed = list(vendors())
    except PluginError as exc:
        print(exc, file=sys.stderr)
        return 2
    skipped = needing_absent_vendors(only, installed)
    for scenario, vendor in skipped.items():
        print(f"scenario {scenario} skipped: the {vendor!r} vendor plugin is not installed", file=sys.stderr)
    only = [s for s in only if s not in skipped]
    results: Path = args.results_dir
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    profile_dir = results if args.profile else None
    command = " ".join(["python -m benchmarks.run", shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    started = time.monotonic()
    timeout = 120.0 if args.quick else 900.0
    rows: list[Row] = []
    print(f"running {'quick ' if args.quick else ''}scenarios {', '.join(only)}:", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="unenroll-bench-") as tmp:
        for group in plan(args.quick, only, fragmented=not args.plain_wire):
            rows += run_group(group, Path(tmp), timeout, profile_dir, parallel=not args.serial)
    if "5" in only and "6" in only:  # scenario 6's largest size is scenario 5's run
        for contender in ("in-process", "loopback HTTP"):
            if (five := _find(rows, "5", contender)) is not None:
                rows.append(replace(five, scenario="6", notes=["the same run as scenario 5"], goal=None,
                                    extra=dict(five.extra)))
    rows = _keep_contender_order(rows)
    goals = judge(rows)
    total = time.monotonic() - started
    info = machine()
    header = [
        f"unenroll benchmarks, {'quick' if args.quick else 'full'} run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{total:.0f} s in all",
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, Python {info['python']}, "
        f"{info['system']}",
        f"command: {command}",
    ]
    header.append(f"vendors: {', '.join(installed)} (the installed plugins)"
                  + "".join(f"; scenario {s} skipped, no {v!r} plugin" for s, v in skipped.items()))
    header.append("answers: in one piece (--plain-wire)" if args.plain_wire else
                  "answers: gzip, chunked, in 4 pieces at seeded cuts (10 ms of vendor time apart; "
                  "the loopback overhead cases without pauses)")
    if args.profile:
        header.append("profiled with pyinstrument: every figure is slowed by the profiler; profiles in the results")
    text = render(rows, goals, header)
    print(text)
    record = {
        "command": command, "mode": "quick" if args.quick else "full", "scenarios": only, "started_utc": stamp,
        "wire": "plain" if args.plain_wire else "fragmented", "vendors": installed, "skipped": skipped,
        "total_seconds": round(total, 1), "machine": info,
        "goals": [{"scenario": g.scenario, "target": g.target, "measured": g.measured,
                   "verdict": "met" if g.met else "MISSED"} for g in goals],
        "rows": [r.as_dict() for r in rows],
    }
    for path in (results / f"{stamp}.json", results / "latest.json"):
        path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"\nresults: {results / f'{stamp}.json'}")
    if not args.no_chart:
        titles = {s: f"Scenario {s}: {title}, {max(r.items for r in rows if r.scenario == s):,} items"
                  for s, title in CHART_TITLES.items() if any(r.scenario == s for r in rows)}
        print(chart.draw(rows, results / f"{stamp}-windows.png", titles))
    return 0


def _keep_contender_order(rows: list[Row]) -> list[Row]:
    """Within a scenario, keep the order the plan ran them in (unenroll first), growth by size."""
    wanted = ["unenroll", "unenroll, limit configured", "unenroll, learnt from 429s", "naive burst",
              "careful script", "one by one", "in-process", "loopback HTTP"]
    rank = {name: n for n, name in enumerate(wanted)}
    order = {s: n for n, s in enumerate(ALL_SCENARIOS)}
    return sorted(rows, key=lambda r: (order.get(r.scenario, 99), rank.get(r.contender, 99), r.items))


if __name__ == "__main__":
    sys.exit(main())
