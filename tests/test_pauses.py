"""Vendor pauses are bounded: a Retry-After of ``inf`` or a billion seconds never hangs a
job, a negative or NaN one never lifts a pause (the endpoint's own pause applies), and an
answer whose reading fails on a 429 is a throttle, not a spent attempt."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio
import pytest

from tests.conftest import FakeVendor
from unenroll import Item, JobSettings, Outcome, RetryPolicy, run
from unenroll.cli.config import load_settings
from unenroll.contract.declarations import EndpointSpec
from unenroll.limits.window import Permit
from unenroll.model import CallResult, CallVerdict, ItemResult
from unenroll.wire.http import HttpRequest, HttpResponse

LOCK_PERIOD = 0.01  # FakeVendor's endpoint: the pause when the vendor names none


class RecordingLimiter:
    """Lets every call go at once and records the pauses it is asked for."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def acquire(self) -> Permit:
        await anyio.lowlevel.checkpoint()
        return Permit(anyio.current_time())

    def done(self, permit: Permit) -> None:
        permit.end = anyio.current_time()

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


def throttled_first(retry_afters: Sequence[float | None]) -> Callable[[tuple[str, ...], Sequence[str]], CallResult]:
    """A vendor that throttles the first calls with these Retry-After values, then answers."""
    pending = list(retry_afters)

    def decide(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
        if pending:
            return CallResult.whole(CallVerdict.THROTTLED, "429", "slow down", retry_after=pending.pop(0))
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))

    return decide


def items(n: int) -> list[Item]:
    return [Item("unenroll", ("c",), str(1000 + i)) for i in range(n)]


async def test_each_pause_is_the_vendors_word_bounded_by_max_pause_or_else_the_endpoints_own() -> None:
    words = [math.inf, math.nan, -5.0, 1e9, float("1e400"), 0.002, None]
    limiter = RecordingLimiter()
    vendor = FakeVendor(decide=throttled_first(words), max_items=10, max_in_flight=1)
    settings = JobSettings(max_pause=0.05, max_throttles=len(words) + 1, linger=0.0)
    report = await run(vendor, items(10), settings=settings, limiters={"bulk": limiter})
    assert report.counts == {"unenrolled": 10}
    assert limiter.pauses == [0.05, LOCK_PERIOD, LOCK_PERIOD, 0.05, 0.05, 0.002, LOCK_PERIOD]


async def test_an_endless_retry_after_does_not_hang_the_job_on_a_real_limiter() -> None:
    vendor = FakeVendor(decide=throttled_first([math.inf, 1e9]), max_items=10, max_in_flight=1, max_calls=100)
    settings = JobSettings(max_pause=0.02, linger=0.0)
    with anyio.fail_after(30):  # a hang fails the test instead of blocking the suite
        report = await run(vendor, items(10), settings=settings)
    assert report.counts == {"unenrolled": 10}
    assert report.throttled == 2


def test_the_endpoint_pause_rule() -> None:
    spec = EndpointSpec("e", lock_period=300.0)
    assert spec.pause_for(None, 3600.0) == 300.0
    assert spec.pause_for(math.nan, 3600.0) == 300.0
    assert spec.pause_for(-5.0, 3600.0) == 300.0
    assert spec.pause_for(math.inf, 3600.0) == 3600.0
    assert spec.pause_for(1e9, 3600.0) == 3600.0
    assert spec.pause_for(0.0, 3600.0) == 0.0
    assert spec.pause_for(17.0, 3600.0) == 17.0
    assert spec.pause_for(None, 60.0) == 60.0  # the endpoint's own pause is bounded too


def test_max_pause_is_one_hour_of_vendor_time_scaled_like_every_duration() -> None:
    assert JobSettings().max_pause == 3600.0
    scaled = JobSettings(max_pause=120.0, retry=RetryPolicy(base_delay=2.0)).scaled(0.01)
    assert scaled.max_pause == pytest.approx(1.2)
    assert scaled.retry.base_delay == pytest.approx(0.02)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            JobSettings(max_pause=bad)


def test_max_pause_is_a_job_setting_in_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("time_scale = 0.5\n[job]\nmax_pause = 600\n")
    settings = load_settings("fake", path, {}, vendors=["fake"], limit_keys={})
    assert settings.job.max_pause == 300.0
    default = load_settings("fake", None, {"UNENROLL_TIME_SCALE": "0.01"}, vendors=["fake"], limit_keys={})
    assert default.job.max_pause == pytest.approx(36.0)


class ThrowingReaderVendor(FakeVendor):
    """The first ``throttles`` calls are answered 429 with a Retry-After the reader chokes
    on (as an HTTP date with ``-0000`` once made it raise TypeError)."""

    throttles = 6

    async def _handle(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        answer = await super()._handle(request, headers)
        if len(self.calls) <= self.throttles:
            return HttpResponse(429, answer.body, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"})
        return answer

    def _read(self, target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
        result = super()._read(target, subjects, response)
        if response.status == 429:
            raise TypeError("can't subtract offset-naive and offset-aware datetimes")
        return result


async def test_a_429_the_reader_chokes_on_is_a_throttle_and_spends_no_attempt() -> None:
    limiter = RecordingLimiter()
    vendor = ThrowingReaderVendor(max_items=50, max_in_flight=1)
    settings = JobSettings(retry=RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.002), linger=0.0)
    report = await run(vendor, items(50), settings=settings, limiters={"bulk": limiter})
    assert report.counts == {"unenrolled": 50}
    assert report.throttled == 6
    assert limiter.pauses == [LOCK_PERIOD] * 6

