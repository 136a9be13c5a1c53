"""Scenario 4: Docebo, 200,000 user-course pairs, one call in flight, latency growing with
the users per call.

Docebo forbids concurrent batch calls, so once a call of 1,000 users takes longer than the
hourly limit's spacing (3.6 s), the endpoint itself is the bottleneck: the best a client
can do is keep it busy. Efficiency here is the share of the span (first call's arrival to
last call's answer) during which the mock had a call in flight; the mock times it.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiohttp import web

from unenroll import EndpointSpec, Item, JobSettings, RetryPolicy, run
from unenroll.adapters.docebo.adapter import Docebo, DoceboLimits
from unenroll.adapters.docebo.mock import DoceboMock, DoceboMockConfig, DoceboMockState
from unenroll.contract.mock import Latency

from .measure import ArrivalRecorder, Row, efficiency, peak_rss_mb, vendor_offsets
from .mockproc import MockApp, MockProcess, wire

# vendor seconds: 0.5 s + 4 ms a user + up to 0.3 s, so 4.5-4.8 s for 1,000 users (> the 3.6 s spacing)
LATENCY = Latency(base=0.5, per_item=0.004, jitter=0.3)
CALLS_PER_HOUR = 1000


@dataclass(frozen=True, slots=True)
class DoceboScenario:
    pairs: int = 200_000
    courses: int = 20
    time_scale: float = 0.05
    fragmented: bool = True  # answers gzip, chunked, in pieces (mockproc.FRAGMENTED)
    seed: int = 4


def _classify(request: web.Request) -> str | None:
    return "unenroll" if request.method == "DELETE" and request.path.startswith("/learn/v1/enrollments") else None


def _throttled(response: web.StreamResponse) -> bool:
    return response.status == 429


def docebo_state(sc: DoceboScenario) -> tuple[DoceboMockState, list[tuple[int, int]]]:
    """The mock's seeded state and the (course, user) pairs to remove, in input order."""
    state = DoceboMockState.generate(courses=sc.courses, plans=0, courses_per_plan=0,
                                     users_per_target=sc.pairs // sc.courses, seed=sc.seed)
    return state, [(course, user) for course, users in state.courses.items() for user in sorted(users)]


def mock_config(sc: DoceboScenario) -> DoceboMockConfig:
    return DoceboMockConfig(time_scale=sc.time_scale, latency=LATENCY, seed=sc.seed, token_lifetime=1e9,
                            wire=wire(sc.fragmented))


def docebo_mock(params: dict[str, Any]) -> MockApp:
    """The mock of the scenario ``DoceboScenario(**params)`` (run in its own process by :mod:`benchmarks.mockproc`)."""
    sc = DoceboScenario(**params)
    state, _ = docebo_state(sc)
    mock = DoceboMock(mock_config(sc), state)
    recorder = ArrivalRecorder(_classify, _throttled)
    recorder.install(mock.app)
    return MockApp(mock.app, recorder)


async def docebo_contender(sc: DoceboScenario) -> Row:
    _, pairs = docebo_state(sc)
    config = mock_config(sc)
    loop = asyncio.get_running_loop()
    reported: dict[tuple[str, str], str] = {}
    async with MockProcess(docebo_mock, asdict(sc)) as mock, aiohttp.ClientSession() as session:
        adapter = Docebo(base_url=mock.url, session=session, client_id=config.client_id,
                         client_secret=config.client_secret, limits=DoceboLimits(), time_scale=sc.time_scale,
                         timeout=60.0)
        items = [Item("unenroll", ("course", str(course)), str(user)) for course, user in pairs]
        settings = JobSettings(retry=RetryPolicy().scaled(sc.time_scale), seed=sc.seed)
        started = loop.time()
        report = await run(adapter, items, settings=settings,
                           sinks=[lambda o: reported.__setitem__((o.item.target[1], o.item.subject), o.outcome.value)])
        elapsed = loop.time() - started
        rss = peak_rss_mb()  # before the truth is fetched and checked
        stats = await mock.stats()
        recording = (await mock.record()).recording

    done = set(stats["state"]["unenrolled"])
    accounted = sum(reported.get((str(c), str(u))) == "unenrolled" and f"course/{c}/{u}" in done for c, u in pairs)
    gate = stats["batch"]
    arrivals = recording.of("unenroll")
    spec = EndpointSpec("unenroll", max_calls=CALLS_PER_HOUR, window=3600.0,
                        min_interval=3600.0 / CALLS_PER_HOUR).scaled(sc.time_scale)
    endpoint = report.endpoints["unenroll"]
    gaps = recording.idle_gaps("unenroll")
    mean_gap = sum(gaps) / len(gaps) if gaps else 0.0
    # the gaps are CPU and loopback time, which time_scale does not shrink: at the vendor's own
    # pace the same gaps weigh time_scale times less
    busy_at_1x = gate["busy_seconds"] / sc.time_scale
    idle = gate["span_seconds"] - gate["busy_seconds"]
    projected = busy_at_1x / (busy_at_1x + idle) if busy_at_1x else None
    return Row(
        scenario="4",
        contender="unenroll",
        items=len(items),
        accounted=accounted,
        calls=len(arrivals),
        elapsed=elapsed,
        time_scale=sc.time_scale,
        efficiency=gate["busy_share"],
        ceiling=1.0,
        throttles=recording.refusals.get("unenroll", 0),
        retries=endpoint.retried_calls + endpoint.throttled,
        peak_rss_mb=rss,
        notes=["efficiency = the share of the span with a call in flight (the mock's busy time); "
               f"latency {LATENCY.base:g} s + {LATENCY.per_item * 1000:g} ms a user (+ up to {LATENCY.jitter:g} s), "
               "so a call of 1,000 users outlasts the 3.6 s spacing of 1,000 calls an hour",
               f"idle between calls: {mean_gap * 1000:.1f} ms on average (the answer read and acted on, the next "
               "request built and sent); idle time is not scaled, so at the vendor's own pace the busy share "
               f"would be {projected or 0:.3f}",
               f"by the hourly limit alone: {efficiency(spec, arrivals, len(arrivals)) or 0:.2f} of the least time"],
        window=3600.0,
        limit=CALLS_PER_HOUR,
        arrivals=vendor_offsets(arrivals, sc.time_scale),
        extra={"counts": report.counts, "busy_seconds": gate["busy_seconds"], "span_seconds": gate["span_seconds"],
               "concurrent_calls_refused": gate["concurrent_calls"], "chunk_cap": endpoint.cap_items,
               "mean_idle_ms": round(mean_gap * 1000, 2), "busy_share_at_1x": projected},
    )
