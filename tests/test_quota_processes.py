"""The shared quota across real ``unenroll run`` processes against one Zoho mock tenant: the
mock counts a rolling window on arrival and locks the API at the 31st call in a minute.
By default every run on a machine counts its calls in one SQLite file (here under a
temporary XDG_STATE_HOME), so a resumed run and parallel runs share one window."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import redis_url_fixture  # noqa: F401  (the fixture)
from tests.test_cli_interrupt import Run, calls, wait_until
from tests.test_cli_run import MockProcess, read_results, zoho_env
from unenroll.limits.quota import PastCall, WindowRule, earliest_start

TWO_IDS_A_CALL = "[zoho.limits]\nmax_ids_per_call = 2\n"  # many calls from few learners


def run_env(mock: MockProcess, tmp_path: Path, time_scale: str) -> dict[str, str]:
    return zoho_env(mock.url, UNENROLL_TIME_SCALE=time_scale, XDG_STATE_HOME=str(tmp_path / "state"))


def batch_files(tmp_path: Path, mock: MockProcess) -> list[tuple[Path, set[str]]]:
    """One input file per batch of the mock, and the learners in it."""
    files = []
    for n, (key, members) in enumerate(sorted(mock.stats()["state"]["batches"].items())):
        course, batch = key.split("/")
        folder = tmp_path / f"job{n}"
        folder.mkdir()
        path = folder / "in.csv"
        path.write_text("course_id,batch_id,erecno\n" + "".join(f"{course},{batch},{e}\n" for e in members))
        files.append((path, set(members)))
    return files


def unenroll_stats(mock: MockProcess) -> dict[str, Any]:
    stats: dict[str, Any] = mock.stats(state=False)["endpoints"]["unenroll"]
    return stats


@pytest.fixture
def zoho_for_resume() -> Iterator[MockProcess]:
    """One batch of 120 learners: 60 calls of 2, two windows and more (a minute is 3 s)."""
    mock = MockProcess("zoho", "--time-scale", "0.05", "--courses", "1", "--batches", "1", "--learners", "120")
    try:
        yield mock
    finally:
        assert mock.stop() == 0


def test_ctrl_c_after_a_window_then_resume_at_once_never_overfills_the_window(
        tmp_path: Path, zoho_for_resume: MockProcess) -> None:
    mock = zoho_for_resume
    (source, learners), = batch_files(tmp_path, mock)
    settings = tmp_path / "settings.toml"
    settings.write_text(TWO_IDS_A_CALL)
    args = ["zoho", str(source), "--yes", "--settings", str(settings)]
    env = run_env(mock, tmp_path, "0.05")
    first = Run(args, env, tmp_path)
    wait_until(lambda: calls(mock, "unenroll") >= 30, what="the first window's calls")
    first.proc.send_signal(signal.SIGINT)
    code, _, _ = first.finish()
    assert code == 130
    code, out, err = Run([*args, "--resume"], env, tmp_path).finish(timeout=120)
    assert code == 0, out + err
    assert "calls per " in out and "are used by another run" in out, out  # the stopped run's calls, said
    stats = unenroll_stats(mock)
    assert stats["lock_events"] == 0
    assert stats["max_in_rolling_window"] <= 30
    assert not any(mock.stats()["state"]["batches"].values())  # every learner unenrolled
    rows = read_results(source.with_name("in.results.csv"))
    assert sorted(r["meta"]["row"] for r in rows) == list(range(2, 2 + len(learners)))  # each row once


@pytest.fixture
def zoho_for_four() -> Iterator[MockProcess]:
    """Four batches of 40 learners: four jobs of 20 calls, 80 calls in all (a minute is 0.6 s)."""
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "4", "--learners", "40")
    try:
        yield mock
    finally:
        assert mock.stop() == 0


@pytest.mark.parametrize("through", ["sqlite", "redis"])
def test_four_processes_with_their_own_jobs_share_one_tenants_window(
        tmp_path: Path, zoho_for_four: MockProcess, through: str, request: pytest.FixtureRequest) -> None:
    mock = zoho_for_four
    jobs = batch_files(tmp_path, mock)
    settings = tmp_path / "settings.toml"
    settings.write_text(TWO_IDS_A_CALL)
    env = run_env(mock, tmp_path, "0.01")
    quota = ["--quota", request.getfixturevalue("redis_url")] if through == "redis" else []  # sqlite: the default
    runs = [Run(["zoho", str(path), "--yes", "--settings", str(settings), *quota], env, path.parent)
            for path, _ in jobs]
    for run in runs:
        code, out, err = run.finish(timeout=120)
        assert code == 0, out + err
    stats = unenroll_stats(mock)
    assert stats["lock_events"] == 0, stats
    assert stats["max_in_rolling_window"] <= 30
    assert stats["calls"] == 80
    for path, learners in jobs:
        rows = read_results(path.with_name("in.results.csv"))
        assert Counter(r["outcome"] for r in rows) == Counter({"unenrolled": len(learners)})
        assert len(rows) == len(learners)
    assert not any(mock.stats()["state"]["batches"].values())
    # the default store is a file in the user's state folder; with --quota redis:// no file is made
    assert (tmp_path / "state" / "unenroll" / "quota.db").is_file() == (through == "sqlite")


def open_calls_of(db_path: Path, pid: int) -> list[tuple[float, float]]:
    """``(start, deadline)`` of the calls process ``pid`` started and never reported back."""
    if not db_path.is_file():
        return []
    try:
        with closing(sqlite3.connect(db_path, timeout=30)) as db:
            rows = db.execute('SELECT start, deadline FROM calls WHERE participant LIKE ? AND "end" IS NULL',
                              (f"%:{pid}:%",)).fetchall()
    except sqlite3.OperationalError:  # the file is there, its tables not yet: a run is opening it
        return []
    return [(float(start), float(deadline)) for start, deadline in rows]


def test_a_participant_killed_in_the_middle_of_a_call_holds_the_others_no_longer_than_its_timeout(
        tmp_path: Path) -> None:
    """Two runs share the tenant; one is killed with SIGKILL while a call is in flight (every
    answer stalls). The other finishes its job; the dead run's open call is on record with its
    deadline at start + timeout, after which the quota counts it as ended."""
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "2", "--learners", "40",
                       "--latency", "30")
    try:
        (victim_file, _), (survivor_file, survivor_learners) = batch_files(tmp_path, mock)
        settings = tmp_path / "settings.toml"
        settings.write_text(TWO_IDS_A_CALL)
        env = run_env(mock, tmp_path, "0.01") | {"UNENROLL_TIMEOUT": "4"}
        db_path = tmp_path / "state" / "unenroll" / "quota.db"
        victim = Run(["zoho", str(victim_file), "--yes", "--settings", str(settings)], env, victim_file.parent)
        survivor = Run(["zoho", str(survivor_file), "--yes", "--settings", str(settings)], env,
                       survivor_file.parent)
        wait_until(lambda: bool(open_calls_of(db_path, victim.proc.pid)), what="a call of the victim in flight")
        victim.proc.kill()
        assert victim.proc.wait(timeout=15) == -signal.SIGKILL
        (start, deadline), *_ = open_calls_of(db_path, victim.proc.pid)  # killed mid-call: never reported

        code, out, err = survivor.finish(timeout=120)
        assert code == 0, out + err
        rows = read_results(survivor_file.with_name("in.results.csv"))
        assert Counter(r["outcome"] for r in rows) == Counter({"unenrolled": len(survivor_learners)})
        stats = unenroll_stats(mock)
        assert stats["lock_events"] == 0
        assert stats["max_in_rolling_window"] <= 30
    finally:
        assert mock.stop() == 0
    # the slot comes back no later than the timeout: the crash rule ends the call at its deadline
    assert deadline == pytest.approx(start + 4)
    dead_call = PastCall(start, None, deadline)
    assert dead_call.ended_by(deadline - 0.001) is None
    assert dead_call.ended_by(deadline) == deadline
    one_a_window = [WindowRule(1, 0.6)]
    assert earliest_start(deadline, one_a_window, [dead_call], start, 0.0) == pytest.approx(deadline + 0.6)


def test_the_dry_run_and_the_progress_say_what_another_run_spends_of_the_tenants_minute(tmp_path: Path) -> None:
    """At the vendor's own pace (a minute is a minute): a first run makes 10 calls; a dry run
    of a second job says so before its plan, and the second run's progress events say it too.
    A dry run on a machine with no quota file yet writes none."""
    mock = MockProcess("zoho", "--time-scale", "1", "--courses", "1", "--batches", "2", "--learners", "20")
    try:
        (first, _), (second, second_learners) = batch_files(tmp_path, mock)
        settings = tmp_path / "settings.toml"
        settings.write_text(TWO_IDS_A_CALL)
        env = run_env(mock, tmp_path, "1")
        quota_file = tmp_path / "state" / "unenroll" / "quota.db"
        args = ["--yes", "--settings", str(settings)]
        code, out, err = Run(["zoho", str(first), "--dry-run", *args], env, tmp_path).finish()
        assert code == 0, out + err
        assert not quota_file.exists()  # a dry run writes nothing, not even the quota file
        code, out, err = Run(["zoho", str(first), *args], env, first.parent).finish()
        assert code == 0, out + err
        code, out, err = Run(["zoho", str(second), "--dry-run", *args], env, tmp_path).finish()
        assert code == 0, out + err
        assert "10 of 30 calls per minute are used by another run" in out, out
        code, out, err = Run(["zoho", str(second), *args], env, second.parent).finish()
        assert code == 0, out + err
        progress = [json.loads(line) for line in err.splitlines() if '"run.progress"' in line]
        assert progress and progress[-1]["shared"] == "10 of 30 calls per minute are used by another run", err
        rows = read_results(second.with_name("in.results.csv"))
        assert Counter(r["outcome"] for r in rows) == Counter({"unenrolled": len(second_learners)})
        assert unenroll_stats(mock)["lock_events"] == 0
    finally:
        assert mock.stop() == 0
