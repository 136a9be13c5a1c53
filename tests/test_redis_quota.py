"""RedisQuotaStore against a real redis-server (tests/redis_server.py): the window invariant
across interleaved participants on the Redis clock, crashed calls freed at their timeout,
shared pauses, skewed caller clocks ignored, waiters served in turn."""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis

from tests.redis_server import redis_url_fixture  # noqa: F401 (registers the redis_url fixture)
from unenroll.limits.quota import QuotaKey, SharedWindowLimiter, WindowRule
from unenroll.limits.redis_quota import RedisQuotaStore

CALL_TIMEOUT = 5.0
RedisClock = Callable[[], Awaitable[float]]


def fresh_key() -> QuotaKey:
    return QuotaKey("zoho", f"https://tenant-{uuid.uuid4().hex[:8]}.example", "people")


@pytest.fixture
async def redis_time(redis_url: str) -> AsyncIterator[RedisClock]:
    """The Redis server's clock, read by the test (not by the store)."""
    client = aioredis.Redis.from_url(redis_url)

    async def now() -> float:
        seconds, micros = await client.time()
        return float(seconds) + micros / 1e6

    yield now
    await client.aclose()


@dataclass
class Call:
    participant: str
    start: float  # the store's start (Redis clock)
    before_done: float  # Redis clock just before done was called: the recorded end is not earlier


@dataclass
class Participant:
    """One process's worth of calls: its own client, ``tasks`` concurrent callers, ``calls`` grants."""

    name: str
    store: RedisQuotaStore
    calls: int
    tasks: int = 2
    hold: Callable[[], float] = lambda: 0.0
    log: list[Call] = field(default_factory=list)

    async def run(self, key: QuotaKey, rules: Sequence[WindowRule], clock: RedisClock) -> None:
        remaining = [self.calls]

        async def caller() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1  # this caller wants one more call, and asks until it has it
                for _attempt in range(10_000):  # bounded: the test fails rather than hangs
                    grant = await self.store.try_acquire(key, rules, participant=self.name, call_timeout=CALL_TIMEOUT)
                    if grant.call_id is not None:
                        break
                    await asyncio.sleep(grant.wait)
                else:
                    raise AssertionError(f"{self.name} never got its call")
                await asyncio.sleep(self.hold())
                before_done = await clock()
                await self.store.done(key, grant.call_id)
                self.log.append(Call(self.name, grant.start, before_done))

        async with asyncio.TaskGroup() as group:
            for _ in range(self.tasks):
                group.create_task(caller())


def assert_window_invariant(calls: Sequence[Call], rules: Sequence[WindowRule]) -> None:
    """start[k + N] >= end[k] + W for every rule, so no window of W holds more than N starts."""
    ordered = sorted(calls, key=lambda call: call.start)
    for rule in rules:
        for k in range(len(ordered) - rule.calls):
            later, earlier = ordered[k + rule.calls], ordered[k]
            assert later.start >= earlier.before_done + rule.window, (rule, k, earlier, later)
            assert later.start - earlier.start >= rule.window  # the rolling-window count, spelled out


async def test_interleaved_participants_keep_every_window_on_the_redis_clock(
    redis_url: str, redis_time: RedisClock
) -> None:
    rules = (WindowRule(calls=5, window=0.4), WindowRule(calls=8, window=1.0))
    key = fresh_key()
    jitter = random.Random(13)
    participants = [
        Participant(f"host-{i}", RedisQuotaStore(redis_url), calls=5, hold=lambda: jitter.uniform(0.0, 0.03))
        for i in range(4)
    ]
    try:
        async with asyncio.TaskGroup() as group:
            for participant in participants:
                group.create_task(participant.run(key, rules, redis_time))
    finally:
        for participant in participants:
            await participant.store.close()
    calls = [call for participant in participants for call in participant.log]
    assert len(calls) == 20
    assert_window_invariant(calls, rules)


async def test_a_crashed_call_frees_its_slot_at_start_plus_call_timeout(redis_url: str, redis_time: RedisClock) -> None:
    rules = (WindowRule(calls=1, window=0.3),)
    key = fresh_key()
    crashed, survivor = RedisQuotaStore(redis_url), RedisQuotaStore(redis_url)
    try:
        lost = await crashed.try_acquire(key, rules, participant="killed", call_timeout=0.6)
        assert lost.call_id is not None  # and its done never comes
        refused = await survivor.try_acquire(key, rules, participant="survivor", call_timeout=0.6)
        assert refused.call_id is None and refused.wait > 0
        release = lost.start + 0.6 + 0.3
        for _ in range(1000):  # until the Redis clock is past the crashed call's latest end plus the window
            if await redis_time() > release:
                break
            await asyncio.sleep(0.02)
        grant = await survivor.try_acquire(key, rules, participant="survivor", call_timeout=0.6)
        assert grant.call_id is not None
        assert grant.start >= release
    finally:
        await crashed.close()
        await survivor.close()


