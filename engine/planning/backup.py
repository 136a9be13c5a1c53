"""Back up the enrolment records a job is about to change, through the vendor's read API.

An adapter that can read declares ``readers``: per operation name, an
:class:`EnrolmentReader` (the read endpoint, a pure cost estimate and two pure functions:
build the request for one page, read one answer into the targeted records). The engine
knows no vendor: :func:`plan_backup` adds up the calls and the least time the read
endpoint's limits allow, so the cost can be shown before any call; :func:`run_backup`
reads and writes one JSONL line per targeted item.

Invariants of :func:`run_backup`:

- every call (first sends, retries, re-sends after a throttle or a token refresh) goes
  through the job's one call path (``job/calls.py``): it starts only after the read
  endpoint's limiter allows it, so the reads never exceed that endpoint's limits, and
  credentials are fetched *before* the permit;
- every distinct targeted item ends in exactly one line: its record, or ``null`` when
  the read shows no enrolment (``"invalid"`` says why an item that the job would reject
  was not read);
- the file at ``path`` appears only when the backup is complete (it is written to
  ``<path>.partial`` and renamed); each page's lines are written and flushed as soon as
  the page is read, so a stop or a kill keeps what was read; a read that cannot succeed
  stops the backup with a :class:`BackupError` whose message carries no secret;
- with a journal, the job's backup is recorded as begun (from then on the journal lets
  no change leave), each page as written, and the backup as complete with its hash; on a
  resumed job it goes on from the pages the journal knows (see :func:`run_backup`);
- the budget is the job's :class:`~unenroll.job.settings.JobSettings`: retries are
  bounded by its retry policy, throttles by ``max_throttles`` per page; pages by
  ``max_pages`` per read, token refreshes by one per call.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import anyio

from unenroll.accounts.journal import BackupState, Journal
from unenroll.accounts.ledger import EndpointStats
from unenroll.contract.declarations import Adapter, EndpointSpec, EnrolmentReader, Operation, ReadPage
from unenroll.job.calls import CallPath
from unenroll.job.endpoint import Lane
from unenroll.job.retry import RetryPolicy
from unenroll.job.settings import JobSettings
from unenroll.limits.window import CallLimiter
from unenroll.model import CallResult, CallVerdict, Item, ItemResult, ItemVerdict, Outcome
from unenroll.observe.logs import get_logger
from unenroll.observe.secrets import scrub
from unenroll.planning.durations import format_duration
from unenroll.wire.auth import AuthError
from unenroll.wire.http import HttpRequest, HttpResponse

Target = tuple[str, ...]


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
            line = f"backup reads: {at_least}{calls:,} call{'' if calls == 1 else 's'} on {self.vendor} {name}"
            if spec is None or spec.max_calls is None:
                line += ", no documented rate limit (paced by the vendor's throttles)"
            else:
                line += (f", taking at least {format_duration(spec.least_seconds_for(calls))} at {spec.max_calls:,} "
                         f"calls/{format_duration(spec.window)}")
                if spec.min_interval > 0:
                    line += f", one every {format_duration(spec.min_interval)}"
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
    records: int  # lines in the file: one per distinct targeted item
    found: int  # of which the read found an enrolment
    calls: int  # read calls made by this run, retries included
    path: Path
    sha256: str = ""
    kept: int = 0  # lines an earlier run had written (a resumed backup)
    calls_all_runs: int = 0
    already_complete: bool = False  # an earlier run finished it: nothing was read now


@dataclass(frozen=True, slots=True)
class _Read:
    """One read: some subjects of one target, paged to the end (from ``first_page``)."""

    operation: str
    target: Target
    subjects: tuple[str, ...]
    reader: EnrolmentReader
    first_page: int = 0

    @property
    def key(self) -> str | None:
        """A whole-target read's key in the journal: its pages list the target, whatever
        the subjects, so a resumed read goes on from the next page. ``None``: a filtered read
        (its pages depend on its subjects; a resumed backup reads the missing ones afresh)."""
        return None if self.reader.max_subjects else f"{self.operation}\x1f{'/'.join(self.target)}"


def _key(operation: str, target: Target | str, subject: str) -> tuple[str, str, str]:
    return operation, target if isinstance(target, str) else "/".join(target), subject


class _BackupFile:
    """``<path>.partial`` as it is written: each page's lines are appended and flushed as
    soon as the page is read, then the journal records how many bytes hold finished pages.
    So a kill loses at most the page being written, and a resume cuts the file back to what
    the journal knows and reads only what is missing."""

    def __init__(self, out: BinaryIO, vendor: str, journal: Journal | None, offset: int = 0, records: int = 0,
                 found: int = 0, calls_before: int = 0) -> None:
        self._out, self._vendor, self._journal = out, vendor, journal
        self.offset, self.records, self.found, self.calls_before = offset, records, found, calls_before
        self.listed: dict[str, tuple[int, bool]] = dict(journal.backup_listed()) if journal is not None else {}
        self.on_records: Callable[[int, int], None] | None = None  # (records, found) after each page: for display

    def _line(self, operation: str, target: Target, subject: str, record: Mapping[str, Any] | None,
              invalid: str | None = None) -> bytes:
        line: dict[str, Any] = {"vendor": self._vendor, "operation": operation, "target": "/".join(target),
                                "subject": subject, "record": None if record is None else dict(record)}
        if invalid is not None:
            line["invalid"] = invalid
        self.records += 1
        self.found += record is not None
        return (json.dumps(line, default=str) + "\n").encode("utf-8")

    def _commit(self, data: bytes, calls: int, page: tuple[str, int] | None = None,
                listed: tuple[int, bool] | None = None) -> None:
        if data:
            self._out.write(data)
            self._out.flush()  # on disk (the OS's) before the journal says so: a kill -9 keeps it
            self.offset += len(data)
        if page is not None and listed is not None:
            self.listed[page[0]] = listed
        if self._journal is not None:
            self._journal.backup_progress(self.offset, self.calls_before + calls, page, listed)
        if self.on_records is not None:
            self.on_records(self.records, self.found)

    def invalid(self, items: Sequence[_Invalid], calls: int) -> None:
        if items:
            self._commit(b"".join(self._line(bad.item.operation, bad.item.target, bad.item.subject, None, bad.reason)
                                  for bad in items), calls)

    def page(self, read: _Read, page: int, records: Mapping[str, Mapping[str, Any]], missing: Sequence[str] | None,
             calls: int, listed: tuple[int, bool] | None = None) -> None:
        """Page ``page`` of ``read`` gave ``records`` (new ones); ``missing``: the read is over
        and these subjects were not listed (written as ``null``); ``listed``: a whole-target
        read's count so far and whether it reached the end."""
        data = [self._line(read.operation, read.target, subject, record) for subject, record in records.items()]
        data += [self._line(read.operation, read.target, subject, None) for subject in missing or ()]
        key = read.key
        self._commit(b"".join(data), calls, None if key is None else (key, page + 1), listed)

    def close(self) -> None:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()


