"""A tenant's quota shared by every caller: runs, processes and hosts.

A vendor counts calls per tenant (per organisation and API, or per IP), not per job. So
the record of calls lives in a :class:`QuotaStore` that every caller of the tenant reaches
(memory for one process, a SQLite file for one machine, Redis for many hosts), and
:class:`SharedWindowLimiter` is the engine's :class:`~unenroll.limits.window.CallLimiter`
on top of it.

Invariant every store keeps, for each :class:`WindowRule` (``calls`` N per ``window`` W)
of a :class:`QuotaKey`, with every participant's calls ordered by start on the **store's
own clock**::

    start[k + N] >= end[k] + W + margin

where ``end`` is the moment the call's answer was reported back, and a call whose end is
never reported (its process was killed) counts as ended at ``start + call_timeout``, the
latest it could have reached the vendor (an end reported later is cut to that). A call
arrives at the vendor between its start and its end, so no window of W at the vendor holds
more than N arrivals, whoever sent them. Starts are also ``min_interval`` apart.

Pauses are shared: a pause by one participant (a lock, a 429) holds every start of the
key until ``paused_until = max(old, now + seconds)``. Waiting participants are served in
order: a waiter holds a ticket stamped with the time it first asked, a slot goes only to the
oldest live ticket, and a ticket not renewed within its wait plus ``ticket_grace`` lapses (a
dead waiter blocks nobody for long); so none starves.

:func:`earliest_start` is the one rule every backend applies (Redis in Lua, the same sums).
"""

from __future__ import annotations

import json
import math
import os
import socket
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import anyio

from unenroll.limits.window import Permit, sane_pause

# a waiter whose ticket is not renewed within its wait plus this lapses (seconds)
TICKET_GRACE = 2.0
# how long a cancelled waiter tries to withdraw its ticket (seconds); past it the ticket lapses by itself
WITHDRAW_TIMEOUT = 1.0
# writes of ends and pauses waiting for the store; beyond, a write is dropped (the crash rule covers it)
MAX_PENDING_WRITES = 10_000


@dataclass(frozen=True, slots=True)
class QuotaKey:
    """What the vendor counts: a vendor's tenant's limit group."""

    vendor: str  # plugin name
    tenant: str  # base URL (normalised: scheme://host[:port]) or an explicit key
    group: str  # endpoint or limit group name

    def as_text(self) -> str:
        """The storage key: ``vendor|tenant|group``."""
        return f"{self.vendor}|{self.tenant}|{self.group}"


@dataclass(frozen=True, slots=True)
class WindowRule:
    """One window of a limit group: at most ``calls`` per ``window`` seconds."""

    calls: int
    window: float
    margin: float = 0.0
    min_interval: float = 0.0

    def __post_init__(self) -> None:
        if self.calls < 1 or not self.window > 0 or not self.margin >= 0 or not self.min_interval >= 0:
            raise ValueError("a window rule needs calls >= 1, window > 0, margin and min_interval >= 0")

    @property
    def span(self) -> float:
        """How long an ended call keeps counting against this rule."""
        return self.window + self.margin


@dataclass(frozen=True, slots=True)
class Grant:
    """A ``try_acquire`` answer."""

    call_id: str | None  # None: not granted
    wait: float  # seconds to wait before asking again (0 when granted)
    start: float  # the store clock's start of the granted call


@dataclass(frozen=True, slots=True)
class Usage:
    """What a key's quota holds now, for the plan and the progress line: per rule (in the
    order asked), the calls still counting against it as ``(mine, others)``; and the seconds
    of shared pause left (0: none)."""

    windows: tuple[tuple[int, int], ...]
    paused_for: float

    def describe(self, rules: Sequence[WindowRule]) -> str | None:
        """``"12 of 30 calls per minute are used by another run"``, or None if nobody else counts."""
        parts = [f"{others:,} of {rule.calls:,} calls per {_span_words(rule.window)} are used by another run"
                 for rule, (_, others) in zip(rules, self.windows, strict=False) if others]
        if self.paused_for > 0:
            parts.append(f"the tenant is paused for {self.paused_for:.0f} s more")
        return "; ".join(parts) or None


def _span_words(seconds: float) -> str:
    for size, word in ((86400.0, "day"), (3600.0, "hour"), (60.0, "minute")):
        if seconds == size:
            return word
    return f"{seconds:g} s"


