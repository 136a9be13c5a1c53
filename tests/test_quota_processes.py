"""The shared quota across real ``unenroll run`` processes against one Zoho mock tenant: the
mock counts a rolling window on arrival and locks the API at the 31st call in a minute.
By default every run on a machine counts its calls in one SQLite file (here under a
temporary XDG_STATE_HOME), so a resumed run and parallel runs share one window."""

from __future__ import annotations

import bisect
import json
import math
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import redis_url_fixture  # noqa: F401  (the fixture)
from tests.test_cli_interrupt import Run, calls, wait_until
from tests.test_cli_run import Lines, MockProcess, clean_env, read_results, zoho_env

TWO_IDS_A_CALL = "[zoho.limits]\nmax_ids_per_call = 2\n"  # many calls from few learners


def run_env(mock: MockProcess, tmp_path: Path, time_scale: str) -> dict[str, str]:
    return zoho_env(mock.url, UNENROLL_TIME_SCALE=time_scale, XDG_STATE_HOME=str(tmp_path / "state"))


def batch_files(tmp_path: Path, mock: MockProcess | HoldingMock) -> list[tuple[Path, set[str]]]:
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


def unenroll_stats(mock: MockProcess | HoldingMock) -> dict[str, Any]:
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
    # it was waiting for the window when stopped: it withdrew its place in line rather than let it lapse
    assert tickets_of(tmp_path / "state" / "unenroll" / "quota.db", first.proc.pid) == 0
    code, out, err = Run([*args, "--resume"], env, tmp_path).finish(timeout=120)
    assert code == 0, out + err
    assert "calls per " in out and "are used by another run" in out, out  # the stopped run's calls, said
    stats = unenroll_stats(mock)
    assert stats["lock_events"] == 0
    assert stats["max_in_rolling_window"] <= 30
    assert not any(mock.stats()["state"]["batches"].values())  # every learner unenrolled
    rows = read_results(source.with_name("in.results.csv"))
    assert [r["row"] for r in rows] == list(range(2, 2 + len(learners)))  # each row once


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


def tickets_of(db_path: Path, pid: int) -> int:
    """How many places in line process ``pid`` holds in the quota file."""
    with closing(sqlite3.connect(db_path, timeout=30)) as db:
        count: int = db.execute("SELECT COUNT(*) FROM tickets WHERE participant LIKE ?", (f"%:{pid}:%",)).fetchone()[0]
    return count


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


class HoldingMock:
    """``tests/zoho_hold_mock.py`` in its own process: one course of ``batches`` batches, an
    arrival log, and a batch whose answers it holds (see that module)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("zoho_hold_mock.py")), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=clean_env())
        assert self.proc.stdout is not None
        first = Lines(self.proc.stdout).wait_for(lambda line: "serving on" in line, timeout=30)
        assert first is not None, "the mock did not start"
        self.url = first.split()[-1]

    def _ask(self, path: str, method: str = "GET") -> Any:
        with urllib.request.urlopen(urllib.request.Request(self.url + path, method=method), timeout=10) as answer:
            return json.load(answer)

    def stats(self, state: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self._ask("/__mock__/stats" + ("" if state else "?state=0"))
        return result

    def hold(self, batch: str) -> None:
        self._ask(f"/__test__/hold/{batch}", method="POST")

    def arrivals(self, batch: str) -> list[float]:
        """When each unenroll call of ``batch`` reached the mock (wall clock), in order."""
        return sorted(at for at, of in self._ask("/__test__/arrivals") if of == batch)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def most_in_a_window(arrivals: list[float], window: float, before: float = math.inf) -> int:
    """The most of ``arrivals`` in any rolling ``window`` (``(t - window, t]``) ending before ``before``."""
    return max((bisect.bisect_right(arrivals, t) - bisect.bisect_right(arrivals, t - window)
                for t in arrivals if t < before), default=0)


def test_a_participant_killed_in_the_middle_of_a_call_holds_its_slots_until_its_timeout_and_no_longer(
        tmp_path: Path) -> None:
    """A run is killed with SIGKILL while its calls are in flight (the mock holds its batch's
    answers): they stay open in the quota file. A second run then makes 120 calls. By the
    mock's own arrival log: while the dead calls may still reach the vendor (until start +
    timeout) and a window after, the second run never has more than 30 minus the dead calls
    in a window, and its 30th call after them waits for that; their slots come back at that
    moment (plus slack for the machine), not never.
    The mock never sees more than 30 in a minute, nor a lock; every learner is unenrolled once."""
    timeout, window, margin, slack = 3.0, 60 * 0.01, 0.1 * 0.01, 2.0
    mock = HoldingMock("--time-scale", "0.01", "--batches", "2", "--learners", "240", "--hold", "60")
    try:
        (victim_file, _), (survivor_file, survivor_learners) = batch_files(tmp_path, mock)
        victim_batch, survivor_batch = (path.read_text().splitlines()[1].split(",")[1]
                                        for path in (victim_file, survivor_file))
        mock.hold(victim_batch)
        settings = tmp_path / "settings.toml"
        settings.write_text(TWO_IDS_A_CALL)
        env = zoho_env(mock.url, UNENROLL_TIME_SCALE="0.01", XDG_STATE_HOME=str(tmp_path / "state"),
                       UNENROLL_TIMEOUT=f"{timeout:g}")
        db_path = tmp_path / "state" / "unenroll" / "quota.db"
        victim = Run(["zoho", str(victim_file), "--yes", "--settings", str(settings)], env, victim_file.parent)
        wait_until(lambda: bool(mock.arrivals(victim_batch)), what="a call of the victim at the mock")
        victim.proc.kill()
        assert victim.proc.wait(timeout=15) == -signal.SIGKILL
        dead = sorted(open_calls_of(db_path, victim.proc.pid))  # killed mid-call: never reported back
        assert dead and all(deadline == pytest.approx(start + timeout) for start, deadline in dead)

        survivor = Run(["zoho", str(survivor_file), "--yes", "--settings", str(settings)], env,
                       survivor_file.parent)
        code, out, err = survivor.finish(timeout=120)
        assert code == 0, out + err
        rows = read_results(survivor_file.with_name("in.results.csv"))
        assert Counter(r["outcome"] for r in rows) == Counter({"unenrolled": len(survivor_learners)})
        assert len(rows) == len(survivor_learners)
        stats = unenroll_stats(mock)
        assert stats["lock_events"] == 0
        assert stats["max_in_rolling_window"] <= 30
        arrivals = mock.arrivals(survivor_batch)
    finally:
        assert mock.stop() == 0
    assert len(arrivals) == 120
    first_deadline, last_deadline = min(d for _, d in dead), max(d for _, d in dead)
    assert arrivals[0] < first_deadline, "the second run started after the dead calls' deadline: nothing to pin"
    # the crash rule: a dead call may still reach the vendor until its deadline, so its slot stays taken,
    # and the 30th call after it waits for that deadline plus the window (start[k + N] >= end[k] + W)
    assert arrivals[30 - len(dead)] >= first_deadline + window
    assert most_in_a_window(arrivals, window, before=first_deadline + window) <= 30 - len(dead)
    # and no longer: the first window holding more than that ends soon after the dead calls' deadline
    freed = next((t for t in arrivals if most_in_a_window(arrivals, window, before=t + 1e-9) > 30 - len(dead)),
                 math.inf)
    assert first_deadline + window <= freed <= last_deadline + window + margin + slack


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
