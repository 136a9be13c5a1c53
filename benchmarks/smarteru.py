"""Scenario 3: SmarterU, 50,000 ids, 3 % invalid and 2 % already queued, the mock's 429
limit on; once with the limit configured, once learning it from 429s.

SmarterU documents no rate limit; the mock enforces 60 calls in any 60 s and answers the
call over it with HTTP 429 and a ``Retry-After`` for the rest of the window. The
"configured" run is told that limit (the engine's rolling-window limiter); the
"learnt" run is told nothing and learns it from the 429s (the adapter's default: the
limit learned as a window, ``unenroll.limits.learned``).
Efficiency is measured against the mock's limit in both.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiohttp import web

from unenroll import EndpointSpec, JobSettings, Outcome, RetryPolicy, run
from unenroll.adapters.smarteru.adapter import SmarterU, SmarterULimits, unenroll_item
from unenroll.adapters.smarteru.mock import QUEUED, SmarterUMock, SmarterUMockConfig, SmarterUMockState
from unenroll.contract.mock import Latency

from .measure import ArrivalRecorder, Row, efficiency, peak_rss_mb, vendor_offsets, window_ceiling
from .mockproc import MockApp, MockProcess, wire

RATE_LIMIT, RATE_WINDOW = 60, 60.0  # the mock's: 60 calls in any 60 s, then 429
LATENCY = Latency(base=0.3, per_item=0.005, jitter=0.3)  # vendor seconds: 0.8-1.1 s for 100 ids
INVALID_SHARE, QUEUED_SHARE = 0.03, 0.02


@dataclass(frozen=True, slots=True)
class SmarterUScenario:
    items: int = 50_000
    time_scale: float = 0.05
    learn: bool = False  # True: no limit configured, learn it from 429s
    margin: float | None = None  # vendor seconds, for the configured limit; None: SmarterULimits' own
    fragmented: bool = True  # answers gzip, chunked, in pieces (mockproc.FRAGMENTED)
    seed: int = 3

    @property
    def reference(self) -> EndpointSpec:
        return EndpointSpec("apiv2", max_calls=RATE_LIMIT, window=RATE_WINDOW).scaled(self.time_scale)


def _classify(request: web.Request) -> str | None:
    return "apiv2" if request.method == "POST" and request.path.startswith("/apiv2") else None


def _throttled(response: web.StreamResponse) -> bool:
    return response.status == 429


def smarteru_state(sc: SmarterUScenario) -> tuple[SmarterUMockState, dict[str, Outcome], list[str]]:
    """The mock's seeded state, the outcome each id should end with, and the input order."""
    invalid_count = round(sc.items * INVALID_SHARE)
    queued_count = round(sc.items * QUEUED_SHARE)
    state = SmarterUMockState.generate(sc.items - invalid_count - queued_count, queued_count, seed=sc.seed)
    expected = {i: Outcome.QUEUED for i in state.ids_with("enrolled")}
    expected |= {i: Outcome.QUEUED for i in state.ids_with(QUEUED)}  # ULM:03: already accepted
    expected |= {str(90_000_000 + n): Outcome.FAILED for n in range(invalid_count)}  # ULM:02
    ids = list(expected)
    random.Random(sc.seed).shuffle(ids)
    return state, expected, ids


def mock_config(sc: SmarterUScenario) -> SmarterUMockConfig:
    return SmarterUMockConfig(time_scale=sc.time_scale, queue_delay=1e9, rate_limit=RATE_LIMIT,
                              rate_window=RATE_WINDOW, latency=LATENCY, wire=wire(sc.fragmented), seed=sc.seed)


def smarteru_mock(params: dict[str, Any]) -> MockApp:
    """The mock of the scenario ``SmarterUScenario(**params)`` (run in its own process by
    :mod:`benchmarks.mockproc`)."""
    sc = SmarterUScenario(**params)
    state, _, _ = smarteru_state(sc)
    mock = SmarterUMock(mock_config(sc), state)
    recorder = ArrivalRecorder(_classify, _throttled)
    recorder.install(mock.app)
    return MockApp(mock.app, recorder)


async def smarteru_contender(sc: SmarterUScenario) -> Row:
    _, expected, ids = smarteru_state(sc)
    config = mock_config(sc)
    limits = SmarterULimits()
    if not sc.learn:
        limits = SmarterULimits(calls_per_window=RATE_LIMIT, window=RATE_WINDOW,
                                margin=limits.margin if sc.margin is None else sc.margin)
    reported: dict[str, Outcome] = {}
    loop = asyncio.get_running_loop()
    async with MockProcess(smarteru_mock, asdict(sc)) as mock, aiohttp.ClientSession() as session:
        adapter = SmarterU(session=session, base_url=mock.url, allow_insecure_http=True,
                           account_api_key=config.account_api_key, user_api_key=config.user_api_key,
                           limits=limits, time_scale=sc.time_scale, timeout=30.0)
        settings = JobSettings(retry=RetryPolicy().scaled(sc.time_scale), seed=sc.seed)
        started = loop.time()
        report = await run(adapter, [unenroll_item(i) for i in ids], settings=settings,
                           sinks=[lambda o: reported.__setitem__(o.item.subject, o.outcome)])
        elapsed = loop.time() - started
        rss = peak_rss_mb()  # before the truth is fetched and checked
        stats = await mock.stats()
        recording = (await mock.record()).recording

    queued = set(stats["state"]["queued"])
    accounted = sum(reported.get(i) is outcome and (outcome is not Outcome.QUEUED or i in queued)
                    for i, outcome in expected.items())
    arrivals = recording.of("apiv2")
    latency = recording.mean_latency("apiv2") / sc.time_scale
    endpoint = report.endpoints["apiv2"]
    if sc.learn:
        notes = ["no limit configured: the limit is learned as a window from the 429s (Retry-After and the calls "
                 "admitted before each); each 429 pauses the endpoint for its Retry-After"]
    else:
        notes = [f"SmarterULimits(calls_per_window={RATE_LIMIT}, window={RATE_WINDOW:g} s), margin "
                 f"{limits.margin:g} s; ceiling = window / (window + latency + margin), latency {latency:.2f} s "
                 "on average"]
    notes.append(f"mock: {RATE_LIMIT} calls in any {RATE_WINDOW:g} s, then 429; {INVALID_SHARE:.0%} invalid ids "
                 f"(failed), {QUEUED_SHARE:.0%} already queued (queued)")
    return Row(
        scenario="3",
        contender="unenroll, learnt from 429s" if sc.learn else "unenroll, limit configured",
        items=len(ids),
        accounted=accounted,
        calls=len(arrivals),
        elapsed=elapsed,
        time_scale=sc.time_scale,
        efficiency=efficiency(sc.reference, arrivals, recording.served("apiv2")),
        ceiling=None if sc.learn else window_ceiling(RATE_WINDOW, latency, limits.margin),
        throttles=recording.refusals.get("apiv2", 0),
        retries=endpoint.retried_calls + endpoint.throttled,
        peak_rss_mb=rss,
        notes=notes,
        window=RATE_WINDOW,
        limit=RATE_LIMIT,
        arrivals=vendor_offsets(arrivals, sc.time_scale),
        extra={"counts": report.counts, "engine_calls": report.calls, "throttle_events": stats["throttle_events"],
               "calls_past_429": stats["calls_past_429"], "max_accepted_in_window": stats["max_accepted_in_window"],
               "mean_latency_s": round(latency, 4)},
    )
