"""The shared quota (unenroll.limits.quota): the invariant across interleaved participants,
the crash rule, shared pauses and fairness, on the memory and the SQLite store."""

from __future__ import annotations

import heapq
import itertools
import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unenroll.limits.memory_quota import MemoryQuotaStore
from unenroll.limits.quota import QuotaKey, SharedWindowLimiter, Usage, WindowRule
from unenroll.limits.sqlite_quota import SqliteQuotaStore, default_quota_path

KEY = QuotaKey("zoho", "https://people.zoho.com", "unenroll")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


Store = MemoryQuotaStore | SqliteQuotaStore


@contextmanager
def store_on(kind: str, clock: Callable[[], float]) -> Iterator[Store]:
    if kind == "memory":
        yield MemoryQuotaStore(clock)
        return
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteQuotaStore(Path(folder) / "quota.db", clock)
        try:
            yield store
        finally:
            store.close_now()


STORES = ["memory", "sqlite"]

actions = st.lists(st.one_of(
    st.tuples(st.just("tick"), st.floats(0.0, 4.0)),
    st.tuples(st.just("ask"), st.integers(0, 2)),
    st.tuples(st.just("end"), st.integers(0, 2)),
    st.tuples(st.just("crash"), st.integers(0, 2)),
    st.tuples(st.just("pause"), st.integers(0, 2)),
), max_size=120)


@pytest.mark.parametrize("kind", STORES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions, calls=st.integers(1, 4), window=st.floats(0.5, 10.0), margin=st.sampled_from([0.0, 0.3]),
       min_interval=st.sampled_from([0.0, 0.2]), call_timeout=st.floats(0.5, 8.0))
def test_no_window_holds_more_than_its_calls_whoever_sent_them(
        kind: str, steps: list[tuple[str, float]], calls: int, window: float, margin: float, min_interval: float,
        call_timeout: float) -> None:
    rules = [WindowRule(calls, window, margin, min_interval), WindowRule(calls + 2, 3 * window)]
    clock = FakeClock()
    starts: list[float] = []
    ends: list[float] = []  # effective: reported (cut to the deadline) or, never reported, the deadline
    in_flight: dict[int, list[int]] = {0: [], 1: [], 2: []}
    crashed: set[int] = set()
    pauses: list[tuple[float, float]] = []
    store_ids: dict[int, str] = {}
    with store_on(kind, clock) as store:
        for action, value in steps:
            p = int(value)
            if action == "tick":
                clock.now += value
            elif p in crashed:
                continue
            elif action == "ask":
                grant = store.acquire_step(KEY, rules, participant=f"p{p}", call_timeout=call_timeout)
                if grant.call_id is not None:
                    assert grant.start == clock.now
                    starts.append(clock.now)
                    ends.append(clock.now + call_timeout)
                    in_flight[p].append(len(starts) - 1)
                    store_ids[len(starts) - 1] = grant.call_id
                else:
                    assert grant.wait > 0
            elif action == "end" and in_flight[p]:
                i = in_flight[p].pop(0)
                store.done_step(KEY, store_ids[i])
                ends[i] = min(max(clock.now, starts[i]), starts[i] + call_timeout)
            elif action == "crash":
                crashed.add(p)  # its calls in flight are never reported
            elif action == "pause":
                store.pause_step(KEY, 5.0)
                pauses.append((clock.now, clock.now + 5.0))
    order = sorted(range(len(starts)), key=lambda i: starts[i])
    for rule in rules:
        for a, b in zip(order, order[rule.calls:], strict=False):
            assert starts[b] > ends[a] + rule.window + rule.margin
    for a, b in itertools.pairwise(order):
        assert starts[b] - starts[a] >= min_interval
    for since, until in pauses:
        assert not any(since < s < until for s in starts)  # a start at the same instant came first


@pytest.mark.parametrize("kind", STORES)
def test_a_crashed_participants_call_frees_its_slot_at_start_plus_call_timeout(kind: str) -> None:
    clock = FakeClock()
    rules = [WindowRule(1, 10.0)]
    with store_on(kind, clock) as store:
        started = clock.now
        assert store.acquire_step(KEY, rules, participant="killed", call_timeout=5.0).call_id is not None
        # the killed process never says its call ended
        clock.now = started + 14.9
        refused = store.acquire_step(KEY, rules, participant="alive", call_timeout=5.0)
        assert refused.call_id is None and math.isclose(refused.wait, 0.1, abs_tol=1e-6)
        clock.now = started + 15.0 + 1e-6
        assert store.acquire_step(KEY, rules, participant="alive", call_timeout=5.0).call_id is not None


