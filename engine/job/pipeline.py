"""The job: intake -> per-endpoint chunk buffers -> limited workers -> ledger.

One task group holds every task of a job: the intake (reads the input, validates,
de-duplicates, routes each item to its endpoint's buffer, and waits when a buffer is at
its high-water mark) and, per endpoint, ``max_in_flight`` workers (wait for a chunk,
wait for the limiter, take the fullest chunk, call, act on the answer). Nothing outlives
the group. Memory is bounded by the buffers' high-water marks, the calls in flight and
the de-duplication set (one integer per distinct item).

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
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from unenroll.accounts.journal import Journal
from unenroll.accounts.ledger import EndpointStats, Ledger, OutcomeSink, Report
from unenroll.contract.declarations import Adapter, EndpointSpec, Operation
from unenroll.job.intake import Intake, Items
from unenroll.job.queue import Chunk, ChunkBuffer, Work
from unenroll.job.settings import JobSettings
from unenroll.limits.window import CallLimiter, Permit
from unenroll.model import CallResult, CallVerdict, ItemOutcome, ItemVerdict, Outcome
from unenroll.observe.logs import get_logger
from unenroll.observe.secrets import scrub
from unenroll.wire.auth import AuthError, headers_with_retry
from unenroll.wire.http import TransportError


class _Endpoint:
    """One endpoint's state during a job."""

    __slots__ = ("buffer", "claims", "largest_answered", "limiter", "open_items", "spec", "stats", "wire")

    def __init__(self, spec: EndpointSpec, cap_items: int, linger: float, max_wait: float) -> None:
        self.spec = spec
        self.limiter: CallLimiter = spec.make_limiter()
        self.buffer = ChunkBuffer(cap_items, linger=linger, max_wait=max_wait)
        self.stats = EndpointStats(cap_items=cap_items)
        self.open_items = 0  # routed here and not ended yet
        self.claims = 0  # workers waiting for a permit, each for a chunk it may take
        # calls on the wire (max_in_flight): held from just before the permit until the
        # answer is in, so the next call goes while the last answer is still being read
        self.wire: anyio.Semaphore | None = None
        self.largest_answered = 0  # the most items a call here was answered for


