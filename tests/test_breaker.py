"""The circuit breaker (unenroll.job.breaker): a job whose answers all fail the same way
stops early with one clear line, and nothing else is lost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.test_cli_run import MockProcess, read_results, run_cli, zoho_env
from unenroll.job.breaker import BreakerSettings, CircuitBreaker
from unenroll.model import Item, ItemOutcome, Outcome

ITEM = Item("unenroll", ("c", "b"), "1")


def outcome(kind: Outcome, code: str | None = None, message: str | None = None) -> ItemOutcome:
    return ItemOutcome(0, ITEM, kind, code, message)


def feed(breaker: CircuitBreaker, outcomes: list[ItemOutcome]) -> list[str]:
    for o in outcomes:
        breaker(o)
    return [breaker.tripped] if breaker.tripped else []


NOT_FOUND = outcome(Outcome.FAILED, "404", "Course or batch not found")


def test_the_first_items_all_failing_one_way_trip_it_once() -> None:
    trips: list[str] = []
    breaker = CircuitBreaker(BreakerSettings(first_items=5, window=100, share=0.5), trips.append)
    feed(breaker, [NOT_FOUND] * 4)
    assert trips == []  # not yet five
    feed(breaker, [NOT_FOUND] * 3)
    assert trips == ["circuit breaker: the first 5 items all failed with 404 Course or batch not found; "
                     "the rest was not sent"]


@pytest.mark.parametrize("spoiler", [outcome(Outcome.UNENROLLED), outcome(Outcome.FAILED, "403", "no permission"),
                                     outcome(Outcome.NOT_ENROLLED)])
def test_one_other_answer_among_the_first_items_keeps_it_closed(spoiler: ItemOutcome) -> None:
    trips: list[str] = []
    breaker = CircuitBreaker(BreakerSettings(first_items=5, window=100, share=0.5), trips.append)
    feed(breaker, [NOT_FOUND, NOT_FOUND, spoiler, NOT_FOUND, NOT_FOUND, NOT_FOUND])
    assert trips == []


def test_items_the_vendor_did_not_answer_for_count_for_nothing() -> None:
    trips: list[str] = []
    breaker = CircuitBreaker(BreakerSettings(first_items=3, window=100, share=0.5), trips.append)
    silent = [outcome(Outcome.REJECTED, "invalid"), outcome(Outcome.DUPLICATE), outcome(Outcome.NOT_SENT),
              outcome(Outcome.GAVE_UP, "503")]
    feed(breaker, [NOT_FOUND, *silent, NOT_FOUND, *silent])
    assert trips == []
    feed(breaker, [NOT_FOUND])
    assert len(trips) == 1


def test_half_of_a_rolling_window_failing_one_way_trips_it_later_in_the_job() -> None:
    trips: list[str] = []
    breaker = CircuitBreaker(BreakerSettings(first_items=10, window=20, share=0.5), trips.append)
    feed(breaker, [outcome(Outcome.UNENROLLED)] * 30)
    feed(breaker, [NOT_FOUND, outcome(Outcome.UNENROLLED)] * 9)  # 9 of the last 20 failed
    assert trips == []
    feed(breaker, [NOT_FOUND])  # 10 of the last 20: half
    assert trips == ["circuit breaker: 10 of the last 20 items failed with 404 Course or batch not found; "
                     "the rest was not sent"]


def test_switched_off_it_never_trips() -> None:
    trips: list[str] = []
    breaker = CircuitBreaker(BreakerSettings(first_items=0, window=10, share=0.0), trips.append)
    feed(breaker, [NOT_FOUND] * 500)
    assert trips == []
    with pytest.raises(ValueError, match="breaker"):
        BreakerSettings(share=1.5)


def test_a_run_against_a_batch_that_does_not_exist_stops_early_with_one_line(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "5")
    try:
        source = tmp_path / "in.csv"
        source.write_text("course_id,batch_id,erecno\n" + "".join(
            f"5000000000000,5000000000999,{7000000000000 + n}\n" for n in range(300)))
        settings = tmp_path / "settings.toml"
        settings.write_text("[job]\nbreaker_first_items = 40\n[zoho.limits]\nmax_ids_per_call = 10\n")
        env = zoho_env(mock.url, XDG_STATE_HOME=str(tmp_path / "state"))
        done = run_cli(["run", "zoho", str(source), "--yes", "--settings", str(settings)], env, tmp_path)
        assert done.returncode == 3, done.stdout + done.stderr
        said = [line for line in done.stderr.splitlines() if line.startswith("unenroll: stopped by the circuit")]
        assert said == ["unenroll: stopped by the circuit breaker: the first 40 items all failed with 404 not found: "
                        "Course or batch not found; the rest was not sent: fix that, then run the same command with "
                        "--resume"], done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        rows = read_results(source.with_name("in.results.csv"))
        counts = Counter(r["outcome"] for r in rows)
        assert len(rows) == 300 and counts["failed"] >= 40 and counts["not_sent"] >= 200, counts  # each row once
        assert mock.stats(state=False)["endpoints"]["unenroll"]["calls"] < 10  # 30 calls were not made
        report = json.loads(source.with_name("in.results.csv.report.json").read_text())
        assert report["breaker"] == {"first_items": 40, "window": 1000, "share": 0.5}
        assert report["stopped"].startswith("circuit breaker: the first 40 items")
    finally:
        assert mock.stop() == 0
