"""The benchmark harness runs end to end on tiny sizes: it prints the table with the
expected rows and columns and writes a JSON file whose figures are sane. No speed or
memory figure is asserted (benchmarks print them; tests never time anything). Its modules
import one another without a cycle, and nothing of the engine or the vendors imports them."""

from __future__ import annotations

import ast
import graphlib
import json
from pathlib import Path

import pytest

from benchmarks.run import COLUMNS, main
from unenroll.cli.plugins import vendors

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ROWS = {
    ("1", "unenroll"), ("1", "naive burst"), ("1", "careful script"), ("1", "one by one"),
    ("5", "in-process"), ("5", "loopback HTTP"),
}


def test_the_quick_harness_prints_the_table_and_writes_sane_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--quick", "--only", "1,5", "--no-chart", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    lines = out.splitlines()
    header = "| " + " | ".join(COLUMNS) + " |"
    assert header in lines
    body = [line for line in lines[lines.index(header) + 2:] if line.startswith("| ")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in body]
    assert all(len(row) == len(COLUMNS) for row in cells)
    assert {(row[0].split()[0], row[1]) for row in cells} == EXPECTED_ROWS
    assert "Goals (printed beside the figures, never asserted in tests):" in out

    record = json.loads((tmp_path / "latest.json").read_text())
    assert record["mode"] == "quick" and record["scenarios"] == ["1", "5"]
    assert record["wire"] == "fragmented" and any(line.startswith("answers: gzip, chunked") for line in lines)
    assert record["machine"]["cores"] >= 1
    assert record["vendors"] == list(vendors()) and record["skipped"] == {}
    rows = {(r["scenario"], r["contender"]): r for r in record["rows"]}
    assert set(rows) == EXPECTED_ROWS
    for key, row in rows.items():
        assert not row["extra"].get("failed"), (key, row["notes"])
        assert row["items"] > 0 and row["calls"] > 0, key
        measured = ("elapsed", "peak_rss_mb")  # filled in by the harness (no speed is judged here)
        assert all(row[field] > 0 for field in measured), key
        assert 0 <= row["accounted"] <= row["items"], key
        assert row["efficiency"] is None or 0.0 <= row["efficiency"] <= 1.0, key
    # the engine accounts for every item; the capped script did all it was given
    for key in [("1", "unenroll"), ("5", "in-process"), ("5", "loopback HTTP")]:
        assert rows[key]["accounted"] == rows[key]["items"], key
        assert sum(rows[key]["extra"]["counts"].values()) == rows[key]["items"], key
    one_by_one = rows[("1", "one by one")]
    assert one_by_one["items"] < one_by_one["extra"]["full_items"]
    assert any("capped" in note for note in one_by_one["notes"])
    assert rows[("1", "unenroll")]["arrivals"][0] == 0.0
    assert len(rows[("1", "unenroll")]["arrivals"]) == rows[("1", "unenroll")]["calls"]

    goals = {(g["scenario"], g["verdict"]) for g in record["goals"]}
    assert {scenario for scenario, _ in goals} == {"1", "5"}
    assert {verdict for _, verdict in goals} <= {"met", "MISSED"}


def test_every_mock_backed_scenario_serves_fragmented_answers_unless_asked_for_plain_ones() -> None:
    from benchmarks import docebo, smarteru, zoho
    from benchmarks.mockproc import FRAGMENTED
    from benchmarks.run import ALL_SCENARIOS, plan

    mock_backed = [case for group in plan(quick=True, only=ALL_SCENARIOS) for case in group
                   if case.kind != "in_process"]
    assert mock_backed and all(case.params["fragmented"] is True for case in mock_backed)
    plain = [case for group in plan(quick=True, only=ALL_SCENARIOS, fragmented=False) for case in group
             if case.kind != "in_process"]
    assert all(case.params["fragmented"] is False for case in plain)
    # the scenarios' mocks are configured with that wire
    assert zoho.mock_config(zoho.ZohoScenario()).wire == FRAGMENTED
    assert smarteru.mock_config(smarteru.SmarterUScenario()).wire == FRAGMENTED
    assert docebo.mock_config(docebo.DoceboScenario()).wire == FRAGMENTED
    assert zoho.mock_config(zoho.ZohoScenario(fragmented=False)).wire.plain


