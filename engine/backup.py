"""Back up the enrolment records a job is about to change, through the vendor's read API.

An adapter that can read declares ``readers``: per operation name, an
:class:`EnrolmentReader` (the read endpoint, a pure cost estimate and two pure functions:
build the request for one page, read one answer into the targeted records). The engine
knows no vendor: :func:`plan_backup` adds up the calls and the least time the read
endpoint's limits allow, so the cost can be shown before any call; :func:`run_backup`
reads and writes one JSONL line per targeted item.

Invariants of :func:`run_backup`:

- every call (first sends, retries, re-sends after a throttle or a token refresh) starts
  only after the read endpoint's limiter allows it, so the reads never exceed that
  endpoint's limits; credentials are fetched *before* the permit (see ``pipeline.py``);
- every distinct targeted item ends in exactly one line: its record, or ``null`` when
  the read shows no enrolment (``"invalid"`` says why an item that the job would reject
  was not read);
- the file at ``path`` appears only when the backup is complete (it is written to
  ``<path>.partial`` and renamed); a read that cannot succeed stops the backup with a
  :class:`BackupError` whose message carries no secret;
- retries are bounded by the :class:`~unenroll.retry.RetryPolicy`, throttles by
  ``max_throttles`` per call, pages by ``max_pages`` per read, token refreshes by one per
  call.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio

from .adapter import Adapter, EndpointSpec
from .auth import AuthError, headers_with_retry
from .limiter import CallLimiter
from .logs import get_logger
from .model import CallResult, CallVerdict, Item
from .retry import RetryPolicy
from .secrets import scrub
from .transport import HttpRequest, HttpResponse, TransportError

Target = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadPage:
    """One answer of a read: the records of targeted subjects it holds, and whether
    another page follows."""

    records: Mapping[str, Mapping[str, Any]]  # subject -> the vendor's record
    more: bool


@dataclass(frozen=True, slots=True)
class EnrolmentReader:
    """How one operation's targets are read, declared by the adapter.

    ``max_subjects`` is how many subjects one read filters on (its pages are followed to
    the end); ``None`` means the read lists the whole target and every subject is picked
    from its pages. ``plan_calls(target, n_items)`` is the calls reading ``n_items`` of a
    target costs: exact, or a lower bound when ``plan_is_exact`` is false (the target's
    size is only known by reading it), ``plan_note`` then says why. ``build_page`` and
    ``read_page`` are pure; pages count from 0.
    """

    endpoint: str
    build_page: Callable[[Target, Sequence[str], int], HttpRequest]
    read_page: Callable[[Target, Sequence[str], HttpResponse], ReadPage | CallResult]
    plan_calls: Callable[[Target, int], int]
    max_subjects: int | None = None
    plan_is_exact: bool = True
    plan_note: str | None = None


class BackupError(Exception):
    """The backup cannot be made (no read for an operation, a refused or failing read).
    Nothing was changed; the message says why and carries no secret."""


def readers_of(adapter: Adapter) -> Mapping[str, EnrolmentReader]:
    readers: Mapping[str, EnrolmentReader] = getattr(adapter, "readers", {})
    return readers


def _reader(adapter: Adapter, operation: str) -> EnrolmentReader | None:
    """The operation's reader; ``None`` for an operation the adapter does not have (the job
    rejects its items, so they are never read); :class:`BackupError` if it cannot be read."""
    if operation not in adapter.operations:
        return None
    reader = readers_of(adapter).get(operation)
    if reader is None:
        raise BackupError(f"{adapter.vendor} has no read API for {operation!r}: it cannot be backed up")
    return reader


# -- the plan -----------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


@dataclass(frozen=True, slots=True)
class BackupPlan:
    """What a backup will cost: calls per read endpoint and the least time their limits
    allow (the endpoints are read side by side, so the slowest one sets it)."""

    vendor: str
    calls: dict[str, int]
    seconds: float
    exact: bool  # false: ``calls`` and ``seconds`` are lower bounds
    specs: dict[str, EndpointSpec] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def describe(self) -> str:
        if not self.total_calls:
            return "backup reads: nothing to read"
        at_least = "" if self.exact else "at least "
        lines = []
        for name, calls in self.calls.items():
            spec = self.specs.get(name)
            line = f"backup reads: {at_least}{calls:,} calls on {self.vendor} {name}"
            if spec is None or spec.max_calls is None:
                line += ", no documented rate limit (paced by the vendor's throttles)"
            else:
                line += (f", taking at least {_duration(spec.least_seconds_for(calls))} at {spec.max_calls:,} "
                         f"calls/{_duration(spec.window)}")
                if spec.min_interval > 0:
                    line += f", one every {_duration(spec.min_interval)}"
            lines.append(line)
        return "\n".join([*lines, *self.notes])


def plan_backup(adapter: Adapter, targets: Mapping[tuple[str, Target], int]) -> BackupPlan:
    """The cost of reading ``targets`` (``(operation, target) -> items``) before the job."""
    calls: dict[str, int] = defaultdict(int)
    exact = True
    notes: dict[str, None] = {}
    for (operation, target), n_items in targets.items():
        reader = _reader(adapter, operation)
        if reader is None or n_items <= 0:
            continue
        calls[reader.endpoint] += reader.plan_calls(target, n_items)
        if not reader.plan_is_exact:
            exact = False
            if reader.plan_note:
                notes[reader.plan_note] = None
    specs = {name: adapter.endpoints[name] for name in calls}
    seconds = max((specs[name].least_seconds_for(n) for name, n in calls.items()), default=0.0)
    return BackupPlan(adapter.vendor, dict(calls), seconds, exact, specs, tuple(notes))


# -- the run ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupResult:
    records: int  # lines written: one per distinct targeted item
    found: int  # of which the read found an enrolment
    calls: int  # read calls made, retries included
    path: Path


@dataclass(frozen=True, slots=True)
class _Read:
    """One read: some subjects of one target, paged to the end."""

    operation: str
    target: Target
    subjects: tuple[str, ...]
    reader: EnrolmentReader


class _Lines:
    """The backup file's writer: one JSON object per line."""

    def __init__(self, out: IO[str], vendor: str) -> None:
        self._out, self._vendor = out, vendor
        self.records = self.found = 0

    def write(self, operation: str, target: Target, subject: str, record: Mapping[str, Any] | None,
              invalid: str | None = None) -> None:
        line: dict[str, Any] = {"vendor": self._vendor, "operation": operation, "target": "/".join(target),
                                "subject": subject, "record": None if record is None else dict(record)}
        if invalid is not None:
            line["invalid"] = invalid
        self._out.write(json.dumps(line, default=str) + "\n")
        self.records += 1
        self.found += record is not None


