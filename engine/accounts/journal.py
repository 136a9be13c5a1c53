"""A durable journal of a job, so a run killed at any moment can be resumed.

One SQLite row per input item (by its 0-based index in the input, with the input row it
came from, so the results file can be written in input order): ``sending`` is set
before each call that carries it (committed before the call leaves), and its outcome is
written when it ends (buffered, committed with the next call's marks or at most every
``flush_seconds``). So the journal costs about one small transaction per call, not per
item.

Resume (``Journal.open(path, fingerprint, resume=True)``) replays the same input:

- an item with a *confirmed* outcome (anything but ``not_sent`` and ``gave_up``) ends
  with that outcome again and is never sent;
- an item that was being sent when the run died is sent again; if the vendor now says
  it was not enrolled, the outcome notes that the interrupted call may have done it;
- everything else is processed as in a fresh run.

So the resumed run's report accounts for every input item exactly once, as an
uninterrupted run would. A kill loses at most the last unflushed batch: those items are
simply sent again, which for an unenrollment is safe (the vendor answers not-enrolled).

Only one process may use a journal: the connection holds SQLite's exclusive lock for its
lifetime, and a second process is refused with :class:`JournalLocked`.

A job that backs up first records its backup here too (see ``backup.py``): the path, how
many bytes of ``<path>.partial`` hold finished pages, the next page of each whole-target
read, and at last that it is complete (with its hash). Invariant: from
:meth:`Journal.backup_begin` until :meth:`Journal.backup_complete`, :meth:`Journal.before_call`
refuses, so no change can leave before the backup of what it changes is on disk.

The journal also keeps what spans runs: the first run's start time, the calls of all runs
(counted durably before each call leaves) and one entry per run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from unenroll.model import ItemOutcome, Outcome

_BACKUP_KEYS = ("backup.path", "backup.offset", "backup.calls", "backup.complete", "backup.sha256",
                "backup.records", "backup.found")

SCHEMA_VERSION = "1"
NOT_CONFIRMED = frozenset({Outcome.NOT_SENT, Outcome.GAVE_UP})


class JournalError(Exception):
    """The journal cannot be used as asked (wrong input, exists, corrupt)."""


class JournalLocked(JournalError):
    """Another process is using this journal."""


@dataclass(frozen=True, slots=True)
class Recalled:
    """What an earlier run recorded about one item."""

    outcome: Outcome | None
    code: str | None
    message: str | None
    attempts: int
    was_sending: bool

    @property
    def confirmed(self) -> bool:
        return self.outcome is not None and self.outcome not in NOT_CONFIRMED


@dataclass(frozen=True, slots=True)
class RowOutcome:
    """One item's recorded outcome and the input row it came from (``None``: not known)."""

    row: int | None
    outcome: str
    code: str
    message: str
    attempts: int


@dataclass(frozen=True, slots=True)
class BackupState:
    """A journaled backup: ``offset`` bytes of ``<path>.partial`` hold finished pages (all
    of the file once ``complete``); ``calls`` counts the read calls of every run."""

    path: str
    offset: int
    calls: int
    complete: bool
    sha256: str | None = None
    records: int = 0
    found: int = 0