class QuotaStore(Protocol):
    """Where a tenant's calls are recorded. Each method is one atomic step; every start and
    end is the store's OWN clock. Keeps the module docstring's invariant."""

    async def try_acquire(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str,
                          call_timeout: float) -> Grant: ...

    async def done(self, key: QuotaKey, call_id: str) -> None:
        """The call's answer is back: its end is the store's now (cut to start + call_timeout)."""
        ...

    async def pause(self, key: QuotaKey, seconds: float) -> None:
        """``paused_until = max(old, now + seconds)`` for every participant of ``key``."""
        ...

    async def usage(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str) -> Usage:
        """Calls counting against each rule now, ``participant``'s and the others', and the pause left."""
        ...

    async def peek(self, key: QuotaKey, rules: Sequence[WindowRule]) -> float:
        """Seconds until the rules and the pause would allow a start (0: now), by the same rule
        as ``try_acquire``; records nothing, takes no place in line."""
        ...

    async def remember(self, key: QuotaKey, name: str, value: Mapping[str, object]) -> None:
        """Keep ``value`` (JSON) under ``name`` for ``key``, for the next run or another process
        (a learned limit); replaces what was there."""
        ...

    async def recall(self, key: QuotaKey, name: str) -> dict[str, object] | None:
        """What was kept under ``name`` for ``key``, or None (never kept, or unreadable)."""
        ...

    async def withdraw(self, key: QuotaKey, participant: str) -> None:
        """``participant`` waits no more (its acquire was cancelled): its ticket goes now, so the
        waiters behind it need not wait for it to lapse."""
        ...

    async def close(self) -> None: ...


# -- the one rule -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PastCall:
    """A recorded call as the rule sees it: its start, its end if reported, its deadline
    (start + call_timeout, when it counts as ended whatever happens)."""

    start: float
    end: float | None
    deadline: float

    def ended_by(self, now: float) -> float | None:
        """When it ended (reported, or by the crash rule), or None while it may still be in flight."""
        if self.end is not None:
            return min(self.end, self.deadline)
        return self.deadline if self.deadline <= now else None


# seconds a waiter behind an older one waits when a slot is free now: the older one takes it,
# and the next slot may free a moment later (a longer poll here leaves slots idle between runs)
TURN_POLL = 0.005


def fact_from_json(text: str | bytes | None) -> dict[str, object] | None:
    """A kept fact read back: a JSON object, else None (a store's value is never trusted)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def poll_interval(rule: WindowRule) -> float:
    """How soon to look again while a blocking call is still in flight."""
    return min(rule.window, 1.0) / 20


def earliest_start(now: float, rules: Sequence[WindowRule], nth_latest: Sequence[PastCall | None],
                   latest_start: float | None, paused_until: float) -> float:
    """The earliest a new call may start, or (while a blocking call is in flight) when to look
    again. ``nth_latest[i]`` is the ``rules[i].calls``-th latest call by start (None: fewer
    calls recorded); ``latest_start`` the latest start of all. A start at ``now`` is allowed
    iff this returns ``<= now``."""
    at = max(now, paused_until)
    if latest_start is not None and latest_start > now:  # the clock went back: never start out of order
        at = max(at, latest_start)
    for rule, call in zip(rules, nth_latest, strict=True):
        if call is not None:
            ended = call.ended_by(now)
            if ended is None:  # in flight: look again soon, and no later than its deadline
                at = max(at, min(now + poll_interval(rule), call.deadline))
            else:
                at = max(at, math.nextafter(ended + rule.span, math.inf))
        if latest_start is not None and rule.min_interval > 0:
            at = max(at, math.nextafter(latest_start + rule.min_interval, math.inf))
    return at


def horizon(rules: Sequence[WindowRule]) -> float:
    """How long after its end a call may still count against one of ``rules``."""
    return max(rule.span for rule in rules)


def new_participant() -> str:
    """A participant id unique across hosts, processes and limiters."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


# -- the limiter -----------------------------------------------------------------------------------


class SharedPermit(Permit):
    """A permit that knows its call's id in the store."""

    __slots__ = ("call_id",)

    def __init__(self, start: float, call_id: str) -> None:
        super().__init__(start)
        self.call_id = call_id