@dataclass(frozen=True, slots=True)
class _Invalid:
    item: Item
    reason: str


def _plan_reads(adapter: Adapter, items: Sequence[Item]) -> tuple[dict[str, list[_Read]], list[_Invalid]]:
    """Distinct valid items grouped into reads, per read endpoint, and the invalid items
    with their reason (the job rejects those, so they change nothing and are not read)."""
    seen: set[tuple[str, Target, str]] = set()
    invalid: list[_Invalid] = []
    by_target: dict[tuple[str, Target], list[str]] = defaultdict(list)
    for item in items:
        key = (item.operation, item.target, item.subject)
        if key in seen:
            continue
        seen.add(key)
        op = adapter.operations.get(item.operation)
        try:
            problem = f"unknown operation {item.operation!r}" if op is None else op.validate(item)
        except Exception as exc:  # a malformed item: the job rejects it too
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            invalid.append(_Invalid(item, scrub(problem)))
        else:
            by_target[(item.operation, item.target)].append(item.subject)
    reads: dict[str, list[_Read]] = defaultdict(list)
    for (operation, target), subjects in by_target.items():
        reader = _reader(adapter, operation)
        assert reader is not None  # validated items have a known operation
        size = reader.max_subjects or len(subjects)
        for start in range(0, len(subjects), size):
            reads[reader.endpoint].append(_Read(operation, target, tuple(subjects[start : start + size]), reader))
    return reads, invalid


