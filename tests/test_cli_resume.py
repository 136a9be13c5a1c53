"""Stop, kill and resume ``unenroll run`` for real: the command in a subprocess, the Zoho
mock in another (so killing the command leaves the mock's state as it was).

The Zoho mock answers an erecno that is no longer enrolled as absent (``not_enrolled``),
so an item the journal confirmed ``unenrolled`` before a kill, and that still reads
``unenrolled`` with the same attempts in the final results, was not sent again.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli_run import CLI, COURSE, Lines, MockProcess, by_row, read_results, zoho_env

CONFIRMED_NEVER = frozenset({"not_sent", "gave_up"})


def journal_rows(path: Path, scratch: Path) -> dict[int, tuple[str | None, str | None, int, int]]:
    """``index -> (outcome, code, attempts, sending)`` from a journal left by a killed run
    (read from a copy, so the resumed run finds the files exactly as the kill left them)."""
    scratch.mkdir(exist_ok=True)
    for suffix in ("", "-wal"):
        source = Path(str(path) + suffix)
        target = scratch / (path.name + suffix)
        target.unlink(missing_ok=True)
        if source.exists():
            shutil.copyfile(source, target)
    conn = sqlite3.connect(scratch / path.name)
    try:
        rows = conn.execute("SELECT idx, outcome, code, attempts, sending FROM items").fetchall()
    finally:
        conn.close()
    return {idx: (outcome, code, attempts, sending) for idx, outcome, code, attempts, sending in rows}


def start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[subprocess.Popen[bytes], Lines]:
    with log.open("ab") as stderr:
        proc = subprocess.Popen([*CLI, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr)
    assert proc.stdout is not None
    return proc, Lines(proc.stdout)


def finish(proc: subprocess.Popen[bytes], lines: Lines, log: Path) -> tuple[int, str]:
    out = lines.rest(timeout=60)
    code = proc.wait(timeout=60)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    return code, out


@pytest.fixture
def slow_zoho() -> Iterator[MockProcess]:
    """Four batches of 400 learners; each answer takes 50 ms (5 s scaled by 0.01)."""
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "2", "--batches", "2", "--learners", "400",
                       "--latency", "5")
    try:
        yield mock
    finally:
        assert mock.stop() == 0


def job_file(tmp_path: Path, name: str, batches: dict[str, list[str]], start_at: int, per_batch: int) -> Path:
    """A CSV of ``per_batch`` learners from each batch, plus a repeated row and a bad one."""
    rows = []
    for key, erecnos in sorted(batches.items()):
        course, batch = key.split("/")
        rows += [f"{course},{batch},{e}" for e in erecnos[start_at : start_at + per_batch]]
    rows.insert(len(rows) // 2, rows[3])
    rows.append(f"{COURSE},{COURSE},not-an-id")
    path = tmp_path / name
    path.write_text("course_id,batch_id,erecno\n" + "\n".join(rows) + "\n")
    return path


def settings_file(tmp_path: Path) -> Path:
    """Five ids a call, one call in flight: a job of a hundred items takes about a second."""
    path = tmp_path / "settings.toml"
    path.write_text("[zoho.limits]\nmax_ids_per_call = 5\nmax_in_flight = 1\n")
    return path


def test_kill_9_at_random_moments_then_resume_accounts_for_every_row_once(tmp_path: Path,
                                                                           slow_zoho: MockProcess) -> None:
    rng = random.Random(20261123)
    batches = {k: sorted(v) for k, v in slow_zoho.stats()["state"]["batches"].items()}
    # a run killed in the middle of a call leaves that call on the shared quota's record until its
    # start plus the transport's timeout (it may still reach the vendor): a short timeout keeps the
    # resumed runs from waiting the default two minutes for it
    env = zoho_env(slow_zoho.url, UNENROLL_TIMEOUT="3")
    settings = settings_file(tmp_path)
    kills = jobs = 0
    confirmed_total = 0
    while kills < 10:
        assert jobs < 12, f"only {kills} kills landed while a run was going"
        source = job_file(tmp_path, f"job{jobs}.csv", batches, start_at=jobs * 25, per_batch=25)
        journal = tmp_path / f"job{jobs}.results.csv.journal"
        log = tmp_path / f"job{jobs}.log"
        args = ["run", "zoho", str(source), "--settings", str(settings), "--yes"]
        confirmed: dict[int, tuple[str | None, str | None, int, int]] = {}
        for attempt in range(4):
            proc, lines = start(args + (["--resume"] if attempt else []), env, tmp_path, log)
            marker = lines.wait_for(lambda line: line.startswith("sending:"), timeout=60)
            assert marker is not None, log.read_text()[-3000:]
            if attempt < 2:  # kill the first run and the first resume, if they are still going
                time.sleep(rng.uniform(0.0, 1.0))
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
                    kills += 1
                    for index, record in journal_rows(journal, tmp_path / "scratch").items():
                        if record[0] is not None and record[0] not in CONFIRMED_NEVER:
                            # once confirmed, an item's record never changes
                            assert confirmed.setdefault(index, record)[:3] == record[:3]
                    continue
            code, _ = finish(proc, lines, log)
            assert code == 1, log.read_text()[-3000:]  # done; its one malformed row makes it 1
            break
        jobs += 1
        confirmed_total += len(confirmed)

        rows = read_results(tmp_path / f"job{jobs - 1}.results.csv")
        lines_in_input = len(source.read_text().splitlines()) - 1
        assert [r["row"] for r in rows] == list(range(2, lines_in_input + 2))  # every row once, in input order
        final = by_row(rows)
        for index, (outcome, code_, attempts, _) in confirmed.items():
            row = rows[index]  # one item per row: item i is the i-th row
            # confirmed before a kill: replayed, never sent again (a second send would read not_enrolled)
            assert (row["outcome"], row["code"] or None, row["attempts"]) == (outcome, code_, attempts)
        outcomes = [final[n]["outcome"] for n in sorted(final)]
        assert outcomes.count("duplicate") == 1 and outcomes.count("rejected") == 1
        assert set(outcomes) <= {"unenrolled", "not_enrolled", "duplicate", "rejected"}
    assert kills >= 10 and confirmed_total > 0

    state = slow_zoho.stats()["state"]
    for key, erecnos in batches.items():
        targeted = set(erecnos[: jobs * 25])
        assert targeted.isdisjoint(state["batches"][key])  # every targeted learner is unenrolled
        assert targeted <= set(state["unenrolled"][key])
        assert set(erecnos[jobs * 25 :]) <= set(state["batches"][key])  # and nobody else


def test_a_second_process_on_one_journal_is_refused_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "2", "--learners", "100",
                       "--latency", "20")  # 200 ms an answer: the first run is still going when the second comes
    try:
        batches = {k: sorted(v) for k, v in mock.stats()["state"]["batches"].items()}
        source = job_file(tmp_path, "in.csv", batches, start_at=0, per_batch=50)
        env = zoho_env(mock.url)
        args = ["run", "zoho", str(source), "--settings", str(settings_file(tmp_path)), "--yes"]
        log = tmp_path / "first.log"
        first, lines = start(args, env, tmp_path, log)
        assert lines.wait_for(lambda line: line.startswith("sending:"), timeout=60) is not None
        second = subprocess.run([*CLI, *args, "--resume"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "is in use by another unenroll process" in second.stderr
        fresh = subprocess.run([*CLI, *args], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60)
        assert fresh.returncode == 2 and "already exists" in fresh.stderr and "--resume" in fresh.stderr
        assert first.poll() is None, "the first run ended too soon for this test"
        first.send_signal(signal.SIGTERM)
        code, out = finish(first, lines, log)
        assert code == 143
        assert "--resume" in out
        stopped: list[dict[str, Any]] = read_results(tmp_path / "in.results.csv")
        assert len(stopped) == 102 and any(r["outcome"] == "not_sent" for r in stopped)

        resumed = subprocess.run([*CLI, *args, "--resume"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True, timeout=60)
        assert resumed.returncode == 1, resumed.stderr[-3000:]  # done; its one malformed row makes it 1
        assert "were confirmed by the earlier run and not sent again" in resumed.stdout
        final = read_results(tmp_path / "in.results.csv")
        assert [r["row"] for r in final] == list(range(2, 104))
        assert sorted(r["outcome"] for r in final).count("unenrolled") == 100

        # a journal is one job's: the same file against another vendor instance is refused
        elsewhere = {**env, "UNENROLL_BASE_URL": mock.url.replace("127.0.0.1", "localhost")}
        other = subprocess.run([*CLI, *args, "--resume"], env=elsewhere, cwd=tmp_path, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60)
        assert other.returncode == 2 and "belongs to another job" in other.stderr and "base URL" in other.stderr
    finally:
        assert mock.stop() == 0