@dataclass(frozen=True, slots=True)
class _Invalid:
    item: Item
    reason: str


def _plan_reads(adapter: Adapter, items: Sequence[Item], done: Set[tuple[str, str, str]] = frozenset(),
                next_pages: Mapping[str, int] | None = None) -> tuple[dict[str, list[_Read]], list[_Invalid]]:
    """Distinct valid items grouped into reads, per read endpoint, and the invalid items
    with their reason (the job rejects those, so they change nothing and are not read).
    Items in ``done`` (written by an earlier run) are left out; a whole-target read starts
    at its page in ``next_pages``."""
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
        if problem is None:
            _reader(adapter, item.operation)  # raises before any call if the operation cannot be read
        if done and _key(item.operation, "/".join(map(str, item.target)), item.subject) in done:
            continue
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
            read = _Read(operation, target, tuple(subjects[start : start + size]), reader)
            if read.key is not None and next_pages and (first := next_pages.get(read.key)):
                read = replace(read, first_page=first)
            reads[reader.endpoint].append(read)
    return reads, invalid


class _Reading:
    """Reads per endpoint: ``max_in_flight`` workers share the endpoint's lane, and every
    call goes through the job's own call path (``job/calls.py``)."""

    def __init__(self, adapter: Adapter, out: _BackupFile, settings: JobSettings, max_pages: int,
                 rng: random.Random, enough: Mapping[str, int] | None = None,
                 limiters: Mapping[str, CallLimiter] | None = None,
                 stats: Mapping[str, EndpointStats] | None = None) -> None:
        self.adapter, self.out, self.settings, self.max_pages, self.rng = adapter, out, settings, max_pages, rng
        self.enough = enough or {}
        self.limiters = limiters or {}
        self.stats = stats or {}
        self.failure: BackupError | None = None
        self.log = get_logger(vendor=adapter.vendor, phase="backup")
        self.path = CallPath(adapter, settings, rng, self.log)
        self.lanes: list[Lane] = []

    @property
    def calls(self) -> int:
        return sum(lane.stats.calls for lane in self.lanes)

    async def run(self, reads: Mapping[str, Sequence[_Read]]) -> None:
        async with anyio.create_task_group() as tg:
            for endpoint, endpoint_reads in reads.items():
                lane = Lane(self.adapter.endpoints[endpoint], self.stats.get(endpoint), self.limiters.get(endpoint))
                self.lanes.append(lane)
                queue = iter(endpoint_reads)  # shared by the workers: next() never awaits
                for _ in range(lane.in_flight):
                    tg.start_soon(self._worker, lane, queue, tg.cancel_scope)
        if self.failure is not None:
            raise self.failure

    async def _worker(self, lane: Lane, queue: Iterator[_Read], scope: anyio.CancelScope) -> None:
        for read in queue:
            try:
                await self._read_all_pages(lane, read)
            except BackupError as exc:
                if self.failure is None:
                    self.failure = exc
                    self.log.error("backup.failed", endpoint=lane.spec.name, error=str(exc))
                scope.cancel()
                return

    async def _read_all_pages(self, lane: Lane, read: _Read) -> None:
        """Pages until the answer says there are no more, or every subject has its record (and
        a whole-target read has listed ``enough`` for the change threshold); each page's
        records are written as soon as it is read."""
        wanted = set(read.subjects)
        found: set[str] = set()
        key = read.key
        enough = self.enough.get(key, 0) if key is not None else 0
        listed = self.out.listed.get(key, (0, False))[0] if key is not None else 0
        for page in range(read.first_page, self.max_pages):
            answer = await self._call(lane, read, page)
            new = {s: r for s, r in answer.records.items() if s in wanted and s not in found}
            found.update(new)
            counted = answer.listed is not None
            listed += answer.listed or 0
            last = not answer.more or (len(found) == len(wanted) and (not counted or listed >= enough))
            missing = [s for s in read.subjects if s not in found] if last else None
            self.out.page(read, page, new, missing, self.calls, (listed, not answer.more) if counted else None)
            if last:
                return
        raise BackupError(f"{lane.spec.name}: target {'/'.join(read.target)} still had more after "
                          f"{self.max_pages} pages")

    async def _call(self, lane: Lane, read: _Read, page: int) -> ReadPage:
        """One page through the call path (see :func:`read_within_budget`)."""
        where = f"{lane.spec.name} {'/'.join(read.target)} page {page}"
        try:
            request = read.reader.build_page(read.target, read.subjects, page)
        except Exception as exc:
            raise BackupError(scrub(f"{where}: cannot build the request: {type(exc).__name__}: {exc}")) from None

        def read_page(response: HttpResponse) -> ReadPage | CallResult:
            return read.reader.read_page(read.target, read.subjects, response)

        return await read_within_budget(self.path, lane, request, read_page, self.settings, self.rng, self.log, where)


