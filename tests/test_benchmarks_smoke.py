"""The benchmark harness runs end to end on tiny sizes: it prints the table with the
expected rows and columns and writes a JSON file whose figures are sane. No speed or
memory figure is asserted (benchmarks print them; tests never time anything)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.run import COLUMNS, main

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
