"""The job: intake -> per-endpoint chunk buffers -> limited workers -> ledger.

One task group holds every task of a job: the intake (takes each item in by the rules of
``intake.py``, routes it to its endpoint's buffer, and waits when a buffer is at its
high-water mark) and, per endpoint, ``max_in_flight`` + 1 workers (wait for a chunk, board
the endpoint's lane, take the fullest chunk, call through the one call path of
``calls.py``, act on the answer by ``verdicts.py``). Nothing outlives the group. Memory
is bounded by the buffers' high-water marks, the calls in flight and the de-duplication
set (one integer per distinct item).

When the job stops early (cancelled, a fatal vendor answer, the input failed), calls in
flight are allowed to finish (they are shielded; the transport's timeout bounds them),
and every item still open ends ``not_sent`` with the reason: the report always accounts
for every item taken in. A finite input (``Sized``: a list, a tuple...) that was not all
taken in is then drained by the intake's own rules (rejected and duplicate items end as
they would have, the rest ``not_sent``), so its report covers the whole input. A stream
or any other iterable is not read further (it may be unbounded, or have side effects);
``Report.input_complete`` is then False and ``Report.total`` says how many were taken in.
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from collections.abc import Sequence
from typing import NoReturn

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from unenroll.accounts.journal import Journal
from unenroll.accounts.ledger import Ledger, OutcomeSink, Report
from unenroll.contract.declarations import Adapter
from unenroll.job.breaker import CircuitBreaker
from unenroll.job.calls import Answer, CallPath, Ticket
from unenroll.job.delivery import OutcomeDelivery
from unenroll.job.endpoint import Endpoint, Lane
from unenroll.job.intake import Intake, Items, UnknownOperation
from unenroll.job.queue import Chunk
from unenroll.job.settings import JobSettings
from unenroll.job.verdicts import Verdicts, chunk_reader
from unenroll.limits.window import CallLimiter
from unenroll.model import CallResult, ItemOutcome
from unenroll.observe.logs import get_logger
from unenroll.observe.secrets import scrub
from unenroll.wire.auth import AuthError


class Job:
    """One run of items through an adapter. Use :func:`run` or :func:`stream`."""

    def __init__(
        self,
        adapter: Adapter,
        items: Items,
        *,
        settings: JobSettings | None = None,
        sinks: Sequence[OutcomeSink] = (),
        outcomes: MemoryObjectSendStream[ItemOutcome] | None = None,
        limiters: dict[str, CallLimiter] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.adapter = adapter
        self.settings = settings or JobSettings()
        self.id = uuid.uuid4().hex[:12]
        self._journal = journal
        breaker = [CircuitBreaker(self.settings.breaker, self._stop)] if self.settings.breaker is not None else []
        self._ledger = Ledger(adapter.vendor, [*([journal] if journal is not None else []), *sinks, *breaker])
        self._rng = random.Random(self.settings.seed)
        self._log = get_logger(job=self.id, vendor=adapter.vendor)
        self._endpoints: dict[str, Endpoint] = {}
        for op in adapter.operations.values():
            if op.endpoint not in self._endpoints:
                spec = adapter.endpoints[op.endpoint]
                caps = [o.max_items for o in adapter.operations.values() if o.endpoint == op.endpoint]
                self._endpoints[op.endpoint] = Endpoint(spec, max(caps), self.settings.linger,
                                                        self.settings.max_chunk_wait)
            if op.destructive_options:
                self._ledger.report.options.update(op.destructive_options)
        for name, limiter in (limiters or {}).items():
            self._endpoints[name].lane.limiter = limiter
        for name, ep in self._endpoints.items():
            self._ledger.report.endpoints[name] = ep.stats
        self._intake_done = False
        self._stop_reason: str | None = None
        self._stop_expected = False  # the caller stopped it on purpose (left a stream): not an error
        self._misuse: UnknownOperation | None = None  # raised to the caller once the job is accounted for
        self._changed = anyio.Event()
        self._space = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._delivery = OutcomeDelivery(outcomes, lambda: self._stop("the outcome stream's reader went away"))
        self._chunk_ids = itertools.count(1)
        self._intake = Intake(items, adapter.operations, self._ledger, journal)
        self._calls = CallPath(adapter, self.settings, self._rng, self._log)
        self._verdicts = Verdicts(self._ledger, self.settings, self._rng, self._stop)

    @property
    def report(self) -> Report:
        return self._ledger.report

    # -- the job --------------------------------------------------------------------------

    async def run(self) -> Report:
        self._log.info("job.started", endpoints=list(self._endpoints))
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                tg.start_soon(self._take_in)
                for ep in self._endpoints.values():
                    for _ in range(ep.lane.in_flight + 1):  # one more: it reads an answer while the next call goes
                        tg.start_soon(self._worker, ep)
        except BaseException as exc:
            if self._stop_reason is None and not isinstance(exc, anyio.get_cancelled_exc_class()):
                cause = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) and exc.exceptions else exc
                self._stop_reason = scrub(f"internal error: {type(cause).__name__}: {cause}")
            raise
        finally:
            if not self._intake.read_all:
                self._drain()
            self.report.input_complete = self._intake.read_all
            if self._ledger.open_count:
                reason = self._stop_reason or "the job was cancelled"
                self._stop_reason = reason
                for ep in self._endpoints.values():
                    ep.buffer.clear()
                self._delivery.queue(self._ledger.end_all_open(reason))
            if self._delivery.pending:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.stop_grace):
                    await self._delivery.deliver()
            self.report.stopped = self._stop_reason
            for ep in self._endpoints.values():
                ep.stats.cap_items = ep.buffer.cap_items
            report = self._ledger.close()
            if self._journal is not None:
                report.replayed = self._journal.recalled_confirmed
                self._journal.flush()
            log = self._log.error if report.stopped and not self._stop_expected else self._log.info
            log("job.finished", total=report.total, counts=report.counts, calls=report.calls,
                elapsed=round(report.elapsed, 3), stopped=report.stopped)
        if self._misuse is not None:
            raise self._misuse
        return report

    def stop(self, reason: str) -> None:
        """Stop the job (e.g. on Ctrl-C); calls in flight finish, open items end ``not_sent``
        with ``reason``."""
        self._stop(reason)

    def leave(self, reason: str) -> None:
        """Stop the job because its caller is done with it (left a stream early): as
        :meth:`stop`, but logged as info, not as an error."""
        if self._stop_reason is None:
            self._stop_expected = True
            self._stop_reason = reason
            self._log.info("job.stopping", reason=reason)
        self._stop(reason)

    def _stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self._log.error("job.stopping", reason=reason)
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _notify_space(self) -> None:
        self._space.set()
        self._space = anyio.Event()

    # -- intake ---------------------------------------------------------------------------

    async def _take_in(self) -> None:
        """Per item: take it in (:meth:`Intake.admit`), then route it to its endpoint's
        buffer, waiting while that buffer is at its high-water mark. The hot loop of the
        engine, so the clock is read per batch."""
        endpoints, intake = self._endpoints, self._intake
        admit = intake.admit
        high_water = self.settings.max_buffered_items
        checkpointed = 0
        try:
            async for batch in intake.batches():
                now = anyio.current_time()
                for raw in batch:
                    work, op, ended = admit(raw)
                    if ended is not None:
                        await self._delivery.send((ended,))
                        continue
                    assert op is not None
                    ep = endpoints[op.endpoint]
                    if ep.buffer.count >= high_water:
                        while ep.buffer.count >= high_water:
                            self._notify()
                            await self._space.wait()
                        now = anyio.current_time()
                    ep.open_items += 1
                    if ep.buffer.put(op, work, now):
                        self._notify()
                if intake.taken - checkpointed >= 256:  # let the workers run
                    checkpointed = intake.taken
                    await anyio.lowlevel.checkpoint()
        except UnknownOperation as exc:  # the calling code's mistake, not the input's: raised by run()
            intake.failed = True  # not drained: the rest of the input is not read
            self._misuse = exc
            self._stop(scrub(str(exc)))
        except Exception as exc:  # the caller's input failed: finish what was read, say why
            intake.failed = True
            self._stop_reason = scrub(f"the input failed after {intake.taken} items: {type(exc).__name__}: {exc}")
            self._log.error("input.failed", after_items=intake.taken, error=self._stop_reason)
        finally:
            self._intake_done = True
            self._notify()

    def _drain(self) -> None:
        """See :meth:`Intake.drain`; the outcomes it ends go to the stream reader too."""
        self._delivery.queue(self._intake.drain())
        if self._intake.error is not None:
            self._log.error("input.failed", after_items=self._intake.taken, error=self._intake.error)

    # -- workers --------------------------------------------------------------------------

    async def _worker(self, ep: Endpoint) -> None:
        high_water = self.settings.max_buffered_items
        while True:
            await anyio.lowlevel.checkpoint_if_cancelled()  # calls are shielded; stop here
            now = anyio.current_time()
            flush = self._intake_done or ep.buffer.count >= high_water
            # claim one of the chunks that may go now; a worker with no chunk to claim
            # waits below, so no permit is spent on a chunk another worker takes
            if ep.buffer.takeable(now, flush_partial=flush) > ep.claims:
                ep.claims += 1
                try:
                    ticket = await self._board(ep.lane)
                    # the limiter said go: send the fullest chunk there is now
                    chunk = ep.buffer.take(anyio.current_time(), flush_partial=True)
                finally:
                    ep.claims -= 1
                self._notify_space()
                if chunk is None:
                    ep.lane.answered(ticket.permit)
                    ep.lane.leave()
                else:
                    await self._send(ep, chunk, ticket)
                    self._notify()
                continue
            if self._intake_done and ep.open_items == 0:
                self._notify()
                return
            wakeup = ep.buffer.next_wakeup(now, flush_partial=flush)
            with anyio.move_on_after(math.inf if wakeup is None else wakeup):
                await self._changed.wait()

    async def _board(self, lane: Lane) -> Ticket:
        """Credentials, a place on the wire and a permit (``calls.py``); refused credentials stop the job."""
        try:
            return await self._calls.board(lane)
        except AuthError as exc:
            await self._auth_refused(exc)

    async def _auth_refused(self, exc: AuthError) -> NoReturn:
        self._stop(scrub(f"auth: {exc}"))
        await anyio.lowlevel.checkpoint()  # delivers the cancellation
        raise AssertionError("a stopped job's task went on")  # pragma: no cover

    async def _send(self, ep: Endpoint, chunk: Chunk, ticket: Ticket) -> None:
        """Send one chunk through the call path, then act on the answer.

        Once the endpoint has answered normally, the call's place on the wire is given up
        as soon as its answer is in, so the next call leaves while this answer is acted
        on; before that, only after acting on it, so a fatal first answer (bad keys) stops
        the job before a second call goes."""
        op, target, works = chunk.operation, chunk.target, chunk.works
        subjects = [w.item.subject for w in works]
        request = op.build_request(target, subjects)
        log = self._log.bind(endpoint=ep.spec.name, chunk=next(self._chunk_ids), target="/".join(target),
                             items=len(works))
        journal = self._journal

        def before_send() -> None:
            now = anyio.current_time()
            for w in works:
                w.sends += 1
                if w.first_sent_at is None:
                    w.first_sent_at = now
            if journal is not None:
                journal.before_call(w.index for w in works)

        try:
            answer: Answer[CallResult] = await self._calls.send(
                ep.lane, ticket, request, chunk_reader(op, target, subjects), before_send=before_send,
                may_refresh=not chunk.auth_refreshed, keep_place=not ep.largest_answered, log=log)
        except AuthError as exc:  # refused when boarding again after a refresh
            await self._auth_refused(exc)
        chunk.auth_refreshed = chunk.auth_refreshed or answer.refreshed
        try:
            ended = self._verdicts.act(ep, chunk, answer.result, answer.lost, log)
        finally:
            if answer.holding:
                ep.lane.leave()
        await self._delivery.send(ended)