class Journal:
    """Write-ahead record of one job. Use :meth:`open`; close (or ``with``) to flush."""

    def __init__(
        self, conn: sqlite3.Connection, *, resumed: bool, flush_seconds: float = 0.2, flush_rows: int = 5000
    ) -> None:
        self._conn = conn
        self.resumed = resumed
        self._flush_seconds = flush_seconds
        self._flush_rows = flush_rows
        self._sending: list[tuple[int]] = []
        self._ended: list[tuple[int, str, str | None, str | None, int, int | None]] = []
        self._last_flush = time.monotonic()
        self._window: dict[int, Recalled] = {}
        self._window_end = 0  # indices below this have been fetched into _window
        self._skip_index = -1  # the recalled item being ended right now: already on disk
        self.recalled_confirmed = 0
        self._calls_pending = 0  # calls marked since the last flush (added to calls.total)
        self.calls_this_run = 0
        self._sent_this_run = bytearray()  # a bit per item index marked sending by this run
        self.items_sent_this_run = 0
        meta = self._meta()
        self._backup_pending = "backup.path" in meta and meta.get("backup.complete") != "1"
        self.started_at: str | None = meta.get("started_at")

    @classmethod
    def open(cls, path: str | Path, fingerprint: str, *, resume: bool = False) -> Journal:
        """Create a journal for a new job, or reopen one to resume it.

        ``fingerprint`` identifies the job's input and settings (the CLI hashes the input
        file, vendor and operation); resuming with another fingerprint is refused.
        """
        path = Path(path)
        existed = path.exists() and path.stat().st_size > 0
        if existed:
            with path.open("rb") as head:
                if head.read(16) != b"SQLite format 3\x00":  # opening it would rewrite it as a database
                    raise JournalError(f"{path} is not an unenroll journal; it was left as it is")
        if existed and not resume:
            raise JournalError(f"journal {path} already exists: resume its job (resume=True, --resume) "
                               "or choose another journal path")
        if resume and not existed:
            raise JournalError(f"journal {path} does not exist: there is nothing to resume")
        conn = sqlite3.connect(path, isolation_level=None, timeout=0.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN EXCLUSIVE")  # take the lock now, and keep it
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc):
                raise JournalLocked(f"journal {path} is in use by another unenroll process") from None
            raise JournalError(f"journal {path} cannot be opened: {exc}") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalError(f"{path} is not an unenroll journal: {exc}") from None
        try:
            if existed:
                cls._check(conn, path, fingerprint)
                cls._add_rows(conn)
            else:
                conn.executescript(
                    """
                    BEGIN;
                    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    CREATE TABLE items (
                        idx INTEGER PRIMARY KEY, sending INTEGER NOT NULL DEFAULT 0,
                        outcome TEXT, code TEXT, message TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                        row INTEGER);
                    CREATE INDEX items_by_row ON items (row);
                    COMMIT;
                    """
                )
                conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [("schema", SCHEMA_VERSION), ("fingerprint", fingerprint),
                                  ("started_at", datetime.now(UTC).isoformat())])
        except BaseException:
            conn.close()
            raise
        return cls(conn, resumed=existed)

    @staticmethod
    def _check(conn: sqlite3.Connection, path: Path, fingerprint: str) -> None:
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{path} is not an unenroll journal: {exc}") from None
        if meta.get("schema") != SCHEMA_VERSION:
            raise JournalError(f"{path} was written by another version of unenroll")
        if meta.get("fingerprint") != fingerprint:
            raise JournalError(
                f"journal {path} belongs to another job (different input, vendor, operation or options)"
            )

    @staticmethod
    def _add_rows(conn: sqlite3.Connection) -> None:
        """A journal begun before items kept their input row gets the column (its earlier
        items have none: the results file lists them after the rows, see :meth:`outcomes_by_row`)."""
        columns = {name for _, name, *_ in conn.execute("PRAGMA table_info(items)")}
        if "row" not in columns:
            conn.executescript("BEGIN; ALTER TABLE items ADD COLUMN row INTEGER; "
                               "CREATE INDEX items_by_row ON items (row); COMMIT;")

    # -- resume ---------------------------------------------------------------------------

    def recall(self, index: int) -> Recalled | None:
        """What the earlier run recorded for ``index``. Call with rising indices."""
        if not self.resumed:
            return None
        if index >= self._window_end:
            rows = self._conn.execute(
                "SELECT idx, sending, outcome, code, message, attempts FROM items "
                "WHERE idx >= ? AND idx < ? ORDER BY idx",
                (index, index + 10_000),
            ).fetchall()
            self._window = {
                idx: Recalled(Outcome(outcome) if outcome else None, code, message, attempts, bool(sending))
                for idx, sending, outcome, code, message, attempts in rows
            }
            self._window_end = index + 10_000
        recalled = self._window.pop(index, None)
        if recalled is not None and recalled.confirmed:
            self._skip_index = index
            self.recalled_confirmed += 1
        return recalled

    # -- recording ------------------------------------------------------------------------

    def before_call(self, indices: Iterable[int]) -> None:
        """Mark items as being sent, durably, before the call leaves: after a kill, the
        resumed run knows their call may have taken effect. One small write per call.
        Refused (:class:`JournalError`) while the job's backup is not complete."""
        if self._backup_pending:
            raise JournalError("this job's backup is not complete: nothing may be changed before it is")
        marks = [(i,) for i in indices]
        sent = self._sent_this_run
        for (i,) in marks:
            byte, bit = divmod(i, 8)
            if byte >= len(sent):
                sent.extend(bytes(byte + 1 - len(sent) + 1024))
            if not sent[byte] & (1 << bit):
                sent[byte] |= 1 << bit
                self.items_sent_this_run += 1
        self._sending.extend(marks)
        self._calls_pending += 1
        self.calls_this_run += 1
        self.flush()

    def is_replay(self, outcome: ItemOutcome) -> bool:
        """``outcome`` is an earlier run's, replayed now (a sink after the journal may ask)."""
        return outcome.index == self._skip_index

    def __call__(self, outcome: ItemOutcome) -> None:
        """A ledger sink: record an item's outcome."""
        if outcome.index == self._skip_index:
            return  # replayed from this journal: already on disk
        row = outcome.item.meta.get("row") if outcome.item.meta else None
        self._ended.append((outcome.index, outcome.outcome.value, outcome.code, outcome.message, outcome.attempts,
                            row if isinstance(row, int) else None))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        pending = len(self._sending) + len(self._ended)
        if pending >= self._flush_rows or time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._sending or self._ended:
            with self._conn:  # one transaction
                self._conn.execute("BEGIN")
                if self._calls_pending:
                    self._conn.execute(
                        "INSERT INTO meta VALUES ('calls.total', ?) ON CONFLICT(key) DO UPDATE SET "
                        "value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT)",
                        (str(self._calls_pending),))
                self._conn.executemany(
                    "INSERT INTO items (idx, sending) VALUES (?, 1) ON CONFLICT(idx) DO UPDATE SET sending = 1",
                    self._sending,
                )
                self._conn.executemany(
                    "INSERT INTO items (idx, outcome, code, message, attempts, row) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(idx) DO UPDATE SET outcome = excluded.outcome, code = excluded.code, "
                    "message = excluded.message, attempts = excluded.attempts, row = excluded.row",
                    self._ended,
                )
            self._sending.clear()
            self._ended.clear()
            self._calls_pending = 0
        self._last_flush = time.monotonic()

    # -- the account, in input order -------------------------------------------------------

    def outcomes_by_row(self) -> Iterator[RowOutcome]:
        """Every recorded outcome, by input row (items without a row last, by index): streamed
        from disk, so memory stays flat whatever the job's size. Flushes first."""
        self.flush()
        cursor = self._conn.execute(
            "SELECT row, outcome, code, message, attempts FROM items WHERE outcome IS NOT NULL "
            "ORDER BY row IS NULL, row, idx")
        while batch := cursor.fetchmany(2000):
            for row, outcome, code, message, attempts in batch:
                yield RowOutcome(row, outcome, code or "", message or "", attempts)

    # -- what spans runs ------------------------------------------------------------------

    def _meta(self, prefix: str = "") -> dict[str, str]:
        rows = self._conn.execute("SELECT key, value FROM meta WHERE key >= ? AND key < ?",
                                  (prefix, prefix + "\uffff")).fetchall()
        return dict(rows)

    def _set_meta(self, values: Mapping[str, object]) -> None:
        self._conn.executemany("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                               [(k, str(v)) for k, v in values.items()])

    @property
    def calls_total(self) -> int:
        """Calls of every run on this journal (those marked before they left)."""
        return int(self._meta("calls.").get("calls.total", "0")) + self._calls_pending

    def any_sent(self) -> bool:
        """Some item was ever marked as being sent (by any run)."""
        row = self._conn.execute("SELECT 1 FROM items WHERE sending = 1 OR attempts > 0 LIMIT 1").fetchone()
        return row is not None or bool(self._sending)

    def runs(self) -> list[dict[str, object]]:
        """One entry per run recorded with :meth:`record_run`, oldest first."""
        runs: list[dict[str, object]] = json.loads(self._meta("runs").get("runs", "[]"))
        return runs

    def record_run(self, run: Mapping[str, object], *, replace_last: bool = False) -> None:
        """Append this run's entry (``replace_last``: update the entry it appended before)."""
        runs = self.runs()
        if replace_last and runs:
            runs[-1] = dict(run)
        else:
            runs.append(dict(run))
        with self._conn:
            self._conn.execute("BEGIN")
            self._set_meta({"runs": json.dumps(runs, default=str)})

    # -- the backup -----------------------------------------------------------------------

    def backup_state(self) -> BackupState | None:
        """The job's backup as journaled, or ``None`` if it has none."""
        meta = self._meta("backup.")
        if "backup.path" not in meta:
            return None
        sha = meta.get("backup.sha256")
        return BackupState(meta["backup.path"], int(meta.get("backup.offset", "0")), int(meta.get("backup.calls", "0")),
                           meta.get("backup.complete") == "1", sha or None, int(meta.get("backup.records", "0")),
                           int(meta.get("backup.found", "0")))

    def backup_begin(self, path: str) -> None:
        """The job backs up to ``path`` before any change (a fresh start: no page is done)."""
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("CREATE TABLE IF NOT EXISTS backup_pages (read TEXT PRIMARY KEY, next INTEGER NOT NULL)")
            self._conn.execute("DELETE FROM backup_pages")
            self._conn.execute(f"DELETE FROM meta WHERE key IN ({','.join('?' * len(_BACKUP_KEYS))})", _BACKUP_KEYS)
            self._conn.execute("DELETE FROM meta WHERE key >= 'backup.listed.' AND key < 'backup.listed.\uffff'")
            self._set_meta({"backup.path": path, "backup.offset": 0, "backup.calls": 0})
        self._backup_pending = True

    def backup_listed(self) -> dict[str, tuple[int, bool]]:
        """Whole-target reads: the enrolments each listed and whether it reached the end."""
        listed: dict[str, tuple[int, bool]] = {}
        for key, value in self._meta("backup.listed.").items():
            count, _, ended = value.partition(",")
            listed[key.removeprefix("backup.listed.")] = (int(count), ended == "1")
        return listed

    def backup_pages(self) -> dict[str, int]:
        """Whole-target reads: the next page to read, by read key."""
        try:
            return dict(self._conn.execute("SELECT read, next FROM backup_pages").fetchall())
        except sqlite3.OperationalError:  # a journal that never began a backup
            return {}

    def backup_progress(self, offset: int, calls: int, page: tuple[str, int] | None = None,
                        listed: tuple[int, bool] | None = None) -> None:
        """Durably: ``offset`` bytes of the partial file hold finished pages; ``page`` is a
        whole-target read's key and its next page, ``listed`` what that read has listed so far
        and whether it reached the end. Call after the file was flushed."""
        with self._conn:
            self._conn.execute("BEGIN")
            values: dict[str, object] = {"backup.offset": offset, "backup.calls": calls}
            if page is not None and listed is not None:
                values[f"backup.listed.{page[0]}"] = f"{listed[0]},{int(listed[1])}"
            self._set_meta(values)
            if page is not None:
                self._conn.execute("INSERT INTO backup_pages VALUES (?, ?) ON CONFLICT(read) DO UPDATE SET "
                                   "next = excluded.next", page)

    def backup_complete(self, sha256: str, records: int, found: int, calls: int, offset: int) -> None:
        """The backup file is complete and in place: changes may be sent from now on."""
        with self._conn:
            self._conn.execute("BEGIN")
            self._set_meta({"backup.complete": 1, "backup.sha256": sha256, "backup.records": records,
                            "backup.found": found, "backup.calls": calls, "backup.offset": offset})
        self._backup_pending = False

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