@pytest.mark.parametrize("kind", STORES)
def test_a_call_in_flight_keeps_its_place_whatever_ends_after_it(kind: str) -> None:
    """A call in flight (its process may be dead) is the N-th latest for the N-th call after
    it, even once the calls between have ended and left every window: that call waits for
    its end (here its deadline) plus the window, as the invariant says, in every store."""
    clock = FakeClock()
    rules = [WindowRule(2, 0.5)]
    with store_on(kind, clock) as store:
        silent = store.acquire_step(KEY, rules, participant="killed", call_timeout=8.0)
        assert silent.call_id is not None  # and its end is never reported
        clock.now += 0.1
        quick = store.acquire_step(KEY, rules, participant="alive", call_timeout=8.0)
        assert quick.call_id is not None
        clock.now += 0.1
        store.done_step(KEY, quick.call_id)
        clock.now += 1.0  # the quick call left every window long ago
        assert store.acquire_step(KEY, rules, participant="alive", call_timeout=8.0).call_id is None
        clock.now = silent.start + 8.0 + 0.5 + 1e-6
        assert store.acquire_step(KEY, rules, participant="alive", call_timeout=8.0).call_id is not None


@pytest.mark.parametrize("kind", STORES)
def test_a_reported_end_counts_from_the_moment_it_came(kind: str) -> None:
    clock = FakeClock()
    rules = [WindowRule(1, 10.0)]
    with store_on(kind, clock) as store:
        grant = store.acquire_step(KEY, rules, participant="a", call_timeout=60.0)
        assert grant.call_id is not None
        clock.now += 1.0
        store.done_step(KEY, grant.call_id)
        clock.now += 10.0 + 1e-6
        assert store.acquire_step(KEY, rules, participant="b", call_timeout=60.0).call_id is not None


@pytest.mark.parametrize("kind", STORES)
def test_a_pause_by_one_participant_pauses_the_others(kind: str) -> None:
    clock = FakeClock()
    rules = [WindowRule(30, 60.0)]
    with store_on(kind, clock) as store:
        store.pause_step(KEY, 300.0)
        refused = store.acquire_step(KEY, rules, participant="other", call_timeout=5.0)
        assert refused.call_id is None and math.isclose(refused.wait, 300.0)
        store.pause_step(KEY, 1.0)  # a shorter pause never lifts a longer one
        clock.now += 299.0
        assert store.acquire_step(KEY, rules, participant="other", call_timeout=5.0).call_id is None
        clock.now += 1.0 + 1e-6
        assert store.acquire_step(KEY, rules, participant="other", call_timeout=5.0).call_id is not None


@pytest.mark.parametrize("kind", STORES)
def test_three_contending_participants_each_get_their_share(kind: str) -> None:
    """A fast participant that asks again the moment its call ends cannot starve two slower
    ones: waiters are served by the time they first asked."""
    clock = FakeClock()
    rules = [WindowRule(2, 1.0)]
    latency = 0.05
    grants = {0: 0, 1: 0, 2: 0}
    wakeups = [(clock.now, p) for p in range(3)]
    with store_on(kind, clock) as store:
        pending_end: list[tuple[float, str]] = []
        while sum(grants.values()) < 90:
            at, p = heapq.heappop(wakeups)
            while pending_end and pending_end[0][0] <= at:
                clock.now, call_id = heapq.heappop(pending_end)
                store.done_step(KEY, call_id)
            clock.now = at
            grant = store.acquire_step(KEY, rules, participant=f"p{p}", call_timeout=5.0)
            if grant.call_id is not None:
                grants[p] += 1
                heapq.heappush(pending_end, (at + latency, grant.call_id))
                heapq.heappush(wakeups, (at + latency, p))  # asks again as soon as its answer is in
            else:
                heapq.heappush(wakeups, (at + grant.wait + 0.01 * p, p))  # the slower ones wake a little late
    assert min(grants.values()) >= 20, grants


