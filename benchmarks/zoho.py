"""Scenarios 1 and 2: Zoho batch unenroll, unenroll beside the scripts admins write today.

Every contender gets its own Zoho mock (rolling 30-call window, the 5 minute lock, jittered
latency) seeded with the same learners, and the same erecnos to remove. The scripts are
written here by hand, the way they are usually written:

- **naive burst**: chunks of 100 pushed through ``aiolimiter.AsyncLimiter(30, 60)`` with
  ``asyncio.gather``; a failed call is retried a few times;
- **careful script**: one call start every 2 s (30 a minute, no burst), whole-call retries
  with exponential backoff and jitter, as ``tenacity`` would do them;
- **one by one**: the remove-learner ``DELETE`` per learner with a sleep after each call,
  as admins script the UI workflow (capped, or it would run for days).

The scripts log a call's erecnos as done when the call answers code 200: they see the call,
not the items. ``accounted`` checks every contender's per-item log against the mock's
final state.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiolimiter import AsyncLimiter

from unenroll import EndpointSpec, Item, ItemOutcome, JobSettings, RetryPolicy, run
from unenroll.adapters.zoho.adapter import ZohoLimits, ZohoPeople
from unenroll.adapters.zoho.mock import ZohoMock, ZohoMockConfig, ZohoMockState
from unenroll.contract.mock import Faults, Latency

from .measure import ArrivalRecorder, Row, efficiency, peak_rss_mb, vendor_offsets, window_ceiling
from .mockproc import MockApp, MockProcess, wire

THRESHOLD, WINDOW, LOCK = 30, 60.0, 300.0  # the vendor's documented limits (the mock's defaults)
CHUNK = 100  # ids per call, for every contender
LATENCY = Latency(base=0.3, per_item=0.003, jitter=0.4)  # vendor seconds: 0.6-1.0 s for 100 ids
FAULTS = Faults(server_error=0.05, drop=0.01)  # scenario 2
SCRIPT_INTERVAL = 2.0  # vendor seconds between a script's call starts: 30 a minute
NAIVE_ATTEMPTS = 5
CAREFUL_ATTEMPTS = 6

Key = tuple[tuple[str, str], str]  # ((course, batch), erecno)
UNENROLLED, NOT_ENROLLED = "unenrolled", "not_enrolled"


@dataclass(frozen=True, slots=True)
class ZohoScenario:
    items: int = 60_000
    batches: int = 20
    time_scale: float = 0.04
    margin: float | None = None  # vendor seconds on top of the limiter's window; None: ZohoLimits' own
    faults: bool = False
    not_enrolled_share: float = 0.0
    one_by_one_cap: int = 120
    deadline: float = 4_000.0  # vendor seconds a script may run before it is stopped
    fragmented: bool = True  # answers gzip, chunked, in pieces (mockproc.FRAGMENTED)
    seed: int = 1

    @property
    def reference(self) -> EndpointSpec:
        """The vendor's limits, as the mock enforces them, on the run's clock."""
        return EndpointSpec("unenroll", max_calls=THRESHOLD, window=WINDOW).scaled(self.time_scale)


@dataclass
class ZohoWork:
    """The erecnos to remove in input order, and the truth to check the outcomes against."""

    work: list[Key]
    not_enrolled: set[Key]
    learner_ids: dict[Key, str]

    def accounted(self, reported: dict[Key, str], keys: Sequence[Key], stats: dict[str, Any]) -> int:
        """Items whose logged outcome is what the vendor did (the mock's final state in
        ``stats``): unenrolled by this run, or reported not enrolled when they were not."""
        done = {(tuple(target.split("/")), erecno)
                for target, erecnos in stats["state"]["unenrolled"].items() for erecno in erecnos}
        count = 0
        for key in keys:
            outcome = reported.get(key)
            if key in self.not_enrolled:
                count += outcome == NOT_ENROLLED
            else:
                count += outcome == UNENROLLED and key in done
        return count


def zoho_state(sc: ZohoScenario) -> tuple[ZohoMockState, ZohoWork]:
    """The mock's seeded state and the client's work: the same in both processes."""
    courses = max(1, sc.batches // 5)
    per_course = max(1, sc.batches // courses)
    learners = math.ceil(sc.items / (courses * per_course))
    state = ZohoMockState.generate(courses, per_course, learners, seed=sc.seed)
    work: list[Key] = [(target, e) for target, batch in state.batches.items() for e in batch][: sc.items]
    learner_ids = {(target, e): state.batches[target][e] for target, e in work}
    rng = random.Random(sc.seed)
    not_enrolled = set(rng.sample(work, round(len(work) * sc.not_enrolled_share)))
    for target, erecno in not_enrolled:  # left the batch before the run: absent from answers
        del state.batches[target][erecno]
    return state, ZohoWork(work, not_enrolled, learner_ids)


def mock_config(sc: ZohoScenario) -> ZohoMockConfig:
    return ZohoMockConfig(
        threshold=THRESHOLD, window=WINDOW, lock_period=LOCK, time_scale=sc.time_scale, latency=LATENCY,
        faults=FAULTS if sc.faults else Faults(), wire=wire(sc.fragmented), seed=sc.seed,
        token_lifetime=1e9,  # token expiry is not what these scenarios measure
    )


def _classify(request: web.Request) -> str | None:
    if request.method == "POST" and request.path.endswith("/unenroll"):
        return "unenroll"
    if request.method == "DELETE" and "/learners/" in request.path:
        return "remove_learner"
    return None


def _locked(response: web.StreamResponse) -> bool:
    """The mock's lock answer: code 7209 (status 400)."""
    body = response.body if isinstance(response, web.Response) else None
    return response.status == 400 and isinstance(body, bytes) and b'"7209"' in body


