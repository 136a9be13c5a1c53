"""A tenant's daily budget (unenroll.limits.budget): every endpoint of the tenant draws on one
budget, a call starts only with a slot of both, and the plan says when a job spans days."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from tests.redis_server import redis_url_fixture  # noqa: F401  (the fixture)
from tests.test_cli_interrupt import Run
from tests.test_cli_run import CLI, MockProcess, clean_env, read_results, zoho_env
from tests.test_quota_processes import TWO_IDS_A_CALL, batch_files
from unenroll.cli.config import load_settings
from unenroll.cli.quota import shared_endpoints
from unenroll.contract.declarations import EndpointSpec
from unenroll.contract.settings import ConfigError
from unenroll.limits.budget import BudgetedLimiter, BudgetedPermit
from unenroll.limits.memory_quota import MemoryQuotaStore
from unenroll.limits.quota import Grant, QuotaKey, QuotaStore, SharedWindowLimiter, WindowRule
from unenroll.limits.redis_quota import RedisQuotaStore
from unenroll.limits.sqlite_quota import SqliteQuotaStore
from unenroll.planning.plan import Plan, describe


async def test_two_endpoints_share_one_budget_and_no_day_holds_more_than_it() -> None:
    """Two endpoints with generous windows of their own, 12 calls in all against a budget of
    5 a "day" of 0.3 s: every call started with a budget slot, and between the start of a
    call and that of the 5th after it lies at least the end of the first plus a day."""
    store = MemoryQuotaStore(anyio.current_time)
    specs = {"read": EndpointSpec("read", max_calls=100, window=1.0),
             "write": EndpointSpec("write", max_calls=100, window=1.0)}
    shared, limiters = shared_endpoints("vendor", "https://tenant.example", specs, store, call_timeout=5.0,
                                        daily_calls=5, day=0.3)
    budget = limiters[-1]
    assert budget.key.group == "day" and len(limiters) == 3
    calls: list[tuple[float, float]] = []

    async def send(limiter_of: EndpointSpec, n: int) -> None:
        limiter = limiter_of.make_limiter()
        assert isinstance(limiter, BudgetedLimiter) and limiter.budget is budget
        for _ in range(n):
            permit = await limiter.acquire()
            started = anyio.current_time()
            await anyio.sleep(0.01)
            calls.append((started, anyio.current_time()))
            limiter.done(permit)

    for limiter in limiters:
        await limiter.__aenter__()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(send, shared["read"], 6)
            group.start_soon(send, shared["write"], 6)
    finally:
        for limiter in reversed(limiters):
            await limiter.__aexit__(None, None, None)
    calls.sort()
    assert len(calls) == 12
    for (_, end), (later_start, _) in zip(calls, calls[5:], strict=False):
        assert later_start >= end + 0.3 - 0.005  # the 6th call waits for the 1st to leave the day


@pytest.mark.parametrize("through", ["memory", "sqlite", "redis"])
async def test_no_day_holds_more_than_the_budget_whichever_process_and_api_the_calls_came_from(
        through: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Three participants (as three processes: each its own store client and limiters), each
    sending calls through two APIs of one tenant with their own generous windows, against one
    budget of 4 calls a "day" of 0.25 s: by the budget's own starts (the store's clock) and the
    moments the answers came back, the 5th call after any call starts no earlier than a day
    after that call's end, so no day holds more than 4, whoever sent them."""
    budget_calls, day, per_participant = 4, 0.25, 4
    clock: Callable[[], float] = time.monotonic if through == "memory" else time.time  # each store's clock
    shared_memory = MemoryQuotaStore()

    def open_store() -> QuotaStore:
        if through == "memory":
            return shared_memory
        if through == "sqlite":
            return SqliteQuotaStore(tmp_path / "quota.db")
        return RedisQuotaStore(request.getfixturevalue("redis_url"))

    specs = {"read": EndpointSpec("read", max_calls=100, window=1.0),
             "write": EndpointSpec("write", max_calls=100, window=1.0)}
    calls: list[tuple[float, float, str]] = []  # (the budget's start, the answer's moment, who)
    jitter = random.Random(7)

    async def participant(name: str) -> None:
        store = open_store()
        shared, limiters = shared_endpoints("vendor", "https://tenant.example", specs, store, call_timeout=5.0,
                                            daily_calls=budget_calls, day=day)
        try:
            async with AsyncExitStack() as stack:
                for limiter in limiters:
                    await stack.enter_async_context(limiter)
                for n in range(per_participant):
                    api = shared["read" if (n + len(name)) % 2 else "write"].make_limiter()
                    permit = await api.acquire()
                    assert isinstance(permit, BudgetedPermit)
                    await anyio.sleep(jitter.uniform(0.0, 0.02))
                    calls.append((permit.budget.start, clock(), name))
                    api.done(permit)
        finally:
            if store is not shared_memory:
                await store.close()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for name in ("host-a", "host-bb", "host-ccc"):
                group.start_soon(participant, name)
    calls.sort()
    assert len(calls) == 3 * per_participant and len({who for _, _, who in calls}) == 3
    for (_, ended, _), (later_start, _, _) in zip(calls, calls[budget_calls:], strict=False):
        assert later_start >= ended + day
    for start, _, _ in calls:  # and the rolling count, spelled out
        assert sum(start <= other < start + day for other, _, _ in calls) <= budget_calls


