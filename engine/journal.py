"""A durable journal of a job, so a run killed at any moment can be resumed.

One SQLite row per input item (by its 0-based index in the input): ``sending`` is set
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
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .model import ItemOutcome, Outcome

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
        self._ended: list[tuple[int, str, str | None, str | None, int]] = []
        self._last_flush = time.monotonic()
        self._window: dict[int, Recalled] = {}
        self._window_end = 0  # indices below this have been fetched into _window
        self._skip_index = -1  # the recalled item being ended right now: already on disk
        self.recalled_confirmed = 0

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
            else:
                conn.executescript(
                    """
                    BEGIN;
                    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    CREATE TABLE items (
                        idx INTEGER PRIMARY KEY, sending INTEGER NOT NULL DEFAULT 0,
                        outcome TEXT, code TEXT, message TEXT, attempts INTEGER NOT NULL DEFAULT 0);
                    COMMIT;
                    """
                )
                conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [("schema", SCHEMA_VERSION), ("fingerprint", fingerprint)])
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
        resumed run knows their call may have taken effect. One small write per call."""
        self._sending.extend((i,) for i in indices)
        self.flush()

    def __call__(self, outcome: ItemOutcome) -> None:
        """A ledger sink: record an item's outcome."""
        if outcome.index == self._skip_index:
            return  # replayed from this journal: already on disk
        self._ended.append((outcome.index, outcome.outcome.value, outcome.code, outcome.message, outcome.attempts))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        pending = len(self._sending) + len(self._ended)
        if pending >= self._flush_rows or time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._sending or self._ended:
            with self._conn:  # one transaction
                self._conn.execute("BEGIN")
                self._conn.executemany(
                    "INSERT INTO items (idx, sending) VALUES (?, 1) ON CONFLICT(idx) DO UPDATE SET sending = 1",
                    self._sending,
                )
                self._conn.executemany(
                    "INSERT INTO items (idx, outcome, code, message, attempts) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(idx) DO UPDATE SET outcome = excluded.outcome, code = excluded.code, "
                    "message = excluded.message, attempts = excluded.attempts",
                    self._ended,
                )
            self._sending.clear()
            self._ended.clear()
        self._last_flush = time.monotonic()

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
