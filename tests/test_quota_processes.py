"""The shared quota across real ``unenroll run`` processes against one Zoho mock tenant: the
mock counts a rolling window on arrival and locks the API at the 31st call in a minute.
By default every run on a machine counts its calls in one SQLite file (here under a
temporary XDG_STATE_HOME), so a resumed run and parallel runs share one window."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli_interrupt import Run, calls, wait_until
from tests.redis_server import redis_url_fixture  # noqa: F401  (the fixture)
from tests.test_cli_run import MockProcess, read_results, zoho_env

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
    assert stats["lock_events"] == 0
    assert stats["max_in_rolling_window"] <= 30
    assert stats["calls"] == 80
    for path, learners in jobs:
        rows = read_results(path.with_name("in.results.csv"))
        assert Counter(r["outcome"] for r in rows) == Counter({"unenrolled": len(learners)})
        assert len(rows) == len(learners)
    assert not any(mock.stats()["state"]["batches"].values())
    # the default store is a file in the user's state folder; with --quota redis:// no file is made
    assert (tmp_path / "state" / "unenroll" / "quota.db").is_file() == (through == "sqlite")