async def test_a_call_in_flight_keeps_its_place_whatever_ends_after_it(redis_url: str) -> None:
    """The N-th call after a call in flight waits for its end plus the window, even once the
    calls between have ended and left every window (as in the memory and SQLite stores)."""
    rules = (WindowRule(calls=2, window=0.1),)
    key = fresh_key()
    store = RedisQuotaStore(redis_url)
    try:
        silent = await store.try_acquire(key, rules, participant="killed", call_timeout=CALL_TIMEOUT)
        assert silent.call_id is not None  # and its end is never reported
        quick = await store.try_acquire(key, rules, participant="alive", call_timeout=CALL_TIMEOUT)
        assert quick.call_id is not None
        await store.done(key, quick.call_id)
        await asyncio.sleep(0.4)  # the quick call left every window
        refused = await store.try_acquire(key, rules, participant="alive", call_timeout=CALL_TIMEOUT)
        assert refused.call_id is None
    finally:
        await store.close()


async def test_a_pause_from_one_participant_holds_the_others(redis_url: str, redis_time: RedisClock) -> None:
    rules = (WindowRule(calls=100, window=1.0),)
    key = fresh_key()
    locked, other = RedisQuotaStore(redis_url), RedisQuotaStore(redis_url)
    try:
        paused_at = await redis_time()
        await locked.pause(key, 0.4)
        refused = await other.try_acquire(key, rules, participant="other", call_timeout=CALL_TIMEOUT)
        assert refused.call_id is None and refused.wait > 0
        await locked.pause(key, 0.1)  # a shorter pause never lifts the longer one
        for _ in range(1000):
            grant = await other.try_acquire(key, rules, participant="other", call_timeout=CALL_TIMEOUT)
            if grant.call_id is not None:
                break
            await asyncio.sleep(grant.wait)
        assert grant.call_id is not None
        assert grant.start >= paused_at + 0.4
    finally:
        await locked.close()
        await other.close()


SKEW = contextvars.ContextVar("SKEW", default=0.0)


async def test_a_participant_with_a_skewed_clock_changes_nothing(
    redis_url: str, redis_time: RedisClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + SKEW.get())  # skewed only inside one participant

    rules = (WindowRule(calls=5, window=0.4),)
    key = fresh_key()
    skewed = Participant("skewed-host", RedisQuotaStore(redis_url), calls=6, hold=lambda: 0.01)
    honest = Participant("honest-host", RedisQuotaStore(redis_url), calls=6, hold=lambda: 0.01)

    async def run_skewed() -> None:
        SKEW.set(3600.0)
        assert time.time() > real_time() + 3000  # the skew is in force for this participant
        await skewed.run(key, rules, redis_time)

    before = await redis_time()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(run_skewed())
            group.create_task(honest.run(key, rules, redis_time))
    finally:
        await skewed.store.close()
        await honest.store.close()
    after = await redis_time()
    calls = skewed.log + honest.log
    assert len(calls) == 12
    assert all(before <= call.start <= after for call in calls)  # every start on the Redis clock
    assert_window_invariant(calls, rules)