class FatalJobError(Exception):
    """A vendor answer that no retry can fix; the job stops."""


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
        self._items = items
        self._journal = journal
        self._ledger = Ledger(adapter.vendor, [journal, *sinks] if journal is not None else sinks)
        self._outcomes = outcomes
        self._rng = random.Random(self.settings.seed)
        self._log = get_logger(job=self.id, vendor=adapter.vendor)
        self._endpoints: dict[str, _Endpoint] = {}
        for op in adapter.operations.values():
            if op.endpoint not in self._endpoints:
                spec = adapter.endpoints[op.endpoint]
                caps = [o.max_items for o in adapter.operations.values() if o.endpoint == op.endpoint]
                self._endpoints[op.endpoint] = _Endpoint(spec, max(caps), self.settings.linger,
                                                         self.settings.max_chunk_wait)
            if op.destructive_options:
                self._ledger.report.options.update(op.destructive_options)
        for name, limiter in (limiters or {}).items():
            self._endpoints[name].limiter = limiter
        for name, ep in self._endpoints.items():
            self._ledger.report.endpoints[name] = ep.stats
        self._intake_done = False
        self._stop_reason: str | None = None
        self._changed = anyio.Event()
        self._space = anyio.Event()
        self._task_group: TaskGroup | None = None
        self._undelivered: deque[ItemOutcome] = deque()
        self._chunk_ids = itertools.count(1)
        self._intake = Intake(items, adapter.operations, self._ledger, journal)

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
                    in_flight = max(1, ep.spec.max_in_flight)
                    ep.wire = anyio.Semaphore(in_flight)
                    for _ in range(in_flight + 1):  # one more: it reads an answer while the next call goes
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
                self._undelivered.extend(self._ledger.end_all_open(reason))
            if self._outcomes is not None and self._undelivered:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.stop_grace):
                    await self._deliver()
            self.report.stopped = self._stop_reason
            for ep in self._endpoints.values():
                ep.stats.cap_items = ep.buffer.cap_items
            report = self._ledger.close()
            if self._journal is not None:
                report.replayed = self._journal.recalled_confirmed
                self._journal.flush()
            log = self._log.error if report.stopped else self._log.info
            log("job.finished", total=report.total, counts=report.counts, calls=report.calls,
                elapsed=round(report.elapsed, 3), stopped=report.stopped)
        return report

    def stop(self, reason: str) -> None:
        """Stop the job (e.g. on Ctrl-C); calls in flight finish, open items end ``not_sent``
        with ``reason``."""
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

    async def _emit(self, outcomes: Sequence[ItemOutcome]) -> None:
        if self._outcomes is not None:
            self._undelivered.extend(outcomes)
            await self._deliver()

    async def _deliver(self) -> None:
        """Hand queued outcomes to the stream reader with ``send_nowait`` only: an outcome is
        either handed over or still queued here, never both, so a cancelled wait can
        neither lose one nor deliver it twice. Polls (up to 50 ms) while the reader lags."""
        stream, delay = self._outcomes, 0.001
        try:
            while self._undelivered and stream is not None:
                try:
                    stream.send_nowait(self._undelivered[0])
                except anyio.WouldBlock:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                self._undelivered.popleft()
                delay = 0.001
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._outcomes = None  # the reader left; the ledger and sinks still have them
            self._undelivered.clear()
            self._stop("the outcome stream's reader went away")

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
                        await self._emit([ended])
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
        except Exception as exc:  # the caller's input failed: finish what was read, say why
            intake.failed = True
            self._stop_reason = scrub(f"the input failed after {intake.taken} items: {type(exc).__name__}: {exc}")
            self._log.error("input.failed", after_items=intake.taken, error=self._stop_reason)
        finally:
            self._intake_done = True
            self._notify()

    def _drain(self) -> None:
        """See :meth:`Intake.drain`; the outcomes it ends go to the stream reader too."""
        ended = self._intake.drain()
        if self._outcomes is not None:
            self._undelivered.extend(ended)
        if self._intake.error is not None:
            self._log.error("input.failed", after_items=self._intake.taken, error=self._intake.error)

    # -- workers --------------------------------------------------------------------------

    async def _worker(self, ep: _Endpoint) -> None:
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
                    # credentials first: a token fetch between the permit and the wire would
                    # make this call arrive later than the limiter counted it
                    credentials = await self._credentials()
                    permit = await self._permit_on_the_wire(ep)
                    # the limiter said go: send the fullest chunk there is now
                    chunk = ep.buffer.take(anyio.current_time(), flush_partial=True)
                finally:
                    ep.claims -= 1
                self._notify_space()
                if chunk is None:
                    self._off_the_wire(ep, permit)
                else:
                    await self._send(ep, chunk, credentials, permit)
                    self._notify()
                continue
            if self._intake_done and ep.open_items == 0:
                self._notify()
                return
            wakeup = ep.buffer.next_wakeup(now)
            with anyio.move_on_after(math.inf if wakeup is None else wakeup):
                await self._changed.wait()

    async def _permit_on_the_wire(self, ep: _Endpoint) -> Permit:
        """A place on the wire (one of max_in_flight), then the limiter's permit: in that
        order, so the permit is taken just before the call leaves."""
        assert ep.wire is not None
        await ep.wire.acquire()
        try:
            return await ep.limiter.acquire()
        except BaseException:
            ep.wire.release()
            raise

    def _off_the_wire(self, ep: _Endpoint, permit: Permit) -> None:
        """The call's answer (or failure) is in: the window counts from now (limiter.py)
        and the next call may go while this answer is read."""
        assert ep.wire is not None
        ep.limiter.done(permit)
        ep.wire.release()

    async def _credentials(self) -> tuple[int, Mapping[str, str]]:
        """Auth headers, fetching a token if needed. An unreachable token endpoint is
        retried with the job's backoff; refused credentials stop the job."""
        retry = self.settings.retry
        while True:
            try:
                return await headers_with_retry(self.adapter.auth, retry.max_attempts,
                                                lambda n: retry.backoff(n, self._rng))
            except AuthError as exc:
                self._stop(scrub(f"auth: {exc}"))
                await anyio.lowlevel.checkpoint()  # delivers the cancellation

    async def _send(
        self, ep: _Endpoint, chunk: Chunk, credentials: tuple[int, Mapping[str, str]], permit: Permit
    ) -> None:
        """Send one chunk (once more after a token refresh: at most one refresh per attempt,
        a further 401 is an attempt spent, see :meth:`_act`), then act on the answer.

        The call holds its place on the wire until its answer is in and read (a throttle
        pauses the endpoint first). Once the endpoint has answered normally, the place is
        given up right then, so the next call leaves while this answer is acted on; before
        that, only after acting on it, so a fatal first answer (bad keys) stops the job
        before a second call goes."""
        op, target, works = chunk.operation, chunk.target, chunk.works
        subjects = [w.item.subject for w in works]
        request = op.build_request(target, subjects)
        log = self._log.bind(endpoint=ep.spec.name, chunk=next(self._chunk_ids), target="/".join(target),
                             items=len(works))
        assert ep.wire is not None
        on_wire = True
        try:
            while True:
                now = anyio.current_time()
                for w in works:
                    w.sends += 1
                    if w.first_sent_at is None:
                        w.first_sent_at = now
                ep.stats.calls += 1
                if self._journal is not None:
                    self._journal.before_call(w.index for w in works)
                generation, headers = credentials
                answer_lost = False
                with anyio.CancelScope(shield=True):  # a call in flight finishes even on stop
                    try:
                        response = await self.adapter.transport.send(request, headers)
                    except TransportError as exc:
                        result = CallResult.whole(CallVerdict.RETRY, "transport", scrub(str(exc)))
                        answer_lost = True
                    else:
                        result = _read(op, target, subjects, response)
                    finally:
                        ep.limiter.done(permit)  # the window counts from the answer (limiter.py)
                if result.verdict is CallVerdict.THROTTLED:  # before the next call may leave
                    pause = ep.spec.pause_for(result.retry_after, self.settings.max_pause)
                    ep.limiter.pause(pause)
                    ep.stats.throttled += 1
                    log.warning("endpoint.throttled", code=result.code, pause_s=round(pause, 3))
                if on_wire and ep.largest_answered:
                    ep.wire.release()
                    on_wire = False
                log.debug("chunk.answered", verdict=result.verdict.value, code=result.code)
                if result.verdict is not CallVerdict.AUTH_EXPIRED or chunk.auth_refreshed:
                    break
                chunk.auth_refreshed = True
                try:
                    with anyio.CancelScope(shield=True):
                        refreshed = await self.adapter.auth.refresh(generation)
                except AuthError as exc:
                    result = CallResult.whole(CallVerdict.FATAL, "auth", scrub(str(exc)))
                    break
                except TransportError as exc:
                    result = CallResult.whole(CallVerdict.RETRY, "auth", scrub(str(exc)))
                    break
                if refreshed:
                    ep.stats.auth_refreshes += 1
                    log.info("auth.refreshed")
                if on_wire:
                    ep.wire.release()
                    on_wire = False
                credentials = await self._credentials()
                permit = await self._permit_on_the_wire(ep)  # the re-send is a call like any other
                on_wire = True
            ended = self._act(ep, chunk, result, answer_lost, log)
        finally:
            if on_wire:
                ep.wire.release()
        await self._emit(ended)

    def _act(self, ep: _Endpoint, chunk: Chunk, result: CallResult, answer_lost: bool, log: Any) -> list[ItemOutcome]:
        """Turn one call's result into outcomes and re-queued items. Never waits."""
        op, works, verdict = chunk.operation, chunk.works, result.verdict
        now = anyio.current_time()
        ended: list[ItemOutcome] = []

        def end(w: Work, outcome: Outcome, code: str | None, message: str | None) -> None:
            if outcome is Outcome.NOT_ENROLLED and w.answer_lost:
                message = (message or "") + " (an earlier send's answer was lost; it may have done this)"
            ended.append(self._ledger.end(w, outcome, code, message))
            ep.open_items -= 1

        if verdict is CallVerdict.TOO_LARGE and len(works) <= ep.largest_answered:
            verdict = CallVerdict.SPLIT  # calls this size were answered: an item is refused, not the size
        if verdict is CallVerdict.ANSWERED:
            ep.largest_answered = max(ep.largest_answered, len(works))
            retry: list[Work] = []
            for w, r in zip(works, result.items, strict=True):
                if r.verdict is ItemVerdict.FINAL and r.outcome is not None:
                    end(w, r.outcome, r.code, r.message)
                else:
                    w.last_code, w.last_message = r.code, r.message
                    retry.append(w)
            if retry:
                self._retry_later(ep, op, retry, None, None, now, end)
        elif verdict is CallVerdict.RETRY or verdict is CallVerdict.AUTH_EXPIRED:
            # AUTH_EXPIRED here: refused again right after a refresh (the refresh may not have
            # reached every server yet): an attempt spent; the next attempt may refresh once more
            ep.stats.retried_calls += 1
            for w in works:
                w.answer_lost = w.answer_lost or answer_lost
            self._retry_later(ep, op, works, result.code, result.message, now, end)
        elif verdict is CallVerdict.THROTTLED:  # the endpoint was paused when the answer was read
            again = []
            for w in works:
                w.throttles += 1
                if w.throttles >= self.settings.max_throttles:
                    end(w, Outcome.GAVE_UP, result.code, f"throttled {w.throttles} times: {result.message}")
                else:
                    again.append(w)
            if again:
                ep.buffer.put_pinned(op, chunk.target, again, now)
        elif verdict in (CallVerdict.SPLIT, CallVerdict.TOO_LARGE) and len(works) > 1:
            half = (len(works) + 1) // 2
            if verdict is CallVerdict.TOO_LARGE:
                # by the refused size (calls in flight together halve once), never below a size
                # that was answered
                new_cap = max(1, len(works) // 2, ep.largest_answered)
                if new_cap < ep.buffer.cap_items:
                    ep.buffer.cap_items = new_cap
                    ep.stats.cap_halvings += 1
                    log.warning("endpoint.cap_halved", cap_items=new_cap, code=result.code)
            else:
                ep.stats.splits += 1
                log.info("chunk.split", code=result.code, message=result.message)
            ep.buffer.put_pinned(op, chunk.target, works[half:], now)
            ep.buffer.put_pinned(op, chunk.target, works[:half], now)
        elif verdict is CallVerdict.FATAL:
            self._stop(scrub(f"{result.code}: {result.message}"))
        else:  # FAILED, or a refused single item
            for w in works:
                end(w, Outcome.FAILED, result.code, result.message)
        return ended

    def _retry_later(self, ep: _Endpoint, op: Operation, works: Sequence[Work], code: str | None,
                     message: str | None, now: float, end: Any) -> None:
        policy = self.settings.retry
        delay = policy.backoff(max(w.failures for w in works) + 1, self._rng)
        for w in works:
            w.failures += 1
            if w.failures == 1:
                self.report.retried_items += 1
            if code is not None or message is not None:
                w.last_code, w.last_message = code, message
            assert w.first_sent_at is not None
            if policy.may_retry(w.failures, w.first_sent_at, now + delay):  # as of the re-send
                ep.buffer.put_later(op, w, now + delay)
            else:
                end(w, Outcome.GAVE_UP, w.last_code, f"gave up after {w.sends} sends: {w.last_message}")


def _read(op: Operation, target: tuple[str, ...], subjects: Sequence[str], response: Any) -> CallResult:
    """The adapter's reading, checked: an adapter that raises or miscounts is a bad answer.

    A 429 is a throttle whatever else in it could not be read: the vendor did nothing, so
    it pauses the endpoint (its own pause) and spends no attempt."""
    try:
        result = op.read_response(target, subjects, response)
    except Exception as exc:  # an answer the adapter could not read: retry, never crash
        message = scrub(f"{type(exc).__name__}: {exc}")
        if getattr(response, "status", None) == 429:
            return CallResult.whole(CallVerdict.THROTTLED, "429", f"too many requests (unreadable: {message})")
        return CallResult.whole(CallVerdict.RETRY, "unreadable", message)
    if result.verdict is CallVerdict.ANSWERED and len(result.items) != len(subjects):
        return CallResult.whole(CallVerdict.RETRY, "unreadable",
                                f"the answer covered {len(result.items)} of {len(subjects)} items")
    return result


# -- public entry points ------------------------------------------------------------------


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
) -> AsyncIterator[OutcomeStream]:
    """Run a job as a pipeline stage: ``async with stream(...) as outcomes: async for o in outcomes``.

    Leaving the block before the stream ends stops the job; the report still accounts
    for every item taken in.
    """
    settings = settings or JobSettings()
    send, receive = anyio.create_memory_object_stream[ItemOutcome](settings.outcome_buffer)
    job = Job(adapter, items, settings=settings, sinks=sinks, outcomes=send, limiters=limiters)

    async def produce() -> None:
        async with send:
            await job.run()

    async with anyio.create_task_group() as tg, receive:
        tg.start_soon(produce)
        try:
            yield OutcomeStream(receive, job)
        finally:
            tg.cancel_scope.cancel()
