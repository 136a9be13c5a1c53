"""Scenario 8: SmarterU with a limit nobody documents, of three shapes, learned or not.

The SmarterU mock gets a hidden limit (``unenroll.mockkit.hidden``) the client is never told:
5 calls in any 1 s, 20 calls in any 10 s, or a token bucket of 5 a second with a burst of 5.
Each contender unenrolls the same ids against its own mock:

- **AIMD**: the adaptive limiter (``SmarterULimits(learn=0)``), which backs off on a 429 and
  creeps back up;
- **learner, first run**: the learned window (the default), from scratch;
- **learner, second run**: the same, starting at the limit the first run learned (what the
  command line recalls from the quota store); the first run happens unmeasured before it;
- **configured**: the hidden limit given as the endpoint's window (the ceiling).

*efficiency* = the least time the hidden limit allows for the calls the mock served, over the
span of all arrivals; *locks/429s* the 429 answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiohttp import web

from unenroll import JobSettings, Outcome, RetryPolicy, run
from unenroll.adapters.smarteru.adapter import SmarterU, SmarterULimits, unenroll_item
from unenroll.adapters.smarteru.mock import SmarterUMock, SmarterUMockConfig, SmarterUMockState
from unenroll.contract import LearnedWindowLimiter, WindowEstimate
from unenroll.contract.mock import Latency

from .measure import ArrivalRecorder, Row, peak_rss_mb, vendor_offsets
from .mockproc import MockApp, MockProcess, wire

# vendor seconds: ~30 ms for 100 ids. The engine counts each window from the answer of the call N
# before, so a window costs one latency: the ceiling is W / (W + latency), 0.97 at 5 per second
LATENCY = Latency(base=0.01, per_item=0.0002, jitter=0.01)
SHAPES = {  # name -> (hidden limit, least vendor seconds for n served calls)
    "5/1 s": "rolling:5/1s",
    "20/10 s": "rolling:20/10s",
    "bucket 5/s, burst 5": "bucket:5/s,burst=5",
}
CONTENDERS = ("AIMD", "learner, first run", "learner, second run", "configured")


def least_seconds(shape: str, served: int) -> float:
    """The least vendor seconds the hidden limit allows between the first and the last of ``served`` arrivals."""
    if served <= 1:
        return 0.0
    if shape == "rolling:5/1s":
        return ((served - 1) // 5) * 1.0
    if shape == "rolling:20/10s":
        return ((served - 1) // 20) * 10.0
    return max(0.0, (served - 5) / 5.0)  # the bucket: the burst, then one a fifth of a second


def configured(shape: str) -> tuple[int, float]:
    """The hidden limit as a window (the bucket: its burst per the time it takes to refill)."""
    return {"rolling:5/1s": (5, 1.0), "rolling:20/10s": (20, 10.0), "bucket:5/s,burst=5": (5, 1.0)}[shape]


@dataclass(frozen=True, slots=True)
class LearningScenario:
    shape: str = "rolling:5/1s"
    contender: str = "learner, first run"
    items: int = 50_000
    time_scale: float = 0.05
    fragmented: bool = True
    seed: int = 8


def _classify(request: web.Request) -> str | None:
    return "apiv2" if request.method == "POST" and request.path.startswith("/apiv2") else None


def _throttled(response: web.StreamResponse) -> bool:
    return response.status == 429


def _state(sc: LearningScenario) -> SmarterUMockState:
    return SmarterUMockState.generate(sc.items, 0, seed=sc.seed)


def learning_mock(params: dict[str, Any]) -> MockApp:
    sc = LearningScenario(**params)
    config = SmarterUMockConfig(time_scale=sc.time_scale, queue_delay=1e9, latency=LATENCY,
                                wire=wire(sc.fragmented), seed=sc.seed, hidden_limit=sc.shape)
    mock = SmarterUMock(config, _state(sc))
    recorder = ArrivalRecorder(_classify, _throttled)
    recorder.install(mock.app)
    return MockApp(mock.app, recorder)


IN_FLIGHT = 4  # every contender: with the adapter's 2, the calls' latency alone keeps them under 5 a second


def _limits(sc: LearningScenario) -> SmarterULimits:
    if sc.contender == "AIMD":
        return SmarterULimits(learn=0, max_in_flight=IN_FLIGHT)
    if sc.contender == "configured":
        calls, window = configured(sc.shape)
        return SmarterULimits(calls_per_window=calls, window=window, max_in_flight=IN_FLIGHT)
    return SmarterULimits(max_in_flight=IN_FLIGHT)


async def _unenroll(sc: LearningScenario, url: str, ids: list[str], start: WindowEstimate | None,
                    ) -> tuple[dict[str, Outcome], float, WindowEstimate | None]:
    config = SmarterUMockConfig()
    limits = _limits(sc)
    async with aiohttp.ClientSession() as session:
        adapter = SmarterU(session=session, base_url=url, allow_insecure_http=True,
                           account_api_key=config.account_api_key, user_api_key=config.user_api_key,
                           limits=limits, time_scale=sc.time_scale, timeout=30.0)
        limiter = adapter.endpoints["apiv2"].make_limiter()
        if isinstance(limiter, LearnedWindowLimiter) and start is not None:
            limiter.adopt(start)
        reported: dict[str, Outcome] = {}
        settings = JobSettings(retry=RetryPolicy().scaled(sc.time_scale), seed=sc.seed)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await run(adapter, [unenroll_item(i) for i in ids], settings=settings, limiters={"apiv2": limiter},
                  sinks=[lambda o: reported.__setitem__(o.item.subject, o.outcome)])
        elapsed = loop.time() - started
    learned = limiter.estimate if isinstance(limiter, LearnedWindowLimiter) else None
    return reported, elapsed, learned


async def learning_contender(sc: LearningScenario) -> Row:
    ids = sorted(_state(sc).ids_with("enrolled"))
    start: WindowEstimate | None = None
    notes: list[str] = []
    if sc.contender == "learner, second run":  # the first run, unmeasured, against a mock of its own
        async with MockProcess(learning_mock, asdict(sc)) as first:
            _, _, start = await _unenroll(sc, first.url, ids, None)
        if start is not None:
            notes.append(f"started at the first run's limit: {start.describe(sc.time_scale)}")
    async with MockProcess(learning_mock, asdict(sc)) as mock:
        reported, elapsed, learned = await _unenroll(sc, mock.url, ids, start)
        rss = peak_rss_mb()
        stats = await mock.stats()
        recording = (await mock.record()).recording
    queued = set(stats["state"]["queued"]) | set(stats["state"].get("unenrolled", []))
    accounted = sum(reported.get(i) is Outcome.QUEUED and i in queued for i in ids)
    arrivals = recording.of("apiv2")
    served = recording.served("apiv2")
    span = (max(arrivals) - min(arrivals)) / sc.time_scale if len(arrivals) > 1 else 0.0
    least = least_seconds(sc.shape, served)
    if learned is not None:
        notes.append(f"ended at {learned.describe(sc.time_scale)}")
    notes.append(f"hidden limit: {stats['hidden_limit']}")
    return Row(
        scenario="8",
        contender=f"{_title(sc.shape)}: {sc.contender}",
        items=len(ids),
        accounted=accounted,
        calls=len(arrivals),
        elapsed=elapsed,
        time_scale=sc.time_scale,
        efficiency=least / span if least > 0 and span > 0 else None,
        throttles=recording.refusals.get("apiv2", 0),
        peak_rss_mb=rss,
        notes=notes,
        arrivals=vendor_offsets(arrivals, sc.time_scale),
        extra={"shape": sc.shape, "contender": sc.contender, "hidden_refused": stats["hidden_refused"]},
    )


def _title(shape: str) -> str:
    return next(title for title, spec in SHAPES.items() if spec == shape)


def params(shape: str, contender: str, quick: bool, fragmented: bool) -> dict[str, Any]:
    # 0.2: the client's own pace (a few ms of CPU a call) stays well above 5 calls a vendor second
    size = {"items": 6_500, "time_scale": 0.1} if quick else {"items": 50_000, "time_scale": 0.2}
    return {"shape": shape, "contender": contender, "fragmented": fragmented} | size
