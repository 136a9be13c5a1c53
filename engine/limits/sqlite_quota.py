"""A quota store in a SQLite file: shared by every process on one machine, surviving Ctrl-C,
kill -9 and resume.

Keeps the invariant of :mod:`unenroll.limits.quota` (``start[k + N] >= end[k] + W + margin``
across participants, an unreported end counted at ``start + call_timeout``, shared pauses,
waiters served oldest first). Each step is one ``BEGIN IMMEDIATE`` transaction (the file's
write lock is taken before anything is read, so two processes never decide on the same
rows); WAL, so a killed process loses nothing it committed. The clock is ``time.time()``:
one machine, one clock. The ``*_step`` methods are the steps themselves (synchronous, for
tests on a fake clock); the async methods run them in a worker thread. Calls that count
against no rule any more are pruned oldest first, up to the first one still needed, as in
the other stores: a call in flight keeps its place for the calls after it.

The command line's default file is :func:`default_quota_path`.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio

from unenroll.limits.quota import (
    TICKET_GRACE,
    TURN_POLL,
    Grant,
    PastCall,
    QuotaKey,
    Usage,
    WindowRule,
    earliest_start,
    fact_from_json,
    horizon,
)
from unenroll.limits.window import sane_pause

BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT NOT NULL, call_id TEXT NOT NULL, participant TEXT NOT NULL,
    start REAL NOT NULL, deadline REAL NOT NULL, "end" REAL,
    PRIMARY KEY (key, call_id)
);
CREATE INDEX IF NOT EXISTS calls_by_start ON calls (key, start);
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, paused_until REAL NOT NULL, horizon REAL NOT NULL);
CREATE TABLE IF NOT EXISTS facts (
    key TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key, name)
);
CREATE TABLE IF NOT EXISTS tickets (
    key TEXT NOT NULL, participant TEXT NOT NULL, first_asked REAL NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (key, participant)
);
"""

# a call that counts against no rule any more (parameters: span, now, now): ended, or past its deadline,
# more than the widest window (plus margin) ago
_GONE = 'MIN(COALESCE("end", deadline), deadline) + ? < ? AND ("end" IS NOT NULL OR deadline <= ?)'