KEY_DAY = QuotaKey("vendor", "https://tenant.example", "day")
KEY_EP = QuotaKey("vendor", "https://tenant.example", "write")


async def test_a_spent_budget_is_waited_out_without_taking_endpoint_slots() -> None:
    """The budget is spent (its last call still in flight, then a window to wait): the
    limiter waits it out without taking endpoint slots it cannot use, then starts the call."""
    store = MemoryQuotaStore(anyio.current_time)
    budget = SharedWindowLimiter(store, KEY_DAY, [WindowRule(1, 0.1)], 5.0)
    endpoint = SharedWindowLimiter(store, KEY_EP, [WindowRule(100, 10.0)], 5.0)
    async with budget, endpoint:
        spent, _ = await budget.try_once()
        assert spent is not None

        async def answer_later() -> None:
            await anyio.sleep(0.1)
            budget.done(spent)

        limiter = BudgetedLimiter(endpoint, budget)
        async with anyio.create_task_group() as group:
            group.start_soon(answer_later)
            permit = await limiter.acquire()
        limiter.done(permit)
        await endpoint.flush()
        usage = await endpoint.usage()
    assert usage.windows == ((1, 0),)  # it peeked while the budget was spent: no endpoint slot taken in vain


class SlowAnswers(MemoryQuotaStore):
    """A memory store whose answers to an acquire come back late (a far Redis): the step is
    taken at once, so a caller cancelled while it waits for the answer has a place in line."""

    async def try_acquire(self, key: QuotaKey, rules: Sequence[WindowRule], *, participant: str,
                          call_timeout: float) -> Grant:
        grant = self.acquire_step(key, rules, participant=participant, call_timeout=call_timeout)
        await anyio.sleep(0.2)
        return grant


async def test_a_call_cancelled_while_it_asks_the_budget_leaves_no_place_in_line() -> None:
    store = SlowAnswers(anyio.current_time)
    budget = SharedWindowLimiter(store, KEY_DAY, [WindowRule(1, 10.0)], 5.0, participant="this-run")
    spent = store.acquire_step(KEY_DAY, budget.rules, participant="first", call_timeout=5.0)
    assert spent.call_id is not None
    endpoint = SharedWindowLimiter(MemoryQuotaStore(anyio.current_time), KEY_EP, [WindowRule(100, 10.0)], 5.0)
    limiter = BudgetedLimiter(endpoint, budget)
    budget.peek = room_seen  # type: ignore[method-assign]  # the peek saw room; another run took it since
    async with budget, endpoint:
        with anyio.move_on_after(0.1) as asked:
            await limiter.acquire()
        assert asked.cancelled_caught  # cancelled while the budget's answer was on its way
    assert store.usage_step(KEY_DAY, budget.rules, participant="this-run").windows == ((0, 1),)
    assert not store._state(KEY_DAY).tickets  # its place in line went with it


async def room_seen() -> float:
    return 0.0