R = TypeVar("R")


async def read_within_budget(path: CallPath, lane: Lane, request: HttpRequest,
                             read: Callable[[HttpResponse], R | CallResult], settings: JobSettings,
                             rng: random.Random, log: Any, where: str) -> R:
    """One read through the job's call path (its limiter, its pauses), sent again after a
    throttle or a transient failure as long as the job's budget (``JobSettings``) allows;
    :class:`BackupError` (no secret in it) when it cannot succeed."""
    first_sent: list[float] = []

    def before_send() -> None:
        if not first_sent:
            first_sent.append(anyio.current_time())

    failures = throttles = 0
    while True:
        try:
            answer = await path.send(lane, await path.board(lane), request, read, before_send=before_send,
                                     finish_on_stop=False)  # reads change nothing
        except AuthError as exc:
            raise BackupError(scrub(f"auth: {exc}")) from None
        result = answer.result
        if not isinstance(result, CallResult):
            return result
        reason = f"{result.code}: {result.message}"
        if result.verdict is CallVerdict.THROTTLED:  # the call path paused the endpoint
            throttles += 1
            if not settings.may_meet_another_throttle(throttles):
                raise BackupError(scrub(f"{where}: throttled {throttles} times ({reason})"))
        elif result.verdict is CallVerdict.RETRY:
            failures += 1
            delay = settings.retry.delay_before_next_send(failures, first_sent[0], anyio.current_time(), rng)
            if delay is None:
                raise BackupError(scrub(f"{where}: gave up after {failures} failed sends ({reason})"))
            log.info("backup.retry", where=where, failures=failures, reason=scrub(reason))
            await anyio.sleep(delay)
        else:  # refused: for good, or again right after a token refresh
            raise BackupError(scrub(f"{where}: {reason}"))


