"""Handing a job's outcomes to a stream reader (:func:`unenroll.stream`).

Invariant: an outcome is either handed over or still queued here, never both: it is
handed over with ``send_nowait`` only, so a cancelled wait can neither lose one nor
deliver it twice. A reader that went away ends the delivery (the ledger and the sinks
still have every outcome) and is reported once through ``on_gone``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from unenroll.model import ItemOutcome


class OutcomeDelivery:
    """Outcomes queued for a stream reader; with no reader, a no-op."""

    __slots__ = ("_on_gone", "_queue", "_stream")

    def __init__(self, stream: MemoryObjectSendStream[ItemOutcome] | None, on_gone: Callable[[], None]) -> None:
        self._stream = stream
        self._on_gone = on_gone
        self._queue: deque[ItemOutcome] = deque()

    @property
    def pending(self) -> bool:
        return self._stream is not None and bool(self._queue)

    def queue(self, outcomes: Iterable[ItemOutcome]) -> None:
        """Queue outcomes without waiting (delivered by the next :meth:`deliver`)."""
        if self._stream is not None:
            self._queue.extend(outcomes)

    async def send(self, outcomes: Iterable[ItemOutcome]) -> None:
        self.queue(outcomes)
        await self.deliver()

    async def deliver(self) -> None:
        """Hand every queued outcome over; polls (up to 50 ms) while the reader lags."""
        stream, delay = self._stream, 0.001
        try:
            while self._queue and stream is not None:
                try:
                    stream.send_nowait(self._queue[0])
                except anyio.WouldBlock:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                self._queue.popleft()
                delay = 0.001
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._stream = None  # the reader left; the ledger and sinks still have them
            self._queue.clear()
            self._on_gone()
