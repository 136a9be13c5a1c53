"""Grouping items by target into chunks under an endpoint's caps.

One :class:`ChunkBuffer` per endpoint. Items go in one by one (fresh from the input, or
due again after a retryable failure); chunks come out when a call may start, so the
chunk a worker takes is the fullest one at the moment the limiter lets it go, and
chunks keep filling while the endpoint is busy or waiting.

Invariants (``tests/test_chunker.py``):

- a chunk holds items of one operation and one target only;
- a chunk never holds more than ``cap_items`` items (the cap in force when it is taken)
  nor more than the operation's ``max_request_bytes`` by its own measure;
- every item put in comes out in exactly one chunk (retries come back as new puts);
- a pinned chunk (from a bisect or a halving) comes out as it is, ahead of others,
  and is never merged with other items, so bisecting does isolate the bad item;
- no partial chunk waits much longer than ``max_wait`` once a call may start: the oldest
  one past it goes before fuller ones.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass, field

from unenroll.contract.declarations import Operation
from unenroll.model import Work as Work  # the queue's unit, defined with the vocabulary


@dataclass(slots=True, eq=False)
class Chunk:
    operation: Operation
    target: tuple[str, ...]
    works: list[Work]
    nbytes: int
    pinned: bool = False
    created_at: float = 0.0
    auth_refreshed: bool = field(default=False)
    capacity: int = 0  # items it may take while open: the cap in force when it was opened

    def __len__(self) -> int:
        return len(self.works)


class ChunkBuffer:
    """Open chunks per (operation, target), ready chunks, and retries waiting to be due."""

    __slots__ = ("_delayed", "_last_opened", "_linger", "_max_wait", "_open", "_ready", "_seq", "cap_items",
                 "count")

    def __init__(self, cap_items: int, *, linger: float = 0.25, max_wait: float = 30.0) -> None:
        self.cap_items = cap_items
        self._max_wait = max_wait  # a partial chunk this old goes first, so a rare target never starves
        # open chunks are stamped no earlier than the one opened before, so the dict's
        # insertion order is their age order: the oldest is the first key, no scan needed
        self._last_opened = -math.inf
        self._open: dict[tuple[str, tuple[str, ...]], Chunk] = {}
        self._ready: deque[Chunk] = deque()
        self._delayed: list[tuple[float, int, Operation, Work]] = []
        self._seq = itertools.count()
        self.count = 0  # items held here, delayed ones included
        self._linger = linger

    # -- in ---------------------------------------------------------------------------

    def put(self, op: Operation, work: Work, now: float) -> bool:
        """Add one item to its target's open chunk, closing that chunk first if full.
        ``True`` if a chunk became ready or a new one opened (its linger clock started):
        either way a sleeping worker should look again."""
        self.count += 1
        return self._add_open(op, work, now)

    def put_later(self, op: Operation, work: Work, due: float) -> None:
        """Hold a retry until ``due``; it then joins its target's open chunk."""
        self.count += 1
        heapq.heappush(self._delayed, (due, next(self._seq), op, work))

    def put_pinned(self, op: Operation, target: tuple[str, ...], works: list[Work], now: float) -> None:
        """A pre-formed chunk (a half of a bisect) that must go out as it is, first."""
        self.count += len(works)
        nbytes = op.base_bytes(target) + sum(op.item_bytes(w.item.subject) for w in works)
        self._ready.appendleft(Chunk(op, target, works, nbytes, pinned=True, created_at=now))

    def _add_open(self, op: Operation, work: Work, now: float) -> bool:
        target = work.item.target
        key = (op.name, target)
        chunk = self._open.get(key)
        size = 0 if op.max_request_bytes is None else op.item_bytes(work.item.subject)
        closed = False
        if chunk is not None and (
            len(chunk.works) >= chunk.capacity
            or (op.max_request_bytes is not None and chunk.nbytes + size > op.max_request_bytes)
        ):
            self._ready.append(self._open.pop(key))
            chunk, closed = None, True
        opened = chunk is None
        if chunk is None:
            self._last_opened = max(self._last_opened, now)
            chunk = Chunk(op, target, [], op.base_bytes(target), created_at=self._last_opened,
                          capacity=min(self.cap_items, op.max_items))
            self._open[key] = chunk
        chunk.works.append(work)
        chunk.nbytes += size
        return closed or opened

    def release_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, op, work = heapq.heappop(self._delayed)
            self.count -= 1
            self.put(op, work, now)

    # -- out --------------------------------------------------------------------------

    def takeable(self, now: float, *, flush_partial: bool) -> int:
        """How many chunks :meth:`take` would hand out now, one after another (at least)."""
        self.release_due(now)
        if flush_partial:
            return len(self._ready) + len(self._open)
        lingered = 0
        for chunk in self._open.values():  # oldest first: stop at the first that may still wait
            if now - chunk.created_at < self._linger:
                break
            lingered += 1
        return len(self._ready) + lingered

    def has_chunk(self, now: float, *, flush_partial: bool) -> bool:
        """Whether :meth:`take` would return a chunk now."""
        return self.takeable(now, flush_partial=flush_partial) > 0

    def take(self, now: float, *, flush_partial: bool) -> Chunk | None:
        """The next chunk to send, cut to the current cap; ``None`` if nothing may go yet.

        Ready chunks first (pinned ones lead), else the fullest open chunk if partial
        chunks may go (the input has ended, the buffer is at its high-water mark, or the
        chunk has lingered long enough).
        """
        if not self.has_chunk(now, flush_partial=flush_partial):
            return None
        overdue = self._overdue(now)
        if overdue is not None:
            chunk = self._open.pop(overdue)
        elif self._ready:
            chunk = self._ready.popleft()
        else:
            key = max(self._open, key=lambda k: len(self._open[k].works))
            chunk = self._open.pop(key)
        if len(chunk.works) > self.cap_items:
            chunk = self._cut(chunk, now)
        self.count -= len(chunk.works)
        return chunk

    def _overdue(self, now: float) -> tuple[str, tuple[str, ...]] | None:
        """The oldest open chunk if it has waited ``max_wait``: while fuller chunks keep
        coming, a target seen rarely in a long stream would otherwise wait to the end."""
        key = next(iter(self._open), None)  # the oldest (see _last_opened)
        return key if key is not None and now - self._open[key].created_at >= self._max_wait else None

    def _cut(self, chunk: Chunk, now: float) -> Chunk:
        """Keep the first ``cap_items`` items; the rest go back as pinned chunks."""
        op, cap = chunk.operation, self.cap_items
        rest = chunk.works[cap:]
        for start in reversed(range(0, len(rest), cap)):
            self.count -= len(rest[start : start + cap])  # put_pinned counts them again
            self.put_pinned(op, chunk.target, rest[start : start + cap], now)
        head = chunk.works[:cap]
        nbytes = op.base_bytes(chunk.target) + sum(op.item_bytes(w.item.subject) for w in head)
        return Chunk(op, chunk.target, head, nbytes, chunk.pinned, chunk.created_at)

    def next_wakeup(self, now: float, *, flush_partial: bool = False) -> float | None:
        """Seconds until a chunk that :meth:`takeable` does not count now becomes takeable
        without a new put (a retry falls due, or an open chunk has lingered enough); ``None``
        if nothing will. Never 0 for a chunk already counted: a worker that waits for another
        worker's claim to end must sleep, not spin (a limiter's wait may last hours)."""
        self.release_due(now)
        times = []
        if self._delayed:
            times.append(self._delayed[0][0] - now)
        if not flush_partial:
            for chunk in self._open.values():  # oldest first: the first still lingering is next
                if (left := self._linger - (now - chunk.created_at)) > 0:
                    times.append(left)
                    break
        return max(0.0, min(times)) if times else None

    def clear(self) -> None:
        """Drop everything held (the job stopped; the ledger accounts for the items)."""
        self._ready.clear()
        self._open.clear()
        self._delayed.clear()
        self.count = 0