# -- counting what targets hold (the change threshold) ------------------------------------------


def countable(adapter: Adapter, operation: str) -> EnrolmentReader | None:
    """The operation's reader if it can count a target in one call (``build_count``)."""
    reader = readers_of(adapter).get(operation)
    return reader if reader is not None and reader.build_count is not None else None


async def count_targets(adapter: Adapter, targets: Sequence[tuple[str, Target]], settings: JobSettings | None = None,
                        ) -> dict[tuple[str, Target], int]:
    """What each ``(operation, target)`` holds, one read call each (its reader's
    ``build_count``/``read_count``), through the job's call path and the read endpoint's
    limiter; :class:`BackupError` if a count cannot be read. Targets whose reader cannot
    count are left out."""
    settings = settings or JobSettings()
    rng = random.Random(settings.seed)
    log = get_logger(vendor=adapter.vendor, phase="count")
    path = CallPath(adapter, settings, rng, log)
    lanes: dict[str, Lane] = {}
    counts: dict[tuple[str, Target], int] = {}
    for operation, target in targets:
        reader = countable(adapter, operation)
        if reader is None or reader.build_count is None or reader.read_count is None:
            continue
        lane = lanes.get(reader.endpoint) or lanes.setdefault(reader.endpoint, Lane(adapter.endpoints[reader.endpoint]))
        counts[(operation, target)] = await read_within_budget(
            path, lane, reader.build_count(target), partial(reader.read_count, target), settings, rng, log,
            f"{reader.endpoint} {'/'.join(target)} count")
    return counts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lines_of(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for raw in f:
            line: dict[str, Any] = json.loads(raw)
            yield line


@dataclass(slots=True)
class _Kept:
    """What an earlier run wrote to the partial file (cut back to its journaled pages)."""

    done: set[tuple[str, str, str]] = field(default_factory=set)
    records: int = 0
    found: int = 0
    offset: int = 0


def _recover(path: Path, partial: Path, state: BackupState, journal: Journal) -> _Kept | BackupResult:
    """A journaled backup that an earlier run did not finish: the partial file cut back to
    the bytes the journal knows hold finished pages, and what they hold. A file renamed
    just before the run died is that backup, complete. A partial file that is gone or
    shorter than the journal says is read again from the start."""
    log = get_logger(phase="backup")
    if not partial.exists() and state.offset and path.exists() and path.stat().st_size == state.offset:
        lines = list(_lines_of(path))
        sha = _sha256(path)
        found = sum(line.get("record") is not None for line in lines)
        journal.backup_complete(sha, len(lines), found, state.calls, state.offset)
        return BackupResult(len(lines), found, 0, path, sha, len(lines), state.calls, already_complete=True)
    if partial.exists() and partial.stat().st_size >= state.offset:
        os.truncate(partial, state.offset)  # what follows was written by a page the journal does not know of
        kept = _Kept(offset=state.offset)
        try:
            for line in _lines_of(partial):
                kept.done.add(_key(line["operation"], line["target"], line["subject"]))
                kept.records += 1
                kept.found += line.get("record") is not None
            return kept
        except (ValueError, KeyError, TypeError):
            log.warning("backup.partial_unreadable", path=str(partial))
    else:
        log.warning("backup.partial_missing", path=str(partial), journaled_bytes=state.offset)
    journal.backup_begin(state.path)
    return _Kept()


async def run_backup(
    adapter: Adapter,
    items: Sequence[Item],
    path: Path,
    *,
    settings: JobSettings | None = None,
    max_pages: int = 100_000,
    journal: Journal | None = None,
    retry: RetryPolicy | None = None,
    max_throttles: int | None = None,
    seed: int | None = None,
    max_pause: float | None = None,
    enough: Mapping[str, int] | None = None,
    limiters: Mapping[str, CallLimiter] | None = None,
    stats: Mapping[str, EndpointStats] | None = None,
    on_records: Callable[[int, int], None] | None = None,
) -> BackupResult:
    """Read the current enrolment of every distinct item and write it to ``path`` (JSONL).

    Each line: ``{"vendor", "operation", "target", "subject", "record"}``, ``target`` joined
    by ``/`` as in results files, ``record`` the vendor's fields or ``null`` when the read
    shows no enrolment (plus ``"invalid"`` for an item the job would reject). Calls go
    through the job's call path, and the job's ``settings`` are the budget: a throttled read
    pauses its endpoint as the job does (the vendor's word, at most ``max_pause``), a page
    meets at most ``max_throttles`` throttles, and transient failures are retried as the
    retry policy allows. ``retry``, ``max_throttles``, ``seed`` and ``max_pause`` override
    those ``settings`` (for older callers). Raises
    :class:`BackupError` (before any call if an operation has no read API); the partial
    file is then left at ``<path>.partial``. ``enough``: per whole-target read key, the
    enrolments it must list before it may stop early (the change threshold's count, see
    ``threshold.py``); what each listed is journaled (:meth:`Journal.backup_listed`).
    For a progress display: ``limiters`` (per read endpoint, e.g. watched ones; by default
    each spec makes its own), ``stats`` (per read endpoint, counted live) and
    ``on_records(records, found)``, called after each page is written.

    With a ``journal`` the backup is the job's: it is recorded as begun (no change may be
    sent from then on, see ``journal.py``), each page as written, and the backup as
    complete with its hash. Called again on the resumed job, it goes on where the earlier
    run stopped (the same ``items`` and ``path``), or returns the backup an earlier run
    completed without reading anything.
    """
    overrides: dict[str, Any] = {"retry": retry, "max_throttles": max_throttles, "seed": seed, "max_pause": max_pause}
    settings = replace(settings or JobSettings(), **{k: v for k, v in overrides.items() if v is not None})
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    state = journal.backup_state() if journal is not None else None
    if state is not None and Path(state.path) != path.resolve():
        raise BackupError(f"this job's backup is {state.path}, not {path}")
    if state is not None and state.complete:
        return BackupResult(state.records, state.found, 0, path, state.sha256 or "", state.records, state.calls,
                            already_complete=True)
    kept = _Kept()
    if state is not None:
        assert journal is not None
        recovered = _recover(path, partial, state, journal)
        if isinstance(recovered, BackupResult):
            return recovered
        kept = recovered
        state = journal.backup_state()
    pages = journal.backup_pages() if journal is not None and kept.offset else {}
    reads, invalid = _plan_reads(adapter, items, kept.done, pages)  # raises before any call if something cannot be read
    calls_before = 0
    if journal is not None and state is None:
        journal.backup_begin(str(path.resolve()))
    elif state is not None:
        calls_before = state.calls
    out = _BackupFile(partial.open("ab" if kept.offset else "wb"), adapter.vendor, journal, kept.offset,
                      kept.records, kept.found, calls_before)
    out.on_records = on_records
    reading = _Reading(adapter, out, settings, max_pages, random.Random(settings.seed), enough, limiters, stats)
    try:
        out.invalid(invalid, 0)
        await reading.run(reads)
    finally:
        out.close()
    sha = _sha256(partial)
    os.replace(partial, path)
    calls_all = calls_before + reading.calls
    if journal is not None:
        journal.backup_complete(sha, out.records, out.found, calls_all, out.offset)
    reading.log.info("backup.finished", records=out.records, found=out.found, calls=reading.calls,
                     kept=kept.records, path=str(path))
    return BackupResult(out.records, out.found, reading.calls, path, sha, kept.records, calls_all)


# -- what the read alone settles ----------------------------------------------------------


def settled_by_backup(adapter: Adapter, path: Path) -> dict[tuple[str, str, str], ItemResult]:
    """The items of a complete backup file whose read alone gives their final result (their
    reader's ``settled``), by ``(operation, target joined by "/", subject)``."""
    settled: dict[tuple[str, str, str], ItemResult] = {}
    for line in _lines_of(Path(path)):
        reader = readers_of(adapter).get(str(line.get("operation")))
        if reader is None or reader.settled is None or "invalid" in line:
            continue
        record = line.get("record")
        result = reader.settled(record if isinstance(record, Mapping) else None)
        if result is not None and result.verdict is ItemVerdict.FINAL and result.outcome is not None:
            settled[_key(line["operation"], line["target"], line["subject"])] = result
    return settled


def reconcile_refusals(operation: Operation, settled: Mapping[tuple[str, str, str], ItemResult]) -> Operation:
    """``operation`` whose answers are read as before, except that an item the vendor
    refuses for good (``failed``, per item or for the whole call) whose backup read settles
    it ends as the read says. The vendor's refusal is quoted in the message; any other
    answer stands (an accepted change is never overridden by an older read)."""
    mine = {(target, subject): result for (name, target, subject), result in settled.items()
            if name == operation.name}
    if not mine:
        return operation
    read_response = operation.read_response

    def settle(refusal: ItemResult, read: ItemResult | None) -> ItemResult:
        if read is None or refusal.verdict is not ItemVerdict.FINAL or refusal.outcome is not Outcome.FAILED:
            return refusal
        assert read.outcome is not None
        said = read.message or f"the backup read shows it {read.outcome.value}"
        return ItemResult.final(read.outcome, read.code or refusal.code,
                                f"{said}; the vendor refused the change ({refusal.code}: {refusal.message})")

    def read_reconciled(target: Target, subjects: Sequence[str], response: HttpResponse) -> CallResult:
        result = read_response(target, subjects, response)
        joined = "/".join(target)
        if result.verdict is CallVerdict.ANSWERED and len(result.items) == len(subjects):
            return replace(result, items=tuple(settle(r, mine.get((joined, s)))
                                               for s, r in zip(subjects, result.items, strict=True)))
        if result.verdict is CallVerdict.FAILED and any((joined, s) in mine for s in subjects):
            refusal = ItemResult.final(Outcome.FAILED, result.code, result.message)
            return CallResult.answered([settle(refusal, mine.get((joined, s))) for s in subjects])
        return result

    return replace(operation, read_response=read_reconciled)