def test_daily_calls_is_a_setting_of_every_vendors_limits(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[zoho.limits]\ndaily_calls = 25000\n")
    loaded = load_settings("zoho", settings, {}, vendors=["zoho"], limit_keys={"max_ids_per_call": int})
    assert loaded.daily_calls == 25000 and "daily_calls" not in loaded.limits  # the engine's, not the adapter's
    from_env = load_settings("zoho", None, {"UNENROLL_ZOHO_DAILY_CALLS": "1000"}, vendors=["zoho"], limit_keys={})
    assert from_env.daily_calls == 1000
    assert load_settings("zoho", None, {}, vendors=["zoho"], limit_keys={}).daily_calls is None  # unknown: no guess
    for value, said in [("0", "daily_calls must be above 0"), ("-5", "daily_calls must be above 0"),
                        ("1.5", "daily_calls: expected a whole number, got 1.5"),
                        ("true", "daily_calls: expected a whole number, got true"),
                        ('"lots"', "daily_calls: 'lots' is not a whole number")]:
        settings.write_text(f"[zoho.limits]\ndaily_calls = {value}\n")
        with pytest.raises(ConfigError) as refused:
            load_settings("zoho", settings, {}, vendors=["zoho"], limit_keys={})
        assert str(refused.value) == f"{settings} [zoho.limits]: {said}"


def test_the_plan_says_when_a_job_spans_days() -> None:
    plan = Plan("zoho", ("unenroll",), rows=6000, to_send=6000, calls={"unenroll": 3000},
                seconds={"unenroll": 5900.0}, limits={"unenroll": "30 calls per 1 min"})
    assert plan.days == 1 and plan.least_seconds == 5900.0
    plan.daily_calls = 1000
    assert plan.days == 3
    assert plan.least_seconds == 2 * 86400.0  # two full days before the last one
    text = describe(plan, source="in.csv", base_url="https://people.zoho.com")
    assert "daily budget: 1,000 calls a day for the tenant" in text and "these 3,000 calls span 3 days" in text
    assert "no less than 48 h" in text, text
    plan.daily_calls = 5000
    assert "fit in one day" in describe(plan, source="in.csv", base_url="https://people.zoho.com")
    plan.calls, plan.daily_calls = {"unenroll": 1}, 1
    assert ("daily budget: 1 call a day for the tenant (all its APIs, every run): this 1 call fits in one day"
            in describe(plan, source="in.csv", base_url="https://people.zoho.com"))


def test_an_endpoint_the_adapter_leaves_out_of_the_daily_cap_draws_nothing_from_the_budget() -> None:
    """The adapter declares which endpoints the vendor's daily cap counts (``in_daily_budget``);
    the engine wraps those only, and the plan counts their calls only."""
    specs = {"write": EndpointSpec("write", max_calls=30, window=60.0),
             "status": EndpointSpec("status", max_calls=30, window=60.0, in_daily_budget=False)}
    shared, limiters = shared_endpoints("vendor", "https://tenant.example", specs, MemoryQuotaStore(),
                                        call_timeout=5.0, daily_calls=1000)
    assert limiters[-1].key.group == "day"
    assert isinstance(shared["write"].make_limiter(), BudgetedLimiter)
    status = shared["status"].make_limiter()
    assert isinstance(status, SharedWindowLimiter) and status.key.group == "status"  # its own window, no budget

    plan = Plan("vendor", ("unenroll",), rows=6000, to_send=3000, calls={"write": 3000, "status": 3000},
                seconds={"write": 5900.0, "status": 5900.0},
                limits={"write": "30 calls per 1 min", "status": "30 calls per 1 min"},
                daily_calls=1000, outside_budget={"status"})
    assert plan.budget_calls == 3000 and plan.days == 3
    text = describe(plan, source="in.csv", base_url="https://tenant.example")
    assert ("daily budget: 1,000 calls a day for the tenant (not counting status, every run): "
            "these 3,000 calls span 3 days") in text, text
    plan.outside_budget = set()
    assert plan.days == 6
    assert "(all its APIs, every run): these 6,000 calls (write + status) span 6 days" in describe(
        plan, source="in.csv", base_url="https://tenant.example")


def test_a_run_over_its_daily_budget_waits_a_day(tmp_path: Path) -> None:
    """A real run with a budget of 5 calls a day (a day lasts 4.3 s at the run's time scale)
    and 8 calls to make: 5 go, the rest wait for the first to leave the day (the 6th answer
    comes a day after the 1st, by the run's own call log); every row ends once. (The mock
    keeps a slower clock, so its tokens outlive the run; 8 calls never fill its minute.)"""
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "16")
    try:
        (source, learners), = batch_files(tmp_path, mock)
        settings = tmp_path / "settings.toml"
        settings.write_text(TWO_IDS_A_CALL + "daily_calls = 5\n")
        scale = 0.00005
        env = zoho_env(mock.url, UNENROLL_TIME_SCALE=str(scale), XDG_STATE_HOME=str(tmp_path / "state"))
        run = Run(["zoho", str(source), "--yes", "--settings", str(settings), "--verbose"], env, tmp_path)
        code, out, err = run.finish(60)
        assert code == 0, out + err
        assert "daily budget: 5 calls a day" in out and "span 2 days" in out, out
        rows = read_results(source.with_name("in.results.csv"))
        assert sorted(r["erecno"] for r in rows) == sorted(learners)
        assert {r["outcome"] for r in rows} == {"unenrolled"}
        assert mock.stats(state=False)["endpoints"]["unenroll"]["calls"] == 8
    finally:
        assert mock.stop() == 0
    events = [json.loads(line) for line in err.splitlines()]
    answers = sorted(datetime.fromisoformat(e["timestamp"]).timestamp() for e in events
                     if e["event"] == "chunk.answered")
    assert len(answers) == 8
    day = 86400 * scale
    assert all(later >= first + day - 0.05 for first, later in zip(answers, answers[5:], strict=False)), answers


def test_a_budget_that_is_not_a_number_is_said_plainly(tmp_path: Path) -> None:
    import subprocess

    source = tmp_path / "in.csv"
    source.write_text("course_id,batch_id,erecno\n5000000000000,5000000000001,100\n")
    env = clean_env(UNENROLL_ZOHO_DAILY_CALLS="lots")
    done = subprocess.run([*CLI, "run", "zoho", str(source), "--dry-run"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "unenroll: UNENROLL_ZOHO_DAILY_CALLS: 'lots' is not a whole number"
    assert "Traceback" not in done.stderr