def _imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, anywhere in it (a function's lazy import too), as a
    dotted name; relative ones start from ``package`` (a flat package: one level up is enough)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import zoho`
    return names


def test_the_benchmark_modules_import_one_another_without_a_cycle() -> None:
    modules = {f"benchmarks.{path.stem}": path for path in (ROOT / "benchmarks").glob("*.py")
               if path.stem != "__init__"}
    graph = {name: _imports(path, "benchmarks") & modules.keys() - {name} for name, path in modules.items()}
    assert graph["benchmarks.zoho"] >= {"benchmarks.mockproc"}  # the parser sees the imports it must
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as cycle:
        pytest.fail(f"benchmark modules import each other in a loop: {' -> '.join(cycle.args[1])}")
    assert order.index("benchmarks.mockproc") < order.index("benchmarks.zoho")


def test_nothing_in_the_engine_or_the_vendor_folders_imports_the_benchmarks() -> None:
    # inside the installed package a relative import cannot reach the top-level `benchmarks`
    imported = {path: _imports(path, package="(relative)") for folder in ("engine", "adapters")
                for path in sorted((ROOT / folder).rglob("*.py"))}
    offenders = [str(path.relative_to(ROOT)) for path, names in imported.items()
                 if any(name == "benchmarks" or name.startswith("benchmarks.") for name in names)]
    assert offenders == []


def test_a_mock_builder_reaches_the_mock_process_by_its_module_path() -> None:
    from benchmarks import overhead, zoho
    from benchmarks.mockproc import builder_path, load_builder

    assert builder_path(zoho.zoho_mock) == "benchmarks.zoho:zoho_mock"
    assert load_builder(builder_path(overhead.unlimited_zoho_mock)) is overhead.unlimited_zoho_mock
    with pytest.raises(ValueError, match="module-level function"):
        builder_path(lambda params: zoho.zoho_mock(params))


def test_the_scenarios_vendors_are_learnt_from_the_installed_plugins() -> None:
    from benchmarks.run import ALL_SCENARIOS, SCENARIO_VENDORS, needing_absent_vendors

    installed = set(vendors())
    assert set(SCENARIO_VENDORS) == set(ALL_SCENARIOS) and set(SCENARIO_VENDORS.values()) <= installed
    assert needing_absent_vendors(ALL_SCENARIOS, installed) == {}
    assert needing_absent_vendors(ALL_SCENARIOS, installed - {"smarteru"}) == {"3": "smarteru", "8": "smarteru"}
    assert needing_absent_vendors(["1", "4"], {"smarteru"}) == {"1": "zoho", "4": "docebo"}


async def test_the_shared_quota_scenario_runs_real_processes_and_judges_them() -> None:
    """Scenario 7 at a tiny size: two real `unenroll run` processes through one SQLite quota
    keep the tenant's window (no lock) and account for every item; two with their own
    limiters overfill it. The goal lines name every N."""
    from benchmarks.quota import QuotaScenario, shared_quota_contender
    from benchmarks.run import judge

    tiny = {"items": 4_000, "time_scale": 0.01, "fragmented": True}
    shared = [await shared_quota_contender(QuotaScenario(processes=n, store="sqlite", **tiny)) for n in (1, 2)]
    unshared = await shared_quota_contender(QuotaScenario(processes=2, store="unshared", **tiny))
    for row in [*shared, unshared]:
        assert not row.extra.get("failed"), row.notes
        assert row.accounted == row.items == 4_000, (row.contender, row.notes)
        assert row.extra["exit_codes"] == [0] * row.extra["processes"]
    assert [row.throttles for row in shared] == [0, 0]
    assert all(row.extra["max_in_rolling_window"] <= 30 for row in shared)
    assert unshared.throttles >= 1  # two limiters that do not know of each other: 80 calls at once lock it
    goals = judge([*shared, unshared])
    lines = [f"{goal.target}: {goal.measured}" for goal in goals if goal.scenario == "7"]
    assert any(line.startswith("sqlite: ") and "N=1: x1.000" in line and "N=2: x" in line for line in lines), lines
    assert any(line.startswith("unshared") and "N=2: " in line for line in lines), lines


async def test_the_learning_scenario_learns_a_hidden_limit_and_the_second_run_starts_at_it() -> None:
    """Scenario 8 at a tiny size against a hidden 5 calls per second: every item accounted,
    the learner meets a throttle or a few, and the second run (starting at what the first
    learned) says so and meets none."""
    from benchmarks.learning import LearningScenario, learning_contender

    tiny = {"shape": "rolling:5/1s", "items": 3_000, "time_scale": 0.1, "fragmented": True}
    first = await learning_contender(LearningScenario(contender="learner, first run", **tiny))
    second = await learning_contender(LearningScenario(contender="learner, second run", **tiny))
    for row in (first, second):
        assert row.accounted == row.items == 3_000, row.notes
        assert row.extra["shape"] == "rolling:5/1s"
    assert 1 <= first.throttles <= 10
    assert any(note.startswith("ended at learned") for note in first.notes), first.notes
    assert any(note.startswith("started at the first run's limit") for note in second.notes), second.notes
    assert second.throttles == 0


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_row_files_benchmark_writes_every_row_and_prints_a_table(fmt: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.row_files import main as row_files

    row_files(["--sizes", "120,250", "--format", fmt])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| rows |") and f"{fmt} results + errors" in lines[0]
    rows = [line.split("|")[1:-1] for line in lines[2:]]
    assert [(r[0].strip(), r[-1].strip()) for r in rows] == [("120", "3"), ("250", "5")]  # 1 in 50 failed