class SharedWindowLimiter:
    """The engine's :class:`~unenroll.limits.window.CallLimiter` on a :class:`QuotaStore`:
    the store's invariant (module docstring) across every participant of ``key``.

    ``done`` and ``pause`` are synchronous in the engine and the store is not, so they are
    queued and a writer task sends them: use the limiter as an async context manager around
    the job (``async with limiter:``). A write that never lands (the process dies, the queue
    overflows) is covered by the crash rule; a late one only makes the window longer. A
    pause also holds this participant's own starts at once, before the store hears of it.
    Acquires within one limiter are served one at a time, in order.
    """

    def __init__(self, store: QuotaStore, key: QuotaKey, rules: Sequence[WindowRule], call_timeout: float,
                 participant: str | None = None) -> None:
        if not rules:
            raise ValueError("a shared limiter needs at least one window rule")
        if not call_timeout > 0:
            raise ValueError("call_timeout must be above 0")
        self.store = store
        self.key = key
        self.rules = tuple(rules)
        self.call_timeout = call_timeout
        self.participant = participant or new_participant()
        self.pauses = 0
        self.dropped_writes = 0
        self._local_pause_until = -math.inf  # anyio clock
        self._free_at = -math.inf  # anyio clock: when the store last said a start may come (for display)
        self._turn = anyio.Lock()
        self._pending: deque[tuple[str, str | float]] = deque()
        self._wake = anyio.Event()
        self._entered = 0
        self._task_group: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        return f"SharedWindowLimiter({self.key.as_text()!r}, {self.rules!r}, call_timeout={self.call_timeout})"

    async def __aenter__(self) -> SharedWindowLimiter:
        self._entered += 1
        if self._entered == 1:
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            self._task_group.start_soon(self._write_forever)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._entered -= 1
        if self._entered or self._task_group is None:
            return
        task_group, self._task_group = self._task_group, None
        task_group.cancel_scope.cancel()
        await task_group.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True), anyio.move_on_after(max(1.0, min(self.call_timeout, 10.0))):
            await self.flush()  # the last ends: the next run need not wait for their deadlines

    async def acquire(self) -> Permit:
        """A permit once every rule, the shared pause and the older waiters allow it. Cancelled
        while waiting, it withdraws its ticket from the store before it lets the cancel through."""
        async with self._turn:
            waiting = False
            try:
                while True:
                    if (local := self._local_pause_until - anyio.current_time()) > 0:
                        await anyio.sleep(local)
                        continue
                    grant = await self.store.try_acquire(self.key, self.rules, participant=self.participant,
                                                         call_timeout=self.call_timeout)
                    if grant.call_id is not None:
                        return SharedPermit(grant.start, grant.call_id)
                    waiting = True
                    self._free_at = anyio.current_time() + grant.wait
                    await anyio.sleep(max(grant.wait, 0.001))
            except BaseException:
                if waiting:
                    await self.withdraw()
                raise

    def seconds_until_free(self) -> float:
        """Seconds until a start may come, as the store last said to a waiter here, or this
        participant's own pause (0: no wait known); for the progress display only."""
        now = anyio.current_time()
        return max(0.0, self._free_at - now, self._local_pause_until - now)

    async def try_once(self) -> tuple[SharedPermit | None, float]:
        """One ask, no waiting: a permit, or None and the seconds to wait before asking again
        (the ask leaves a ticket in line: ask again, or :meth:`withdraw`)."""
        if (local := self._local_pause_until - anyio.current_time()) > 0:
            return None, local
        grant = await self.store.try_acquire(self.key, self.rules, participant=self.participant,
                                             call_timeout=self.call_timeout)
        if grant.call_id is not None:
            return SharedPermit(grant.start, grant.call_id), 0.0
        self._free_at = anyio.current_time() + grant.wait
        return None, grant.wait

    async def peek(self) -> float:
        """Seconds until a start would be allowed (see :meth:`QuotaStore.peek`)."""
        local = self._local_pause_until - anyio.current_time()
        wait = max(local, await self.store.peek(self.key, self.rules), 0.0)
        self._free_at = anyio.current_time() + wait
        return wait

    async def withdraw(self) -> None:
        """Leave the line (shielded, bounded): an acquire that waited was cancelled."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(WITHDRAW_TIMEOUT):
            try:
                await self.store.withdraw(self.key, self.participant)
            except Exception:  # the store is unreachable: the ticket lapses by itself
                pass

    def done(self, permit: Permit) -> None:
        if permit.end != math.inf:  # the first word counts
            return
        permit.end = permit.start  # marked ended here; the store stamps the real moment on its own clock
        if isinstance(permit, SharedPermit):
            self._queue(("done", permit.call_id))

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        seconds = sane_pause(seconds)
        self._local_pause_until = max(self._local_pause_until, anyio.current_time() + seconds)
        self._queue(("pause", seconds))

    async def usage(self) -> Usage:
        return await self.store.usage(self.key, self.rules, participant=self.participant)

    def _queue(self, write: tuple[str, str | float]) -> None:
        if len(self._pending) >= MAX_PENDING_WRITES:
            self.dropped_writes += 1
            return
        self._pending.append(write)
        self._wake.set()

    async def flush(self) -> None:
        """Send every queued end and pause to the store now."""
        while self._pending:
            kind, value = self._pending[0]
            if kind == "done":
                await self.store.done(self.key, str(value))
            else:
                await self.store.pause(self.key, float(value))
            self._pending.popleft()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.flush()
            except Exception:  # the store is unreachable: drop the write, the crash rule covers it
                self._pending.popleft()
                self.dropped_writes += 1
                self._wake.set()
                await anyio.sleep(0.05)
