"""Interrupting ``unenroll run`` for real, and what it says afterwards: the command in a
subprocess, the Zoho mock in another (so a kill leaves the mock's state as it was).

Pinned here: a kill -9 during ``--backup`` never lets a change leave before the backup is
complete, and ``--resume`` finishes the backup from where it stopped; ``--resume`` is the
same command plus ``--resume`` (a finished backup is kept); two Ctrl-C still write the
report and say what was sent; an input file that changes after items were sent exits 1,
not 2 (2 promises that nothing was sent). Every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli_run import CLI, COURSE, Lines, MockProcess, read_results, zoho_env


class Run:
    """``unenroll run ...`` in a subprocess, its stdout and stderr read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen([*CLI, "run", *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out, self.err = Lines(self.proc.stdout), Lines(self.proc.stderr)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = self.out.rest(timeout), self.err.rest(timeout)
        code = self.proc.wait(timeout=timeout)
        assert "Traceback" not in err, err[-3000:]
        return code, out, err


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.02)


def calls(mock: MockProcess, endpoint: str) -> int:
    result: int = mock.stats(state=False)["endpoints"][endpoint]["calls"]
    return result


def learners_file(tmp_path: Path, mock: MockProcess, per_batch: int | None = None) -> tuple[Path, list[str]]:
    batches = {k: sorted(v) for k, v in mock.stats()["state"]["batches"].items()}
    rows, erecnos = [], []
    for key, members in sorted(batches.items()):
        course, batch = key.split("/")
        for erecno in members[:per_batch]:
            rows.append(f"{course},{batch},{erecno}")
            erecnos.append(erecno)
    path = tmp_path / "in.csv"
    path.write_text("course_id,batch_id,erecno\n" + "\n".join(rows) + "\n")
    return path, erecnos


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def report_of(tmp_path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((tmp_path / "in.results.csv.report.json").read_text())
    return report


@pytest.fixture
def slow_zoho() -> Iterator[MockProcess]:
    """Two batches of 400 learners; each answer takes 50 ms (5 s scaled by 0.01)."""
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "2", "--learners", "400",
                       "--latency", "5")
    try:
        yield mock
    finally:
        assert mock.stop() == 0


def test_a_kill_9_during_the_backup_then_resume_finishes_the_backup_before_any_change(
        tmp_path: Path, slow_zoho: MockProcess) -> None:
    source, erecnos = learners_file(tmp_path, slow_zoho)
    env = zoho_env(slow_zoho.url)
    args = ["zoho", str(source), "--yes", "--backup", "before.jsonl", "--change-threshold", "100"]  # every learner
    first = Run(args, env, tmp_path)
    wait_until(lambda: calls(slow_zoho, "read_learners") >= 12, what="12 reads")
    first.proc.kill()
    first.proc.wait(timeout=30)
    reads_before_kill = calls(slow_zoho, "read_learners")
    assert calls(slow_zoho, "unenroll") == 0
    partial = tmp_path / "before.jsonl.partial"
    kept = partial.read_text().splitlines()
    assert kept and not (tmp_path / "before.jsonl").exists()  # the pages read so far are on disk

    # the same command, plus --resume, and even without --backup: the journal knows the backup is unfinished
    resumed = Run(["zoho", str(source), "--yes", "--resume", "--change-threshold", "100"], env, tmp_path)
    code, out, _ = resumed.finish()
    assert code == 0, out[-3000:]
    assert "goes on where it stopped" in out
    lines = [json.loads(line) for line in (tmp_path / "before.jsonl").read_text().splitlines()]
    assert sorted(line["subject"] for line in lines) == sorted(erecnos)  # one line per learner
    # every record shows the learner enrolled: no unenroll call left before the backup was complete
    assert all(line["record"]["enrollmentStatus"] == "enrolled" for line in lines)
    assert [json.loads(line) for line in kept] == lines[: len(kept)]  # what the first run read was kept
    reads_of_resume = calls(slow_zoho, "read_learners") - reads_before_kill
    assert reads_of_resume <= 32 - len(kept) // 25 + 4  # the rest only (give or take the pages in flight)
    assert not set(erecnos) & {e for v in slow_zoho.stats()["state"]["batches"].values() for e in v}
    report = report_of(tmp_path)
    assert report["backup"] == str((tmp_path / "before.jsonl").resolve()) and report["backup_complete"]
    assert report["totals"]["runs"] == 2 and report["totals"]["backup_calls"] >= 32


def test_resume_is_the_same_command_plus_resume_after_a_finished_backup(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "100",
                       "--latency", "20")  # 200 ms an answer
    try:
        source, erecnos = learners_file(tmp_path, mock)
        env = zoho_env(mock.url)
        settings = settings_file(tmp_path, "change_threshold = 100\n[zoho.limits]\nmax_ids_per_call = 5\n"
                                           "max_in_flight = 1\n")  # every learner of the batch: meant
        args = ["zoho", str(source), "--yes", "--backup", "before.jsonl", "--settings", str(settings)]
        first = Run(args, env, tmp_path)
        assert first.out.wait_for(lambda line: line.startswith("sending:"), timeout=60) is not None
        wait_until(lambda: calls(mock, "unenroll") >= 2, what="two unenroll calls")
        first.proc.send_signal(signal.SIGTERM)
        code, _, _ = first.finish()
        assert code == 143
        stopped = report_of(tmp_path)
        backup = (tmp_path / "before.jsonl").read_bytes()

        code, out, err = Run([*args, "--resume"], env, tmp_path).finish()
        assert code == 0, err[-3000:]
        assert "completed by an earlier run" in out
        assert (tmp_path / "before.jsonl").read_bytes() == backup  # kept as it was, not read again
        final = report_of(tmp_path)
        assert final["started_at"] == stopped["started_at"]  # the first run's start
        assert final["backup"] == str((tmp_path / "before.jsonl").resolve()) and final["backup_complete"]
        assert final["backup_records"] == 100
        assert final["totals"]["runs"] == 2
        assert final["totals"]["calls"] == stopped["sent_this_run"]["calls"] + final["sent_this_run"]["calls"]
        assert final["counts"] == {"unenrolled": 100}
        # the closing summary spans both runs, as the report does
        assert "(2 runs)" in out and f"backup     {final['backup']} (100 records)" in out, out
        assert final["next"] == ["nothing: every row reached the wanted state"] and final["errors"] is None
        assert sorted(r["erecno"] for r in read_results(tmp_path / "in.results.csv")) == sorted(erecnos)
    finally:
        assert mock.stop() == 0


def test_two_ctrl_c_abandon_the_calls_in_flight_and_still_write_the_report(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "2", "--learners", "50",
                       "--latency", "2000")  # 20 s an answer: still in flight when the user gives up waiting
    try:
        source, _ = learners_file(tmp_path, mock)
        settings = settings_file(tmp_path, "timeout = 300\n[zoho.limits]\nmax_ids_per_call = 10\n")
        run = Run(["zoho", str(source), "--yes", "--settings", str(settings)], zoho_env(mock.url), tmp_path)
        assert run.out.wait_for(lambda line: line.startswith("sending:"), timeout=60) is not None
        wait_until(lambda: calls(mock, "unenroll") >= 1, what="a call in flight")
        run.proc.send_signal(signal.SIGINT)
        assert run.err.wait_for(lambda line: "stopping" in line, timeout=30) is not None
        run.proc.send_signal(signal.SIGINT)
        code, out, err = run.finish(timeout=60)
        assert code == 130
        assert "before anything was sent" not in err and "NO report" not in err
        report = report_of(tmp_path)
        sent = report["sent_this_run"]
        assert report["exit_code"] == 130 and sent["calls"] >= 1 and sent["items"] >= 10
        assert f"this run sent {sent['items']:,} items in {sent['calls']:,} calls" in out
        rows = read_results(tmp_path / "in.results.csv")
        assert len(rows) == 100 and {r["outcome"] for r in rows} == {"not_sent"}
        without_answer = [r for r in rows if "without a final answer" in r["message"]]
        assert len(without_answer) == sent["items"]  # the abandoned calls' items say they were sent
    finally:
        assert mock.stop() == 0


def test_an_input_file_changed_after_items_were_sent_exits_1_saying_what_was_sent(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "2", "--learners", "400",
                       "--latency", "50")  # 500 ms an answer
    try:
        source, _ = learners_file(tmp_path, mock, per_batch=300)
        settings = settings_file(tmp_path, "[job]\nmax_buffered_items = 50\n"
                                           "[zoho.limits]\nmax_ids_per_call = 50\nmax_in_flight = 1\n")
        run = Run(["zoho", str(source), "--yes", "--settings", str(settings)], zoho_env(mock.url), tmp_path)
        assert run.out.wait_for(lambda line: line.startswith("sending:"), timeout=60) is not None
        wait_until(lambda: calls(mock, "unenroll") >= 1, what="a call")
        with source.open("a") as f:  # the file changes while the job still reads it
            f.write(f"{COURSE},{COURSE}1,7000000000001\n")
        code, _, err = run.finish(timeout=120)
        assert code == 1, err[-3000:]  # not 2: things were sent
        report = report_of(tmp_path)
        assert report["exit_code"] == 1 and "changed while it was being read" in report["stopped"]
        sent = report["sent_this_run"]
        assert sent["items"] >= 50 and sent["calls"] >= 1
        assert f"{sent['items']:,} items had been sent in {sent['calls']:,} calls" in err
        assert report["counts"].get("unenrolled", 0) >= 50
    finally:
        assert mock.stop() == 0
