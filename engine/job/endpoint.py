"""One endpoint during a job or a backup: its way onto the wire, and a job's queue state.

:class:`Lane` is the endpoint's way onto the wire. Invariant: a call leaves only holding
one of ``max_in_flight`` places on the wire and then a permit of the endpoint's limiter,
taken in that order, just before it leaves (so the limiter counts the call when it
really goes); the permit is given back when the answer (or the failure) is in, so the
window counts from the answer (``limits/window.py``), and the place is given back then or
once the answer was acted on (see ``calls.py``). Jobs and backups both go through lanes.

:class:`Endpoint` adds what a job keeps per endpoint: the chunk buffer (``queue.py``), the
items routed here and not ended yet, the workers waiting for a permit, and the largest
call that was answered (a refused call of that size is an item's fault, not its size's).
"""

from __future__ import annotations

import anyio

from unenroll.accounts.ledger import EndpointStats
from unenroll.contract.declarations import EndpointSpec
from unenroll.job.queue import ChunkBuffer
from unenroll.limits.headers import RateLimitWord
from unenroll.limits.window import CallLimiter, Permit


class Lane:
    """An endpoint's places on the wire and its limiter (see the module docstring)."""

    __slots__ = ("_wire", "limiter", "spec", "stats")

    def __init__(self, spec: EndpointSpec, stats: EndpointStats | None = None,
                 limiter: CallLimiter | None = None) -> None:
        self.spec = spec
        self.limiter: CallLimiter = limiter if limiter is not None else spec.make_limiter()
        self.stats = stats if stats is not None else EndpointStats()
        self._wire: anyio.Semaphore | None = None  # made in the event loop, on first use

    @property
    def in_flight(self) -> int:
        return max(1, self.spec.max_in_flight)

    def _places(self) -> anyio.Semaphore:
        if self._wire is None:
            self._wire = anyio.Semaphore(self.in_flight)
        return self._wire

    async def board(self) -> Permit:
        """A place on the wire, then the limiter's permit: in that order, so the permit is
        taken just before the call leaves."""
        wire = self._places()
        await wire.acquire()
        try:
            return await self.limiter.acquire()
        except BaseException:
            wire.release()
            raise

    def answered(self, permit: Permit) -> None:
        """The call's answer (or failure) is in: the limiter's window counts from now."""
        self.limiter.done(permit)

    def leave(self) -> None:
        """Give the place on the wire up: the next call may go."""
        self._places().release()

    def pause(self, seconds: float) -> None:
        self.limiter.pause(seconds)

    def observed(self, permit: Permit, throttled: bool, retry_after: float | None, word: RateLimitWord) -> None:
        """The call's answer was read: a limiter that learns (``observe``) hears how it went."""
        observe = getattr(self.limiter, "observe", None)
        if observe is not None:
            observe(permit, throttled, retry_after, word)


class Endpoint:
    """One endpoint's state during a job (see the module docstring)."""

    __slots__ = ("buffer", "claims", "lane", "largest_answered", "open_items")

    def __init__(self, spec: EndpointSpec, cap_items: int, linger: float, max_wait: float) -> None:
        self.lane = Lane(spec, EndpointStats(cap_items=cap_items))
        self.buffer = ChunkBuffer(cap_items, linger=linger, max_wait=max_wait)
        self.open_items = 0  # routed here and not ended yet
        self.claims = 0  # workers waiting for a permit, each for a chunk it may take
        self.largest_answered = 0  # the most items a call here was answered for

    @property
    def spec(self) -> EndpointSpec:
        return self.lane.spec

    @property
    def stats(self) -> EndpointStats:
        return self.lane.stats