@pytest.mark.parametrize("kind", STORES)
def test_a_withdrawn_waiter_holds_no_one_behind_it(kind: str) -> None:
    """The first waiter in line is served first while its ticket lives; once it withdraws
    (its acquire was cancelled), the next waiter gets the free slot at once."""
    clock = FakeClock()
    rules = [WindowRule(1, 1.0)]
    with store_on(kind, clock) as store:
        busy = store.acquire_step(KEY, rules, participant="busy", call_timeout=5.0)
        assert busy.call_id is not None
        store.done_step(KEY, busy.call_id)
        assert store.acquire_step(KEY, rules, participant="gone", call_timeout=5.0).call_id is None
        clock.now += 0.5
        assert store.acquire_step(KEY, rules, participant="next", call_timeout=5.0).call_id is None
        clock.now += 0.6  # the slot is free, and the first in line still holds it
        assert store.acquire_step(KEY, rules, participant="next", call_timeout=5.0).call_id is None
        store.withdraw_step(KEY, "gone")
        assert store.acquire_step(KEY, rules, participant="next", call_timeout=5.0).call_id is not None


@pytest.mark.parametrize("kind", STORES)
def test_a_peek_says_when_a_start_would_be_allowed_and_takes_nothing(kind: str) -> None:
    clock = FakeClock()
    rules = [WindowRule(2, 30.0)]
    with store_on(kind, clock) as store:
        assert store.peek_step(KEY, rules) == 0.0
        for _ in range(2):
            grant = store.acquire_step(KEY, rules, participant="a", call_timeout=5.0)
            assert grant.call_id is not None
            store.done_step(KEY, grant.call_id)
        clock.now += 10.0
        assert store.peek_step(KEY, rules) == pytest.approx(20.0)
        assert store.usage_step(KEY, rules, participant="a").windows == ((2, 0),)  # the peeks recorded nothing
        clock.now += 20.0 + 1e-6
        assert store.peek_step(KEY, rules) == 0.0
        assert store.acquire_step(KEY, rules, participant="b", call_timeout=5.0).call_id is not None


async def test_a_cancelled_acquire_gives_its_place_in_line_back() -> None:
    store = MemoryQuotaStore(anyio.current_time)
    rules = [WindowRule(1, 0.2)]
    busy = store.acquire_step(KEY, rules, participant="busy", call_timeout=5.0)
    assert busy.call_id is not None
    store.done_step(KEY, busy.call_id)
    async with SharedWindowLimiter(store, KEY, rules, 5.0, participant="gone") as gone:
        with anyio.move_on_after(0.05) as waited:
            await gone.acquire()
        assert waited.cancelled_caught  # it was still waiting when cancelled
    await anyio.sleep(0.2)  # the slot is free; the cancelled waiter's ticket would live 2 s more
    assert store.acquire_step(KEY, rules, participant="next", call_timeout=5.0).call_id is not None


def test_usage_counts_mine_and_the_others_calls_in_each_window() -> None:
    clock = FakeClock()
    rules = [WindowRule(30, 60.0), WindowRule(1000, 86400.0)]
    store = MemoryQuotaStore(clock)
    for participant in ("earlier run", "earlier run", "me"):
        assert store.acquire_step(KEY, rules, participant=participant, call_timeout=5.0).call_id is not None
        clock.now += 0.1
    clock.now += 59.75  # the first call left the minute
    usage = store.usage_step(KEY, rules, participant="me")
    assert usage == Usage(((1, 1), (1, 2)), 0.0)
    assert usage.describe(rules) == ("1 of 30 calls per minute are used by another run; 2 of 1,000 calls per day "
                                     "are used by another run")