def zoho_mock(params: dict[str, Any]) -> MockApp:
    """The mock of the scenario ``ZohoScenario(**params)`` (run in its own process by :mod:`benchmarks.mockproc`)."""
    sc = ZohoScenario(**params)
    state, _ = zoho_state(sc)
    mock = ZohoMock(mock_config(sc), state)
    recorder = ArrivalRecorder(_classify, _locked)
    recorder.install(mock.app)
    return MockApp(mock.app, recorder)


def _chunks(work: Sequence[Key]) -> list[tuple[tuple[str, str], list[str]]]:
    """Chunks of up to 100 erecnos of one batch, in input order."""
    chunks: list[tuple[tuple[str, str], list[str]]] = []
    for target, erecno in work:
        if not chunks or chunks[-1][0] != target or len(chunks[-1][1]) >= CHUNK:
            chunks.append((target, []))
        chunks[-1][1].append(erecno)
    return chunks


async def _row(sc: ZohoScenario, mock: MockProcess, work: ZohoWork, contender: str, endpoint: str,
               keys: Sequence[Key], reported: dict[Key, str], started: float, elapsed: float, rss: float,
               retries: int, notes: list[str]) -> Row:
    stats = await mock.stats()
    recording = (await mock.record()).recording
    arrivals = recording.of(endpoint)
    counter = stats["endpoints"][endpoint]
    return Row(
        scenario="2" if sc.faults else "1",
        contender=contender,
        items=len(keys),
        accounted=work.accounted(reported, keys, stats),
        calls=len(arrivals),
        elapsed=elapsed,
        time_scale=sc.time_scale,
        efficiency=efficiency(sc.reference, arrivals, recording.served(endpoint)),
        throttles=counter["lock_events"],
        retries=retries,
        peak_rss_mb=rss,
        notes=notes,
        window=WINDOW,
        limit=THRESHOLD,
        arrivals=vendor_offsets(arrivals, sc.time_scale),
        extra={"refused_calls": counter["refused"], "max_in_rolling_window": counter["max_in_rolling_window"],
               "faults": stats["faults"], "mean_latency_s": round(recording.mean_latency(endpoint) / sc.time_scale, 4),
               # both processes read CLOCK_MONOTONIC: what the wall time holds outside the calls' span
               "first_call_after_s": round(arrivals[0] - started, 4) if arrivals else None,
               "after_last_call_s": round(started + elapsed - arrivals[-1], 4) if arrivals else None},
    )


# -- unenroll ----------------------------------------------------------------------------


def _log(reported: dict[Key, str], outcome: ItemOutcome) -> None:
    course, batch = outcome.item.target
    reported[((course, batch), outcome.item.subject)] = outcome.outcome.value


