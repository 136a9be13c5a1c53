"""The journal: a killed job resumes without re-sending confirmed items, and the resumed
report accounts for every item exactly once, as an uninterrupted run would."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import pytest

from tests.conftest import FAST_RETRY, FakeVendor
from unenroll import Item, ItemOutcome, JobSettings, Outcome, run
from unenroll.accounts.journal import BackupState, Journal, JournalError, JournalLocked
from unenroll.model import CallResult, ItemResult

SETTINGS = JobSettings(retry=FAST_RETRY, linger=0.5, seed=3)


def items_for(n: int) -> list[Item]:
    items = [Item("unenroll", (f"c{i % 4}",), str(1000 + i)) for i in range(n)]
    return [*items, items[0], Item("unenroll", ("c0",), "bad-id")]  # a duplicate and a rejected one


class Vendor:
    """Remembers who is still enrolled, like a real vendor: a second unenroll is not_enrolled."""

    def __init__(self) -> None:
        self.enrolled: set[str] | None = None
        self.sent: Counter[str] = Counter()

    def decide(self, target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        assert self.enrolled is not None
        results = []
        for s in subjects:
            self.sent[s] += 1
            if s in self.enrolled:
                self.enrolled.discard(s)
                results.append(ItemResult.final(Outcome.UNENROLLED))
            else:
                results.append(ItemResult.final(Outcome.NOT_ENROLLED, "absent", "not enrolled"))
        return CallResult.answered(results)


async def test_a_resumed_job_never_resends_confirmed_items_and_reports_like_one_run(
    tmp_path: Path, fake_vendor: Callable[..., FakeVendor]
) -> None:
    path, items = tmp_path / "job.db", items_for(2000)
    vendor = Vendor()
    vendor.enrolled = {i.subject for i in items if i.subject.isdigit()}
    first: list[ItemOutcome] = []
    with Journal.open(path, "job-1") as journal, anyio.CancelScope() as scope:

        def sink(outcome: ItemOutcome) -> None:
            first.append(outcome)
            if len(first) == 700:
                scope.cancel()  # the first run dies part way

        await run(fake_vendor(decide=vendor.decide, max_items=20), items, settings=SETTINGS, journal=journal,
                  sinks=[sink])
    confirmed_first = {o.item.subject for o in first if o.outcome is Outcome.UNENROLLED}
    assert 0 < len(confirmed_first) < 2000

    second: list[ItemOutcome] = []
    with Journal.open(path, "job-1", resume=True) as journal:
        report = await run(fake_vendor(decide=vendor.decide, max_items=20), items, settings=SETTINGS,
                           journal=journal, sinks=[second.append])
    assert sorted(o.index for o in second) == list(range(len(items)))
    assert report.counts == {"unenrolled": 2000, "duplicate": 1, "rejected": 1}
    assert report.replayed >= len(confirmed_first)
    assert all(vendor.sent[s] == 1 for s in confirmed_first)  # confirmed: never sent again
    assert not vendor.enrolled


def test_a_journal_belongs_to_one_job(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    Journal.open(path, "job-1").close()
    with pytest.raises(JournalError, match="already exists"):
        Journal.open(path, "job-1")
    with pytest.raises(JournalError, match="another job"):
        Journal.open(path, "job-2", resume=True)
    with pytest.raises(JournalError, match="nothing to resume"):
        Journal.open(tmp_path / "missing.db", "job-1", resume=True)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="not an unenroll journal"):
        Journal.open(tmp_path / "junk.db", "job-1", resume=True)
    assert (tmp_path / "junk.db").read_bytes() == b"this is not sqlite" * 100  # left as it was


def test_a_second_process_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    with Journal.open(path, "job-1"):
        probe = (
            "import sys\nfrom unenroll.accounts.journal import Journal, JournalLocked\n"
            "try:\n    Journal.open(sys.argv[1], 'job-1', resume=True)\n"
            "except JournalLocked as e:\n    print('LOCKED', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith("LOCKED") and "in use by another unenroll process" in out.stdout
    with Journal.open(path, "job-1", resume=True):  # free again once the first one closed
        pass
    assert JournalLocked.__mro__[1] is JournalError


def test_outcomes_are_written_in_batches_and_flushed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    journal = Journal.open(path, "job-1")
    journal._flush_seconds = 3600  # only the row count or close may flush
    journal.before_call(range(10))
    for i in range(10):
        journal(ItemOutcome(i, Item("op", ("t",), str(i)), Outcome.UNENROLLED, "200", None, 1))
    journal.close()
    rows = sqlite3.connect(path).execute("SELECT count(*), sum(sending) FROM items WHERE outcome = 'unenrolled'")
    assert rows.fetchone() == (10, 10)


def test_what_spans_runs_is_kept_the_first_start_every_call_and_one_entry_per_run(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    with Journal.open(path, "job-1") as journal:
        started = journal.started_at
        journal.record_run({"started_at": "run 1"})
        journal.before_call([0, 1])
        journal.before_call([1, 2])
        assert (journal.calls_this_run, journal.items_sent_this_run) == (2, 3)  # item 1 sent twice counts once
    with Journal.open(path, "job-1", resume=True) as journal:  # the first run was killed: no finishing entry
        assert journal.started_at == started is not None
        assert journal.calls_total == 2 and journal.any_sent()
        journal.record_run({"started_at": "run 2"})
        journal.before_call([5])
        journal.record_run({"started_at": "run 2", "exit_code": 0}, replace_last=True)
        assert journal.calls_total == 3 and journal.calls_this_run == 1
        assert journal.runs() == [{"started_at": "run 1"}, {"started_at": "run 2", "exit_code": 0}]


def test_no_call_may_leave_between_the_start_and_the_end_of_the_jobs_backup(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    with Journal.open(path, "job-1") as journal:
        assert journal.backup_state() is None and not journal.any_sent()
        journal.backup_begin(str(tmp_path / "b.jsonl"))
        with pytest.raises(JournalError, match="backup is not complete"):
            journal.before_call([0])
        journal.backup_progress(120, 3, ("unenroll\x1fc/b", 4))
    with Journal.open(path, "job-1", resume=True) as journal:  # still refused after a kill
        with pytest.raises(JournalError, match="backup is not complete"):
            journal.before_call([0])
        state = journal.backup_state()
        assert state is not None and (state.offset, state.calls, state.complete) == (120, 3, False)
        assert journal.backup_pages() == {"unenroll\x1fc/b": 4}
        journal.backup_complete("ab" * 32, 7, 6, 5, 140)
        journal.before_call([0])
        assert journal.backup_state() == BackupState(str(tmp_path / "b.jsonl"), 140, 5, True, "ab" * 32, 7, 6)
