"""A quota store in this process's memory: shared by every job of one process, gone with it.

Keeps the invariant of :mod:`unenroll.limits.quota` (``start[k + N] >= end[k] + W + margin``
across participants, an unreported end counted at ``start + call_timeout``, shared pauses,
waiters served oldest first). Each step is synchronous, so it is atomic under asyncio; the
``*_step`` methods are the steps themselves, for tests on a fake clock.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class _Call:
    call_id: str
    participant: str
    start: float
    deadline: float
    end: float | None = None

    def seen(self) -> PastCall:
        return PastCall(self.start, self.end, self.deadline)


@dataclass(slots=True)
class _Ticket:
    first_asked: float
    expires: float


@dataclass(slots=True)
class _KeyState:
    calls: deque[_Call] = field(default_factory=deque)  # by start
    by_id: dict[str, _Call] = field(default_factory=dict)
    paused_until: float = -math.inf
    tickets: dict[str, _Ticket] = field(default_factory=dict)
    horizon: float = 0.0


class MemoryQuotaStore:
    """In-process :class:`~unenroll.limits.quota.QuotaStore` (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, ticket_grace: float = TICKET_GRACE) -> None:
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self.ticket_grace = ticket_grace
        self._facts: dict[tuple[str, str], str] = {}

    def _state(self, key: QuotaKey) -> _KeyState:
        return self._keys.setdefault(key.as_text(), _KeyState())

    def acquire_step(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str,
                     call_timeout: float) -> Grant:
        now = self._clock()
        state = self._state(key)
        state.horizon = max(state.horizon, horizon(rules))
        self._forget_past(state, now)
        ticket = state.tickets.get(participant)
        if ticket is None or ticket.expires < now:
            ticket = state.tickets[participant] = _Ticket(now, now)
        calls = state.calls
        nth = [calls[-rule.calls].seen() if len(calls) >= rule.calls else None for rule in rules]
        at = earliest_start(now, rules, nth, calls[-1].start if calls else None, state.paused_until)
        first = min(state.tickets, key=lambda p: (state.tickets[p].first_asked, p))
        if at <= now and first == participant:
            del state.tickets[participant]
            call = _Call(uuid.uuid4().hex, participant, now, now + call_timeout)
            calls.append(call)
            state.by_id[call.call_id] = call
            return Grant(call.call_id, 0.0, now)
        wait = at - now if at > now else TURN_POLL  # the slot is free: an older waiter takes it first
        ticket.expires = now + wait + self.ticket_grace
        return Grant(None, wait, now)

    def done_step(self, key: QuotaKey, call_id: str) -> None:
        call = self._state(key).by_id.get(call_id)
        if call is not None and call.end is None:
            call.end = min(max(self._clock(), call.start), call.deadline)

    def pause_step(self, key: QuotaKey, seconds: float) -> None:
        state = self._state(key)
        state.paused_until = max(state.paused_until, self._clock() + sane_pause(seconds))

    def usage_step(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str) -> Usage:
        now = self._clock()
        state = self._state(key)
        windows = []
        for rule in rules:
            recent = [c for c in state.calls if c.start > now - rule.window]
            mine = sum(c.participant == participant for c in recent)
            windows.append((mine, len(recent) - mine))
        return Usage(tuple(windows), max(0.0, state.paused_until - now))

    def peek_step(self, key: QuotaKey, rules: Sequence[WindowRule]) -> float:
        now = self._clock()
        state = self._state(key)
        calls = state.calls
        nth = [calls[-rule.calls].seen() if len(calls) >= rule.calls else None for rule in rules]
        return max(0.0, earliest_start(now, rules, nth, calls[-1].start if calls else None, state.paused_until) - now)

    def withdraw_step(self, key: QuotaKey, participant: str) -> None:
        self._state(key).tickets.pop(participant, None)

    def _forget_past(self, state: _KeyState, now: float) -> None:
        """Drop the oldest calls once they count against no rule (nor would, by the crash rule)."""
        while state.calls:
            ended = state.calls[0].seen().ended_by(now)
            if ended is None or ended + state.horizon >= now:
                break
            del state.by_id[state.calls.popleft().call_id]

    async def try_acquire(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str,
                          call_timeout: float) -> Grant:
        return self.acquire_step(key, rules, participant=participant, call_timeout=call_timeout)

    async def done(self, key: QuotaKey, call_id: str) -> None:
        self.done_step(key, call_id)

    async def pause(self, key: QuotaKey, seconds: float) -> None:
        self.pause_step(key, seconds)

    async def usage(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str) -> Usage:
        return self.usage_step(key, rules, participant=participant)

    async def peek(self, key: QuotaKey, rules: Sequence[WindowRule]) -> float:
        return self.peek_step(key, rules)

    async def remember(self, key: QuotaKey, name: str, value: Mapping[str, object]) -> None:
        self._facts[(key.as_text(), name)] = json.dumps(dict(value))

    async def recall(self, key: QuotaKey, name: str) -> dict[str, object] | None:
        return fact_from_json(self._facts.get((key.as_text(), name)))

    async def withdraw(self, key: QuotaKey, participant: str) -> None:
        self.withdraw_step(key, participant)

    async def close(self) -> None:
        self._keys.clear()