async def unenroll_contender(sc: ZohoScenario) -> Row:
    _, work = zoho_state(sc)
    config = mock_config(sc)
    reported: dict[Key, str] = {}
    limits = ZohoLimits() if sc.margin is None else ZohoLimits(margin=sc.margin)
    loop = asyncio.get_running_loop()
    async with MockProcess(zoho_mock, asdict(sc)) as mock, aiohttp.ClientSession() as session:
        adapter = ZohoPeople(
            session=session, base_url=mock.url, accounts_url=mock.url, refresh_token=config.refresh_token,
            client_id=config.client_id, client_secret=config.client_secret,
            limits=limits, time_scale=sc.time_scale, timeout=30.0,
        )
        items = [Item("unenroll", target, erecno) for target, erecno in work.work]
        settings = JobSettings(retry=RetryPolicy().scaled(sc.time_scale), seed=sc.seed)
        started = loop.time()
        report = await run(adapter, items, settings=settings, sinks=[lambda o: _log(reported, o)])
        elapsed = loop.time() - started
        rss = peak_rss_mb()  # before the truth is fetched and checked
        stats = report.endpoints["unenroll"]
        row = await _row(sc, mock, work, "unenroll", "unenroll", work.work, reported, started, elapsed, rss,
                         stats.retried_calls + stats.throttled, [])
    latency = row.extra["mean_latency_s"]
    row.ceiling = window_ceiling(WINDOW, latency, limits.margin)
    row.notes.append(
        f"ZohoLimits as shipped but for the time scale (margin {limits.margin:g} s); the limiter counts each window "
        f"from the answer of the call {THRESHOLD} before, so a window costs one call's latency (here {latency:.2f} s "
        "on average) + the margin: ceiling = window / (window + latency + margin)")
    row.extra |= {"counts": report.counts, "engine_calls": report.calls, "engine_throttled": report.throttled}
    return row


# -- the scripts -------------------------------------------------------------------------


async def _token(session: aiohttp.ClientSession, url: str, config: ZohoMockConfig) -> dict[str, str]:
    form = {"refresh_token": config.refresh_token, "client_id": config.client_id,
            "client_secret": config.client_secret, "grant_type": "refresh_token"}
    async with session.post(url + "/oauth/v2/token", data=form) as response:
        token = (await response.json())["access_token"]
    return {"Authorization": f"Zoho-oauthtoken {token}"}


async def _post_unenroll(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                         target: tuple[str, str], erecnos: list[str]) -> bool:
    """One unenroll call the way a script makes it: ``True`` if it answered code 200."""
    course, batch = target
    try:
        async with session.post(f"{url}/api/v1/courses/{course}/batches/{batch}/unenroll",
                                params={"erecnosList": "[" + ",".join(erecnos) + "]"}, headers=headers) as response:
            body = await response.json(content_type=None)
            return response.status == 200 and isinstance(body, dict) and str(body.get("code")) == "200"
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False


def _mark(reported: dict[Key, str], target: tuple[str, str], erecnos: list[str], outcome: str) -> None:
    for erecno in erecnos:
        reported[(target, erecno)] = outcome


def _stopped_note(sc: ZohoScenario, reported: dict[Key, str], keys: Sequence[Key]) -> str:
    left = sum(1 for key in keys if key not in reported)
    return f"stopped at its deadline ({sc.deadline:,.0f} vendor s) with {left:,} items not tried to the end"


async def naive_burst(sc: ZohoScenario) -> Row:
    _, work = zoho_state(sc)
    reported: dict[Key, str] = {}
    retries = 0
    stopped = False
    loop = asyncio.get_running_loop()
    async with MockProcess(zoho_mock, asdict(sc)) as mock, aiohttp.ClientSession() as session:
        limiter = AsyncLimiter(THRESHOLD, WINDOW * sc.time_scale)
        started = loop.time()
        headers = await _token(session, mock.url, mock_config(sc))
        deadline = started + sc.deadline * sc.time_scale

        async def push(target: tuple[str, str], erecnos: list[str]) -> None:
            nonlocal retries
            for attempt in range(1, NAIVE_ATTEMPTS + 1):
                if attempt > 1:
                    retries += 1
                async with limiter:
                    ok = await _post_unenroll(session, mock.url, headers, target, erecnos)
                if ok:
                    _mark(reported, target, erecnos, UNENROLLED)
                    return
                await asyncio.sleep(2 ** (attempt - 1) * sc.time_scale)
            _mark(reported, target, erecnos, "gave_up")

        try:
            async with asyncio.timeout_at(deadline):  # the calls waiting in the limiter are abandoned
                await asyncio.gather(*(push(target, erecnos) for target, erecnos in _chunks(work.work)))
        except TimeoutError:
            stopped = True
        elapsed = loop.time() - started
        rss = peak_rss_mb()  # before the truth is fetched and checked
        notes = [f"AsyncLimiter({THRESHOLD}, {WINDOW:g} s) with gather; a failed call is retried up to "
                 f"{NAIVE_ATTEMPTS - 1} times, 1-2-4-8 s apart; logs a call's erecnos as done on code 200"]
        if stopped:
            notes.append(_stopped_note(sc, reported, work.work))
        return await _row(sc, mock, work, "naive burst", "unenroll", work.work, reported, started, elapsed, rss,
                          retries, notes)