class _Reading:
    """Reads per endpoint: ``max_in_flight`` workers share the endpoint's one limiter."""

    def __init__(self, adapter: Adapter, lines: _Lines, retry: RetryPolicy, max_throttles: int, max_pages: int,
                 rng: random.Random) -> None:
        self.adapter, self.lines, self.retry = adapter, lines, retry
        self.max_throttles, self.max_pages, self.rng = max_throttles, max_pages, rng
        self.calls = 0
        self.failure: BackupError | None = None
        self.log = get_logger(vendor=adapter.vendor, phase="backup")

    async def run(self, reads: Mapping[str, Sequence[_Read]]) -> None:
        async with anyio.create_task_group() as tg:
            for endpoint, endpoint_reads in reads.items():
                spec = self.adapter.endpoints[endpoint]
                limiter = spec.make_limiter()
                queue = iter(endpoint_reads)  # shared by the workers: next() never awaits
                for _ in range(max(1, spec.max_in_flight)):
                    tg.start_soon(self._worker, spec, limiter, queue, tg.cancel_scope)
        if self.failure is not None:
            raise self.failure

    async def _worker(self, spec: EndpointSpec, limiter: CallLimiter, queue: Iterator[_Read],
                      scope: anyio.CancelScope) -> None:
        for read in queue:
            try:
                found = await self._read_all_pages(spec, limiter, read)
            except BackupError as exc:
                if self.failure is None:
                    self.failure = exc
                    self.log.error("backup.failed", endpoint=spec.name, error=str(exc))
                scope.cancel()
                return
            for subject in read.subjects:
                self.lines.write(read.operation, read.target, subject, found.get(subject))

    async def _read_all_pages(self, spec: EndpointSpec, limiter: CallLimiter, read: _Read) -> dict[str, Any]:
        """Pages until the answer says there are no more, or every subject has its record."""
        wanted = set(read.subjects)
        found: dict[str, Any] = {}
        for page in range(self.max_pages):
            answer = await self._call(spec, limiter, read, page)
            found.update((s, r) for s, r in answer.records.items() if s in wanted)
            if not answer.more or len(found) == len(wanted):
                return found
        raise BackupError(f"{spec.name}: target {'/'.join(read.target)} still had more after {self.max_pages} pages")

    async def _credentials(self) -> tuple[int, Mapping[str, str]]:
        try:
            return await headers_with_retry(self.adapter.auth, self.retry.max_attempts,
                                            lambda n: self.retry.backoff(n, self.rng))
        except AuthError as exc:
            raise BackupError(scrub(f"auth: {exc}")) from None

    async def _call(self, spec: EndpointSpec, limiter: CallLimiter, read: _Read, page: int) -> ReadPage:
        """One page, re-sent on throttles, transient failures and one token refresh."""
        where = f"{spec.name} {'/'.join(read.target)} page {page}"
        try:
            request = read.reader.build_page(read.target, read.subjects, page)
        except Exception as exc:
            raise BackupError(scrub(f"{where}: cannot build the request: {type(exc).__name__}: {exc}")) from None
        failures = throttles = 0
        refreshed = False
        first_sent: float | None = None
        generation, headers = await self._credentials()
        while True:
            permit = await limiter.acquire()  # credentials first, then the permit: see the module docstring
            self.calls += 1
            first_sent = anyio.current_time() if first_sent is None else first_sent
            try:
                response = await self.adapter.transport.send(request, headers)
            except TransportError as exc:
                result: ReadPage | CallResult = CallResult.whole(CallVerdict.RETRY, "transport", scrub(str(exc)))
            else:
                result = _read(read, response)
            finally:
                limiter.done(permit)
            if isinstance(result, ReadPage):
                return result
            verdict, reason = result.verdict, f"{result.code}: {result.message}"
            if verdict is CallVerdict.THROTTLED:
                throttles += 1
                if throttles > self.max_throttles:
                    raise BackupError(scrub(f"{where}: throttled {throttles} times ({reason})"))
                pause = result.retry_after if result.retry_after is not None else spec.lock_period
                limiter.pause(pause)
                self.log.warning("backup.throttled", endpoint=spec.name, code=result.code, pause_s=round(pause, 3))
            elif verdict is CallVerdict.AUTH_EXPIRED and not refreshed:
                refreshed = True
                try:
                    await self.adapter.auth.refresh(generation)
                except AuthError as exc:
                    raise BackupError(scrub(f"{where}: auth: {exc}")) from None
                except TransportError:
                    refreshed = False  # the token endpoint failed, not the credentials: try again below
                    failures += 1
                    await self._backoff(where, failures, first_sent, "the token endpoint failed")
            elif verdict is CallVerdict.RETRY:
                failures += 1
                await self._backoff(where, failures, first_sent, reason)
            else:
                raise BackupError(scrub(f"{where}: {reason}"))
            generation, headers = await self._credentials()

    async def _backoff(self, where: str, failures: int, first_sent: float, reason: str) -> None:
        if not self.retry.may_retry(failures, first_sent, anyio.current_time()):
            raise BackupError(scrub(f"{where}: gave up after {failures} failed sends ({reason})"))
        self.log.info("backup.retry", where=where, failures=failures, reason=scrub(reason))
        await anyio.sleep(self.retry.backoff(failures, self.rng))


def _read(read: _Read, response: HttpResponse) -> ReadPage | CallResult:
    """The reader's reading, checked: a reader that raises is a bad answer (retried)."""
    try:
        return read.reader.read_page(read.target, read.subjects, response)
    except Exception as exc:
        return CallResult.whole(CallVerdict.RETRY, "unreadable", f"{type(exc).__name__}: {exc}")


async def run_backup(
    adapter: Adapter,
    items: Sequence[Item],
    path: Path,
    *,
    retry: RetryPolicy | None = None,
    max_throttles: int = 10,
    max_pages: int = 100_000,
    seed: int | None = None,
) -> BackupResult:
    """Read the current enrolment of every distinct item and write it to ``path`` (JSONL).

    Each line: ``{"vendor", "operation", "target", "subject", "record"}``, ``target`` joined
    by ``/`` as in results files, ``record`` the vendor's fields or ``null`` when the read
    shows no enrolment (plus ``"invalid"`` for an item the job would reject). Raises
    :class:`BackupError` (before any call if an operation has no read API); the partial
    file is then left at ``<path>.partial``.
    """
    path = Path(path)
    reads, invalid = _plan_reads(adapter, items)  # raises before any call or file if something cannot be read
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        lines = _Lines(out, adapter.vendor)
        for bad in invalid:
            lines.write(bad.item.operation, bad.item.target, bad.item.subject, None, bad.reason)
        reading = _Reading(adapter, lines, retry or RetryPolicy(), max_throttles, max_pages, random.Random(seed))
        await reading.run(reads)
    os.replace(partial, path)
    reading.log.info("backup.finished", records=lines.records, found=lines.found, calls=reading.calls,
                     path=str(path))
    return BackupResult(lines.records, lines.found, reading.calls, path)
