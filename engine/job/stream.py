"""The public entry points of a job: :func:`run` to the end, :func:`stream` as a pipeline stage.

Invariant: whichever way a job is run, its report accounts for every item taken in;
leaving a stream early stops the job (the caller's choice, logged as info, not as an
error), and the outcomes not yet read still reach the sinks, the journal and the report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from unenroll.accounts.journal import Journal
from unenroll.accounts.ledger import OutcomeSink, Report
from unenroll.contract.declarations import Adapter
from unenroll.job.intake import Items, UnknownOperation
from unenroll.job.job import Job
from unenroll.job.settings import JobSettings
from unenroll.limits.window import CallLimiter
from unenroll.model import ItemOutcome


async def run(
    adapter: Adapter,
    items: Items,
    *,
    settings: JobSettings | None = None,
    sinks: Sequence[OutcomeSink] = (),
    limiters: dict[str, CallLimiter] | None = None,
    journal: Journal | None = None,
) -> Report:
    """Run a job to the end and return its report. Outcomes go to ``sinks`` as they happen.

    With a ``journal`` (see ``journal.py``) the job can be resumed after a crash."""
    return await Job(adapter, items, settings=settings, sinks=sinks, limiters=limiters, journal=journal).run()


class OutcomeStream:
    """Outcomes as they happen (``async for``); ``report`` once the stream is exhausted."""

    def __init__(self, receive: MemoryObjectReceiveStream[ItemOutcome], job: Job) -> None:
        self._receive = receive
        self._job = job

    def __aiter__(self) -> AsyncIterator[ItemOutcome]:
        return self._receive.__aiter__()

    @property
    def report(self) -> Report:
        return self._job.report


@asynccontextmanager
async def stream(
    adapter: Adapter,
    items: Items,
    *,
    settings: JobSettings | None = None,
    sinks: Sequence[OutcomeSink] = (),
    limiters: dict[str, CallLimiter] | None = None,
    journal: Journal | None = None,
) -> AsyncIterator[OutcomeStream]:
    """Run a job as a pipeline stage: ``async with stream(...) as outcomes: async for o in outcomes``.

    Leaving the block before the stream ends stops the job; the report still accounts
    for every item taken in. With a ``journal`` (as for :func:`run`) the stage can be
    resumed: items an earlier run confirmed come out again as they ended, and are not sent.
    An item naming an unknown operation raises :class:`ValueError` when the block is left.
    """
    settings = settings or JobSettings()
    send, receive = anyio.create_memory_object_stream[ItemOutcome](settings.outcome_buffer)
    job = Job(adapter, items, settings=settings, sinks=sinks, outcomes=send, limiters=limiters, journal=journal)
    finished = False
    misuse: UnknownOperation | None = None

    async def produce() -> None:
        nonlocal finished, misuse
        async with send:
            try:
                await job.run()
            except UnknownOperation as exc:  # raised below as it is, not inside a task group's error
                misuse = exc
            finished = True

    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(produce)
        try:
            yield OutcomeStream(receive, job)
        finally:
            if not finished:
                job.leave("the caller left the outcome stream before its end")
            tg.cancel_scope.cancel()
    if misuse is not None:
        raise misuse
