"""README command 1: the demo runs a real job against the in-process Zoho mock."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from unenroll.cli.app import main


def test_the_demo_runs_a_job_and_writes_every_outcome(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    args = ["demo", "--results", str(results), "zoho", "--batches", "1", "--learners", "300"]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    assert "unenrolled" in outcome.output and "0 lock-outs" in outcome.output
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    total = int(outcome.output.split("zoho, ")[1].split(" items")[0])
    assert sorted(line["index"] for line in lines) == list(range(total))
    assert {line["outcome"] for line in lines} >= {"unenrolled", "rejected", "duplicate", "not_enrolled"}


def test_bad_demo_options_get_a_usage_error_not_a_traceback() -> None:
    outcome = CliRunner().invoke(main, ["demo", "--time-scale", "0"])
    assert outcome.exit_code == 2
    assert "time-scale" in outcome.output and "Traceback" not in outcome.output


def test_a_mock_on_a_busy_port_is_a_clear_error_not_a_traceback() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = CliRunner().invoke(main, ["mock", "serve", "zoho", "--port", str(port)])
    assert outcome.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in outcome.output and "Traceback" not in outcome.output