def test_the_default_file_lives_in_the_users_state_folder(tmp_path: Path) -> None:
    assert default_quota_path({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "unenroll" / "quota.db"
    assert default_quota_path({"HOME": "/nowhere"}).parts[-4:] == (".local", "state", "unenroll", "quota.db")


def test_the_sqlite_store_keeps_its_record_across_connections(tmp_path: Path) -> None:
    """A second process (here a second connection) sees the first one's calls and pauses."""
    clock = FakeClock()
    rules = [WindowRule(1, 60.0)]
    first = SqliteQuotaStore(tmp_path / "q.db", clock)
    assert first.acquire_step(KEY, rules, participant="a", call_timeout=5.0).call_id is not None
    first.close_now()  # as if killed: the call was never reported
    second = SqliteQuotaStore(tmp_path / "q.db", clock)
    assert second.acquire_step(KEY, rules, participant="b", call_timeout=5.0).call_id is None
    second.close_now()


async def test_shared_limiters_share_one_window_and_one_pause() -> None:
    store = MemoryQuotaStore(anyio.current_time)
    rules = [WindowRule(2, 0.2)]
    starts: list[float] = []
    async with SharedWindowLimiter(store, KEY, rules, 5.0) as a, SharedWindowLimiter(store, KEY, rules, 5.0) as b:

        async def calls(limiter: SharedWindowLimiter) -> None:
            for _ in range(4):
                permit = await limiter.acquire()
                starts.append(permit.start)
                await anyio.sleep(0.01)
                limiter.done(permit)

        async with anyio.create_task_group() as tg:
            tg.start_soon(calls, a)
            tg.start_soon(calls, b)
        a.pause(30.0)
        await a.flush()
        usage = await b.usage()
        assert usage.paused_for > 29  # a's pause holds b too
    starts.sort()
    assert len(starts) == 8
    assert all(later - earlier > 0.2 for earlier, later in zip(starts, starts[2:], strict=False))


def test_quota_choices_and_a_mistake_said_plainly(tmp_path: Path) -> None:
    from unenroll.cli.config import quota_choice
    from unenroll.contract.settings import ConfigError

    env = {"XDG_STATE_HOME": str(tmp_path)}
    assert quota_choice(None, env) == ("sqlite", str(tmp_path / "unenroll" / "quota.db"))
    assert quota_choice("memory", env) == ("memory", None)
    assert quota_choice("redis://10.0.0.5:6379/0", env) == ("redis", "redis://10.0.0.5:6379/0")
    assert quota_choice(str(tmp_path / "q.db"), env) == ("sqlite", str(tmp_path / "q.db"))
    with pytest.raises(ConfigError, match="is a folder"):
        quota_choice(str(tmp_path), env)
    with pytest.raises(ConfigError, match="not a quota store"):
        quota_choice("postgres://db/quota", env)


def test_windowed_endpoints_share_the_quota_by_group_and_the_adapters_own_limiters_stay() -> None:
    from unenroll.cli.quota import shared_endpoints, tenant_of
    from unenroll.contract.declarations import EndpointSpec, sharing_one_limiter
    from unenroll.limits.adaptive import AdaptiveRate

    store = MemoryQuotaStore()
    per_ip = sharing_one_limiter({"unenroll": EndpointSpec("unenroll", 1000, 3600.0),
                                  "read": EndpointSpec("read", 1000, 3600.0)})
    specs = {**per_ip, "own": EndpointSpec("own", 5, 1.0), "free": EndpointSpec("free"),
             "learning": EndpointSpec("learning", limiter_factory=lambda spec: AdaptiveRate().limiter())}
    shared, limiters = shared_endpoints("docebo", "HTTPS://Tenant.Example.com:443/api/", specs, store,
                                        call_timeout=60.0)
    assert tenant_of("HTTPS://Tenant.Example.com:443/api/") == "https://tenant.example.com"
    assert {limiter.key.group for limiter in limiters} == {"read+unenroll", "own"}
    assert shared["unenroll"].make_limiter() is shared["read"].make_limiter()  # one window for the tenant
    assert isinstance(shared["own"].make_limiter(), SharedWindowLimiter)
    assert not isinstance(shared["free"].make_limiter(), SharedWindowLimiter)
    assert not isinstance(shared["learning"].make_limiter(), SharedWindowLimiter)
    assert limiters[0].rules == (WindowRule(1000, 3600.0),)


def test_endpoints_with_limiters_of_their_own_never_share_a_quota_key() -> None:
    """Zoho counts per API: three endpoints, each making a window of its own, are three keys,
    every time (a limiter made and dropped must not lend its identity to the next one)."""
    from unenroll.cli.quota import shared_endpoints
    from unenroll.contract.declarations import EndpointSpec

    specs = {name: EndpointSpec(name, 30, 60.0) for name in ("unenroll", "remove_learner", "share_course")}
    for _ in range(200):
        _, limiters = shared_endpoints("zoho", "https://people.zoho.com", specs, MemoryQuotaStore(),
                                       call_timeout=60.0)
        assert sorted(limiter.key.group for limiter in limiters) == ["remove_learner", "share_course", "unenroll"]