class IntervalLimiter:
    """One call start per ``interval`` seconds, no burst: the careful script's limiter."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = -math.inf

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if (delay := self._next - loop.time()) > 0:
            await asyncio.sleep(delay)
        self._next = loop.time() + self._interval


def careful_backoff(attempt: int, rng: random.Random) -> float:
    """tenacity's ``wait_exponential(multiplier=1, min=1, max=30) + wait_random(0, 1)``."""
    return min(30.0, max(1.0, 2.0 ** (attempt - 1))) + rng.random()


async def careful_script(sc: ZohoScenario) -> Row:
    _, work = zoho_state(sc)
    reported: dict[Key, str] = {}
    rng = random.Random(sc.seed)
    retries = 0
    stopped = False
    loop = asyncio.get_running_loop()
    async with MockProcess(zoho_mock, asdict(sc)) as mock, aiohttp.ClientSession() as session:
        limiter = IntervalLimiter(SCRIPT_INTERVAL * sc.time_scale)
        started = loop.time()
        headers = await _token(session, mock.url, mock_config(sc))
        deadline = started + sc.deadline * sc.time_scale
        for target, erecnos in _chunks(work.work):
            if loop.time() > deadline:
                stopped = True
                break
            for attempt in range(1, CAREFUL_ATTEMPTS + 1):
                if attempt > 1:
                    retries += 1
                await limiter.wait()
                if await _post_unenroll(session, mock.url, headers, target, erecnos):
                    _mark(reported, target, erecnos, UNENROLLED)
                    break
                if attempt < CAREFUL_ATTEMPTS:
                    await asyncio.sleep(careful_backoff(attempt, rng) * sc.time_scale)
            else:
                _mark(reported, target, erecnos, "gave_up")
        elapsed = loop.time() - started
        rss = peak_rss_mb()  # before the truth is fetched and checked
        notes = [f"one call start every {SCRIPT_INTERVAL:g} s; whole-call retries ({CAREFUL_ATTEMPTS} attempts, "
                 "exponential 1-30 s + up to 1 s jitter); logs a call's erecnos as done on code 200"]
        if stopped:
            notes.append(_stopped_note(sc, reported, work.work))
        row = await _row(sc, mock, work, "careful script", "unenroll", work.work, reported, started, elapsed, rss,
                         retries, notes)
    if row.calls > THRESHOLD:  # its own pace: 2 s a call where the limits allow 30 at once
        row.ceiling = sc.reference.least_seconds_for(row.calls) / ((row.calls - 1) * SCRIPT_INTERVAL * sc.time_scale)
    return row


async def one_by_one(sc: ZohoScenario) -> Row:
    _, work = zoho_state(sc)
    keys = work.work[: sc.one_by_one_cap]
    reported: dict[Key, str] = {}
    loop = asyncio.get_running_loop()
    async with MockProcess(zoho_mock, asdict(sc)) as mock, aiohttp.ClientSession() as session:
        started = loop.time()
        headers = await _token(session, mock.url, mock_config(sc))
        for key in keys:
            (course, batch), _ = key
            url = f"{mock.url}/api/v1/courses/{course}/batches/{batch}/learners/{work.learner_ids[key]}"
            try:
                async with session.delete(url, headers=headers) as response:
                    await response.read()
                    reported[key] = UNENROLLED if response.status == 200 else f"http_{response.status}"
            except (aiohttp.ClientError, TimeoutError):
                reported[key] = "error"
            await asyncio.sleep(SCRIPT_INTERVAL * sc.time_scale)
        elapsed = loop.time() - started
        rss = peak_rss_mb()  # before the truth is fetched and checked
        per_item = elapsed / sc.time_scale / max(1, len(keys))
        notes = [f"capped at {len(keys):,} of {len(work.work):,} items so it finishes; DELETE per learnerId with a "
                 f"{SCRIPT_INTERVAL:g} s sleep after each call; all {len(work.work):,} would take about "
                 f"{per_item * len(work.work) / 3600:.0f} h at this pace"]
        row = await _row(sc, mock, work, "one by one", "remove_learner", keys, reported, started, elapsed, rss, 0,
                         notes)
    row.extra["full_items"] = len(work.work)
    return row
