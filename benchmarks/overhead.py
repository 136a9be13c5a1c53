"""Scenarios 5 and 6: the engine's own cost, and how it grows with the input.

- **in-process**: the full pipeline (intake, validation, de-duplication, chunking, limiter,
  workers, ledger, outcomes) with an adapter whose transport is an
  :class:`~unenroll.wire.http.InProcessTransport` that answers at once: no HTTP, no limits.
  What is left is the engine.
- **loopback HTTP**: the real Zoho adapter against the Zoho mock with its limits off, the
  mock in its own process (:mod:`benchmarks.mockproc`), so HTTP, JSON and the
  adapter's reading are in the figure too.

The input is a generator in both, so the figure is the engine's memory, not the caller's
list. Each size runs in its own process (the harness sees to it), so each peak RSS is its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from unenroll import EndpointSpec, Item, Operation, Outcome, run
from unenroll.model import CallResult, ItemResult
from unenroll.wire.auth import NoAuth
from unenroll.wire.http import HttpRequest, HttpResponse, InProcessTransport

from .measure import ArrivalRecorder, Row, cpu_seconds, peak_rss_mb
from .mockproc import MockApp, MockProcess, wire

TARGETS = 20
CHUNK = 100


@dataclass(frozen=True, slots=True)
class OverheadScenario:
    items: int = 1_000_000
    scenario: str = "5"
    in_flight: int = 4
    fragmented: bool = True  # loopback: answers gzip, chunked, in pieces without pauses (mockproc.wire)


class InstantVendor:
    """An adapter that answers every call at once: each item of it done. The request is
    one shared value and the answer one cached result per chunk size, so the adapter
    costs next to nothing and the figure is the engine's."""

    vendor = "instant"
    _REQUEST = HttpRequest("POST", "/unenroll")
    _RESPONSE = HttpResponse(200, b"")
    _DONE = ItemResult.final(Outcome.UNENROLLED, "200")

    def __init__(self, in_flight: int) -> None:
        self._answers: dict[int, CallResult] = {}
        self.transport = InProcessTransport(self._answer)
        self.auth = NoAuth()
        self.operations: Mapping[str, Operation] = {
            "unenroll": Operation("unenroll", "bulk", Outcome.UNENROLLED, CHUNK, self._build, self._read),
        }
        self.endpoints: Mapping[str, EndpointSpec] = {"bulk": EndpointSpec("bulk", max_in_flight=in_flight)}

    async def _answer(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        return self._RESPONSE

    def _build(self, target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
        return self._REQUEST

    def _read(self, target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
        answer = self._answers.get(len(subjects))
        if answer is None:
            answer = self._answers[len(subjects)] = CallResult.answered([self._DONE] * len(subjects))
        return answer


def instant_items(count: int) -> Iterator[Item]:
    """``count`` distinct items over 20 targets, made as they are read."""
    targets = [(str(5_000_000_000_000 + t),) for t in range(TARGETS)]
    for n in range(count):
        yield Item("unenroll", targets[n % TARGETS], str(7_000_000_000_000 + n))


async def in_process(sc: OverheadScenario) -> Row:
    rss_before = peak_rss_mb()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    report = await run(InstantVendor(sc.in_flight), instant_items(sc.items))
    elapsed = time.perf_counter() - started
    rss = peak_rss_mb()
    cpu = cpu_seconds() - cpu_before
    return Row(
        scenario=sc.scenario,
        contender="in-process",
        items=sc.items,
        accounted=report.counts.get("unenrolled", 0) if report.total == sc.items else 0,
        calls=report.calls,
        elapsed=elapsed,
        peak_rss_mb=rss,
        notes=[f"InProcessTransport answering at once, {CHUNK} items a call over {TARGETS} targets, "
               f"{sc.in_flight} calls in flight, no limits; the input is a generator"],
        extra={"counts": report.counts, "rss_before_mb": round(rss_before, 1), "cpu_seconds": round(cpu, 3),
               "us_per_item": round(elapsed / sc.items * 1e6, 3)},
    )


NO_LIMIT = 2**62


def zoho_ids(courses: int, batches_per_course: int, learners_per_batch: int) -> Iterator[tuple[tuple[str, str], str]]:
    """The ``((course, batch), erecno)`` pairs :meth:`ZohoMockState.generate` seeds, in its
    order, made as they are read (the engine's process must not hold them all). The
    mock's summary tells whether they matched: every one ends unenrolled there."""
    erecno = 7_000_000_000_000
    for c in range(courses):
        course = str(5_000_000_000_000 + c * 1000)
        for b in range(batches_per_course):
            target = (course, str(int(course) + b + 1))
            for _ in range(learners_per_batch):
                erecno += 1
                yield target, str(erecno)


def unlimited_zoho_mock(params: dict[str, Any]) -> MockApp:
    """The Zoho mock with its threshold off, no latency, no faults (run in its own process):
    ``params`` give its ``courses``, ``batches`` and ``learners``; ``fragmented`` (default
    on): its answers gzip, chunked, in pieces that follow each other at once."""
    from unenroll.adapters.zoho.mock import ZohoMock, ZohoMockConfig, ZohoMockState

    config = ZohoMockConfig(threshold=NO_LIMIT, window=1.0, token_lifetime=1e9,
                            wire=wire(params.get("fragmented", True), pause=False))
    mock = ZohoMock(config, ZohoMockState.generate(params["courses"], params["batches"], params["learners"]))

    def summary() -> dict[str, Any]:
        return {"unenrolled": sum(len(done) for done in mock.state.unenrolled.values()),
                "calls": mock.counters["unenroll"].calls}

    # no recorder installed: every call costs the mock's CPU, which is part of the figure
    return MockApp(mock.app, ArrivalRecorder(lambda request: None, lambda response: False), summary)


async def loopback(sc: OverheadScenario) -> Row:
    from unenroll.adapters.zoho.adapter import ZohoLimits, ZohoPeople
    from unenroll.adapters.zoho.mock import ZohoMockConfig

    courses, batches = 4, 5
    learners = -(-sc.items // (courses * batches))
    params = {"courses": courses, "batches": batches, "learners": learners, "fragmented": sc.fragmented}
    async with MockProcess(unlimited_zoho_mock, params) as mock, aiohttp.ClientSession() as session:
        defaults = ZohoMockConfig()
        adapter = ZohoPeople(session=session, base_url=mock.url, accounts_url=mock.url,
                             refresh_token=defaults.refresh_token, client_id=defaults.client_id,
                             client_secret=defaults.client_secret,
                             limits=ZohoLimits(max_in_flight=sc.in_flight, margin=0.0))
        # limits off: no calls per window on our side either (the mock's threshold is off)
        adapter.endpoints = {name: replace(spec, max_calls=None) for name, spec in adapter.endpoints.items()}
        items = (Item("unenroll", target, erecno)
                 for _, (target, erecno) in zip(range(sc.items), zoho_ids(courses, batches, learners), strict=False))
        mock_before = await mock.record()
        rss_before = peak_rss_mb()
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        report = await run(adapter, items)
        elapsed = time.perf_counter() - started
        rss = peak_rss_mb()
        cpu = cpu_seconds() - cpu_before
        mock_after = await mock.record()
    summary = mock_after.summary or {}
    mock_cpu = mock_after.cpu_seconds - mock_before.cpu_seconds
    done = report.counts.get("unenrolled", 0)
    return Row(
        scenario=sc.scenario,
        contender="loopback HTTP",
        items=sc.items,
        accounted=min(done, summary.get("unenrolled", 0)),
        calls=summary.get("calls", 0),
        elapsed=elapsed,
        peak_rss_mb=rss,
        notes=[f"ZohoPeople -> Zoho mock in its own process on 127.0.0.1, limits off, {sc.in_flight} calls in "
               f"flight, answers {'gzip, chunked, in pieces' if sc.fragmented else 'in one piece'}; "
               f"CPU over the run: engine process {cpu / elapsed:.0%} of a core, "
               f"mock {mock_cpu / elapsed:.0%}"],
        extra={"counts": report.counts, "rss_before_mb": round(rss_before, 1), "cpu_seconds": round(cpu, 3),
               "mock_cpu_seconds": round(mock_cpu, 3), "mock_peak_rss_mb": mock_after.peak_rss_mb,
               "us_per_item": round(elapsed / sc.items * 1e6, 3)},
    )