def default_quota_path(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/unenroll/quota.db``, or ``~/.local/state/unenroll/quota.db``."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"
    return base / "unenroll" / "quota.db"


class SqliteQuotaStore:
    """:class:`~unenroll.limits.quota.QuotaStore` in a SQLite file (see the module docstring)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time, *,
                 ticket_grace: float = TICKET_GRACE) -> None:
        self.path = path
        self._clock = clock
        self.ticket_grace = ticket_grace
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        self._lock = threading.Lock()  # one connection, used from worker threads one at a time
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")  # a killed process loses nothing committed in WAL
        self._closed = False
        with self._step() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def _step(self) -> Iterator[sqlite3.Connection]:
        """One atomic step: the write lock first, then read and write, then commit."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def acquire_step(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str,
                     call_timeout: float) -> Grant:
        k = key.as_text()
        with self._step() as db:
            now = self._clock()
            row = db.execute("SELECT paused_until, horizon FROM keys WHERE key = ?", (k,)).fetchone()
            paused_until, span = row if row is not None else (float("-inf"), 0.0)
            span = max(span, horizon(rules))
            db.execute("INSERT INTO keys VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET horizon = excluded.horizon",
                       (k, paused_until, span))
            # calls that count against no rule any more, even by the crash rule: oldest first, up to the
            # first one still needed (a call in flight keeps its place for the calls after it)
            db.execute(f'DELETE FROM calls WHERE key = ? AND start < COALESCE((SELECT MIN(start) FROM calls '
                       f'WHERE key = ? AND NOT ({_GONE})), 1e308)', (k, k, span, now, now))
            db.execute("DELETE FROM tickets WHERE key = ? AND expires < ?", (k, now))
            db.execute("INSERT OR IGNORE INTO tickets VALUES (?, ?, ?, ?)", (k, participant, now, now))
            nth = [self._nth_latest(db, k, rule.calls) for rule in rules]
            latest = db.execute("SELECT MAX(start) FROM calls WHERE key = ?", (k,)).fetchone()[0]
            at = earliest_start(now, rules, nth, latest, paused_until)
            first = db.execute("SELECT participant FROM tickets WHERE key = ? ORDER BY first_asked, participant "
                               "LIMIT 1", (k,)).fetchone()[0]
            if at <= now and first == participant:
                call_id = uuid.uuid4().hex
                db.execute("DELETE FROM tickets WHERE key = ? AND participant = ?", (k, participant))
                db.execute("INSERT INTO calls VALUES (?, ?, ?, ?, ?, NULL)",
                           (k, call_id, participant, now, now + call_timeout))
                return Grant(call_id, 0.0, now)
            wait = at - now if at > now else TURN_POLL  # the slot is free: an older waiter takes it first
            db.execute("UPDATE tickets SET expires = ? WHERE key = ? AND participant = ?",
                       (now + wait + self.ticket_grace, k, participant))
            return Grant(None, wait, now)

    @staticmethod
    def _nth_latest(db: sqlite3.Connection, key: str, n: int) -> PastCall | None:
        row = db.execute('SELECT start, "end", deadline FROM calls WHERE key = ? ORDER BY start DESC, rowid DESC '
                         "LIMIT 1 OFFSET ?", (key, n - 1)).fetchone()
        return None if row is None else PastCall(row[0], row[1], row[2])

    def done_step(self, key: QuotaKey, call_id: str) -> None:
        with self._step() as db:
            db.execute('UPDATE calls SET "end" = MIN(MAX(?, start), deadline) WHERE key = ? AND call_id = ? '
                       'AND "end" IS NULL', (self._clock(), key.as_text(), call_id))

    def pause_step(self, key: QuotaKey, seconds: float) -> None:
        seconds = sane_pause(seconds)
        with self._step() as db:
            until = self._clock() + seconds
            db.execute("INSERT INTO keys VALUES (?, ?, 0.0) ON CONFLICT (key) DO UPDATE SET "
                       "paused_until = MAX(paused_until, excluded.paused_until)", (key.as_text(), until))

    def usage_step(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str) -> Usage:
        k = key.as_text()
        with self._step() as db:
            now = self._clock()
            windows = []
            for rule in rules:
                mine, others = db.execute(
                    "SELECT COALESCE(SUM(participant = ?), 0), COALESCE(SUM(participant != ?), 0) FROM calls "
                    "WHERE key = ? AND start > ?", (participant, participant, k, now - rule.window)).fetchone()
                windows.append((int(mine), int(others)))
            row = db.execute("SELECT paused_until FROM keys WHERE key = ?", (k,)).fetchone()
            return Usage(tuple(windows), max(0.0, row[0] - now) if row is not None else 0.0)

    def peek_step(self, key: QuotaKey, rules: Sequence[WindowRule]) -> float:
        k = key.as_text()
        with self._step() as db:
            now = self._clock()
            row = db.execute("SELECT paused_until FROM keys WHERE key = ?", (k,)).fetchone()
            nth = [self._nth_latest(db, k, rule.calls) for rule in rules]
            latest = db.execute("SELECT MAX(start) FROM calls WHERE key = ?", (k,)).fetchone()[0]
            return max(0.0, earliest_start(now, rules, nth, latest, row[0] if row is not None else -math.inf) - now)

    def remember_step(self, key: QuotaKey, name: str, value: Mapping[str, object]) -> None:
        with self._step() as db:
            db.execute("INSERT INTO facts VALUES (?, ?, ?) "
                       "ON CONFLICT (key, name) DO UPDATE SET value = excluded.value",
                       (key.as_text(), name, json.dumps(dict(value))))

    def recall_step(self, key: QuotaKey, name: str) -> dict[str, object] | None:
        with self._step() as db:
            row = db.execute("SELECT value FROM facts WHERE key = ? AND name = ?", (key.as_text(), name)).fetchone()
        return fact_from_json(row[0] if row is not None else None)

    def withdraw_step(self, key: QuotaKey, participant: str) -> None:
        with self._step() as db:
            db.execute("DELETE FROM tickets WHERE key = ? AND participant = ?", (key.as_text(), participant))

    async def try_acquire(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str,
                          call_timeout: float) -> Grant:
        return await anyio.to_thread.run_sync(
            lambda: self.acquire_step(key, rules, participant=participant, call_timeout=call_timeout))

    async def done(self, key: QuotaKey, call_id: str) -> None:
        await anyio.to_thread.run_sync(self.done_step, key, call_id)

    async def pause(self, key: QuotaKey, seconds: float) -> None:
        await anyio.to_thread.run_sync(self.pause_step, key, seconds)

    async def usage(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str) -> Usage:
        return await anyio.to_thread.run_sync(lambda: self.usage_step(key, rules, participant=participant))

    async def peek(self, key: QuotaKey, rules: Sequence[WindowRule]) -> float:
        return await anyio.to_thread.run_sync(self.peek_step, key, rules)

    async def remember(self, key: QuotaKey, name: str, value: Mapping[str, object]) -> None:
        await anyio.to_thread.run_sync(self.remember_step, key, name, value)

    async def recall(self, key: QuotaKey, name: str) -> dict[str, object] | None:
        return await anyio.to_thread.run_sync(self.recall_step, key, name)

    async def withdraw(self, key: QuotaKey, participant: str) -> None:
        await anyio.to_thread.run_sync(self.withdraw_step, key, participant)

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