async def test_contending_participants_are_served_in_turn(redis_url: str) -> None:
    """A greedy participant polling every few ms against two slow ones that come back late:
    the oldest waiter's ticket holds a free slot for it, so every participant gets its share."""
    rules = (WindowRule(calls=5, window=0.3),)
    key = fresh_key()
    grants: dict[str, int] = {"greedy": 0, "slow-1": 0, "slow-2": 0}
    total = 30
    stores = {name: RedisQuotaStore(redis_url) for name in grants}

    async def contend(name: str, delay: Callable[[float], float]) -> None:
        for _attempt in range(100_000):
            if sum(grants.values()) >= total:
                return
            store = stores[name]
            grant = await store.try_acquire(key, rules, participant=name, call_timeout=CALL_TIMEOUT)
            if grant.call_id is None:
                await asyncio.sleep(delay(grant.wait))
                continue
            grants[name] += 1
            await store.done(key, grant.call_id)
        raise AssertionError(f"{name} never finished")

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(3):
                group.create_task(contend("greedy", lambda _wait: 0.002))
            group.create_task(contend("slow-1", lambda wait: wait + 0.03))
            group.create_task(contend("slow-2", lambda wait: wait + 0.03))
    finally:
        for store in stores.values():
            await store.close()
    assert sum(grants.values()) >= total
    assert all(count >= total // 6 for count in grants.values()), grants


async def test_a_withdrawn_waiter_holds_no_one_behind_it(redis_url: str) -> None:
    rules = (WindowRule(calls=1, window=0.2),)
    key = fresh_key()
    store = RedisQuotaStore(redis_url)
    try:
        busy = await store.try_acquire(key, rules, participant="busy", call_timeout=CALL_TIMEOUT)
        assert busy.call_id is not None
        await store.done(key, busy.call_id)
        assert (await store.try_acquire(key, rules, participant="gone", call_timeout=CALL_TIMEOUT)).call_id is None
        assert (await store.try_acquire(key, rules, participant="next", call_timeout=CALL_TIMEOUT)).call_id is None
        await asyncio.sleep(0.3)  # the slot is free, and the first in line still holds it
        assert (await store.try_acquire(key, rules, participant="next", call_timeout=CALL_TIMEOUT)).call_id is None
        await store.withdraw(key, "gone")
        assert (await store.try_acquire(key, rules, participant="next", call_timeout=CALL_TIMEOUT)).call_id
    finally:
        await store.close()


async def test_a_peek_says_when_a_start_would_be_allowed_and_takes_nothing(redis_url: str) -> None:
    rules = (WindowRule(calls=2, window=30.0),)
    key = fresh_key()
    store = RedisQuotaStore(redis_url)
    try:
        assert await store.peek(key, rules) == 0.0
        for _ in range(2):
            grant = await store.try_acquire(key, rules, participant="a", call_timeout=CALL_TIMEOUT)
            assert grant.call_id is not None
            await store.done(key, grant.call_id)
        assert 29.0 < await store.peek(key, rules) <= 30.01  # the first call leaves the window in 30 s
        assert (await store.usage(key, rules, participant="a")).windows == ((2, 0),)  # the peeks recorded nothing
        assert (await store.try_acquire(key, rules, participant="b", call_timeout=CALL_TIMEOUT)).call_id is None
    finally:
        await store.close()


async def test_usage_counts_mine_and_the_others_calls_and_the_shared_pause(redis_url: str) -> None:
    rules = (WindowRule(calls=30, window=60.0), WindowRule(calls=1000, window=86400.0))
    key = fresh_key()
    mine, theirs = RedisQuotaStore(redis_url), RedisQuotaStore(redis_url)
    try:
        for store, participant, count in ((mine, "me", 2), (theirs, "them", 3)):
            for _ in range(count):
                grant = await store.try_acquire(key, rules, participant=participant, call_timeout=CALL_TIMEOUT)
                assert grant.call_id is not None
                await store.done(key, grant.call_id)
        await theirs.pause(key, 30.0)
        usage = await mine.usage(key, rules, participant="me")
    finally:
        await mine.close()
        await theirs.close()
    assert usage.windows == ((2, 3), (2, 3))
    assert 0 < usage.paused_for <= 30.0
    assert "3 of 30 calls per minute are used by another run" in (usage.describe(rules) or "")


async def test_two_shared_window_limiters_over_redis_keep_the_window_between_them(
    redis_url: str, redis_time: RedisClock
) -> None:
    """The engine's limiter (SharedWindowLimiter) in two "processes", each with its own Redis client."""
    rules = (WindowRule(calls=4, window=0.3),)
    key = fresh_key()
    stores = [RedisQuotaStore(redis_url), RedisQuotaStore(redis_url)]
    log: list[Call] = []

    async def job(limiter: SharedWindowLimiter, calls: int) -> None:
        async with limiter:

            async def worker() -> None:
                for _ in range(calls // 2):
                    permit = await limiter.acquire()
                    await asyncio.sleep(0.01)
                    log.append(Call(limiter.participant, permit.start, await redis_time()))
                    limiter.done(permit)

            async with asyncio.TaskGroup() as group:
                group.create_task(worker())
                group.create_task(worker())

    try:
        async with asyncio.TaskGroup() as group:
            for store in stores:
                group.create_task(job(SharedWindowLimiter(store, key, rules, call_timeout=CALL_TIMEOUT), calls=8))
    finally:
        for store in stores:
            await store.close()
    assert len(log) == 16 and len({call.participant for call in log}) == 2
    assert_window_invariant(log, rules)


async def test_the_url_password_never_shows() -> None:
    store = RedisQuotaStore("redis://:s3cret-pw@127.0.0.1:6399/2")
    try:
        assert "s3cret-pw" not in repr(store)
        assert "127.0.0.1:6399/2" in repr(store)
    finally:
        await store.close()
    with pytest.raises(ValueError, match="redis://HOST:PORT/DB") as error:
        RedisQuotaStore("http://user:s3cret-pw@example.com/")
    assert "s3cret-pw" not in str(error.value)
