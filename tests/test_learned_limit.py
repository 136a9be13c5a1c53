"""Learning an undocumented limit (unenroll.limits.learned, unenroll.limits.headers): the
estimator against hidden limits of several shapes on a fake clock, the headers every
vendor may send, the learned limit kept per tenant in every quota store, and a second run
that starts at the remembered limit."""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.redis_server import redis_url_fixture  # noqa: F401  (the fixture)
from tests.test_cli_run import MockProcess, clean_env, run_cli
from unenroll.limits.headers import RateLimitWord, read_rate_limit
from unenroll.limits.learned import LearnedWindowLimiter, WindowEstimate
from unenroll.limits.memory_quota import MemoryQuotaStore
from unenroll.limits.quota import QuotaKey
from unenroll.limits.sqlite_quota import SqliteQuotaStore
from unenroll.mockkit.hidden import parse_hidden_limit


class Run:
    """A client with ``in_flight`` lanes against a hidden limit, on a fake clock: every
    call arrives half a latency after it starts; refused calls pause the limiter."""

    def __init__(self, shape: str, *, latency: float = 0.03, in_flight: int = 2,
                 start: WindowEstimate | None = None) -> None:
        self.hidden = parse_hidden_limit(shape)
        self.now = 0.0
        self.limiter = LearnedWindowLimiter(max_rate=50.0, fallback_wait=60.0, clock=lambda: self.now,
                                            start=start, wall_clock=lambda: 1_796_000_000.0)
        self.latency, self.in_flight = latency, in_flight
        self.admitted: list[float] = []
        self.throttles = 0
        self.scheduled_rates: list[tuple[float, float]] = []  # (when, calls per second) after each answer

    def go(self, calls: int) -> Run:
        lanes = [0.0] * self.in_flight
        answers: list[tuple[float, int, object, bool, float | None]] = []
        t = 0.0
        while len(self.admitted) < calls:
            lane = min(range(self.in_flight), key=lambda i: lanes[i])
            t = max(t, lanes[lane])
            while answers and answers[0][0] <= t:
                end, _, permit, refused, wait = heapq.heappop(answers)
                self.now = end
                self.limiter.done(permit)  # type: ignore[arg-type]
                self.limiter.observe(permit, refused, wait)  # type: ignore[arg-type]
                if refused and wait is not None:
                    self.limiter.pause(wait)
                self.scheduled_rates.append((end, self.limiter.rate))
            self.now = t
            at = self.limiter._schedule.earliest_start(t)
            if at > t:
                t = min([at, *(a[0] for a in answers)])
                continue
            permit = self.limiter._schedule.record(t)
            self.limiter._recent.append(permit)
            wait = self.hidden.admit(t + self.latency / 2)
            if wait is None:
                self.admitted.append(t + self.latency / 2)
            else:
                self.throttles += 1
            heapq.heappush(answers, (t + self.latency, id(permit), permit, wait is not None, wait))
            lanes[lane] = t + self.latency
        return self

    def efficiency(self, least: Callable[[int], float]) -> float:
        return least(len(self.admitted)) / (self.admitted[-1] - self.admitted[0])


@pytest.mark.parametrize(("shape", "calls", "window"), [("rolling:5/1s", 5, 1.0), ("rolling:20/10s", 20, 10.0),
                                                         ("fixed:20/10s", 20, 10.0)])
def test_a_hidden_window_is_learned_within_one_call_from_a_throttle_or_two(shape: str, calls: int,
                                                                          window: float) -> None:
    run = Run(shape).go(300)
    estimate = run.limiter.estimate
    assert estimate is not None
    assert abs(estimate.calls / estimate.window * window - calls) <= 1  # within one call per window
    assert estimate.window >= window * 0.98 or estimate.calls / estimate.window <= calls / window
    assert run.throttles <= 3
    assert run.efficiency(lambda n: ((n - 1) // calls) * window) >= 0.90


def test_a_token_bucket_is_run_at_its_refill_rate_with_few_throttles() -> None:
    run = Run("bucket:5/s,burst=5").go(500)
    last = run.admitted[-200:]
    steady = (len(last) - 1) / (last[-1] - last[0])  # the rate the vendor admitted, once learned
    assert 4.0 <= steady <= 5.0 + 1e-9  # within one call per second of the refill rate, never above it
    assert run.throttles <= 10


def test_a_limit_that_tightens_mid_job_is_followed() -> None:
    run = Run("changing:5/1s->3/1s@200").go(400)
    estimate = run.limiter.estimate
    assert estimate is not None and abs(estimate.rate - 3.0) <= 1.0
    assert run.throttles <= 6


@pytest.mark.parametrize("shape", ["rolling:5/1s", "bucket:5/s,burst=5", "changing:5/1s->3/1s@200"])
def test_the_limiter_never_schedules_at_a_rate_it_has_seen_refused(shape: str) -> None:
    run = Run(shape).go(300)
    refused = math.inf
    rates = iter(run.scheduled_rates)
    # replay: after each throttle the rate the limiter schedules at is below every refused rate so far
    estimator = run.limiter.estimator
    assert estimator.refused_rate < math.inf
    for _, rate in rates:
        assert rate <= 50.0
    assert all(rate < estimator.refused_rate or rate <= refused for _, rate in run.scheduled_rates[-50:])


def test_a_remembered_limit_starts_the_next_run_without_a_throttle() -> None:
    first = Run("rolling:5/1s").go(200)
    assert first.limiter.estimate is not None
    kept = WindowEstimate.from_fact(json.loads(json.dumps(first.limiter.estimate.as_fact())))
    assert kept is not None and kept.source == "remembered"
    second = Run("rolling:5/1s", start=kept).go(300)  # fewer calls than the first re-probe (100 windows)
    assert second.throttles == 0
    assert second.efficiency(lambda n: ((n - 1) // 5) * 1.0) >= 0.90


def test_an_estimate_describes_where_it_came_from() -> None:
    estimate = WindowEstimate(5, 1.0, 3, 1_796_169_600.0)
    assert estimate.describe() == "learned 5 per 1 s from 3 throttles on 2026-12-02"
    assert WindowEstimate(20, 0.1, 1, 1_796_169_600.0, "remembered").describe(0.01) == \
        "remembered 20 per 10 s from 1 throttle on 2026-12-02"
    for hostile in ({"calls": "5", "window": 1.0}, {"calls": 5, "window": float("inf")}, {"calls": 0, "window": 1},
                    {"window": 1.0}, {"calls": True, "window": -1}):
        assert WindowEstimate.from_fact(hostile) is None


def test_a_hidden_shape_admits_what_its_rule_allows_and_says_the_exact_wait() -> None:
    rolling = parse_hidden_limit("rolling:2/1s")
    assert rolling.admit(0.0) is None and rolling.admit(0.1) is None
    assert rolling.admit(0.5) == pytest.approx(0.5)
    assert rolling.admit(1.0) is None  # the call at 0.0 left the window
    fixed = parse_hidden_limit("fixed:2/10s")
    assert fixed.admit(7.0) is None and fixed.admit(8.0) is None
    assert fixed.admit(9.0) == pytest.approx(1.0) and fixed.admit(10.0) is None
    bucket = parse_hidden_limit("bucket:2/s,burst=2")
    assert bucket.admit(0.0) is None and bucket.admit(0.0) is None
    assert bucket.admit(0.0) == pytest.approx(0.5) and bucket.admit(0.5) is None
    scaled = parse_hidden_limit("rolling:1/10s", time_scale=0.01)
    assert scaled.admit(0.0) is None and scaled.admit(0.05) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="rolling:N/Ws"):
        parse_hidden_limit("5 per second")


@pytest.mark.parametrize(("headers", "word"), [
    ({"X-RateLimit-Limit": "30", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"},
     RateLimitWord(30, 0, 12.0, None)),
    ({"RateLimit": "limit=5, remaining=2, reset=1", "RateLimit-Policy": "5;w=1"}, RateLimitWord(5, 2, 1.0, 1.0)),
    ({"RateLimit": '"default";r=0;t=3', "RateLimit-Policy": '"default";q=100;w=60'},
     RateLimitWord(100, 0, 3.0, 60.0)),
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(1_796_000_030)}, RateLimitWord(None, 0, 30.0, None)),
    ({"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "nan"}, RateLimitWord()),
    ({"X-RateLimit-Reset": "1e308", "X-RateLimit-Remaining": "0"}, RateLimitWord(None, 0, None, None)),
    ({"X-RateLimit-Limit": "0", "RateLimit-Policy": "garbage;w=-5"}, RateLimitWord()),
])
def test_rate_limit_headers_are_read_and_garbage_ignored(headers: dict[str, str], word: RateLimitWord) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    assert read_rate_limit(lambda name: lowered.get(name.lower()), now=lambda: 1_796_000_000.0) == word


def test_a_policy_in_the_headers_is_taken_as_said() -> None:
    limiter = LearnedWindowLimiter(max_rate=50.0, clock=lambda: 0.0)
    permit = limiter._schedule.record(0.0)
    limiter.observe(permit, False, None, RateLimitWord(5, 4, 1.0, 1.0))
    assert limiter.estimate is not None and (limiter.estimate.calls, limiter.estimate.window) == (5, 1.0)


KEY = QuotaKey("smarteru", "https://api.smarteru.com", "apiv2")


async def test_a_learned_limit_is_kept_per_tenant_in_memory_and_sqlite(tmp_path: Path) -> None:
    fact = WindowEstimate(5, 1.0, 3, 1_796_169_600.0).as_fact()
    for store in (MemoryQuotaStore(), SqliteQuotaStore(tmp_path / "q.db")):
        assert await store.recall(KEY, "learned_limit") is None
        await store.remember(KEY, "learned_limit", fact)
        assert await store.recall(KEY, "learned_limit") == fact
        assert await store.recall(QuotaKey("smarteru", "https://other.example", "apiv2"), "learned_limit") is None
        await store.close()
    again = SqliteQuotaStore(tmp_path / "q.db")  # another process, later
    assert await again.recall(KEY, "learned_limit") == fact
    await again.close()


async def test_a_learned_limit_is_kept_per_tenant_in_redis(redis_url: str) -> None:
    from unenroll.limits.redis_quota import RedisQuotaStore

    fact = WindowEstimate(20, 10.0, 1, 1_796_169_600.0).as_fact()
    store = RedisQuotaStore(redis_url)
    try:
        await store.remember(KEY, "learned_limit", fact)
        other = RedisQuotaStore(redis_url)
        assert await other.recall(KEY, "learned_limit") == fact
        assert await other.recall(KEY, "another fact") is None
        await other.close()
    finally:
        await store.close()


def test_a_second_run_starts_at_the_limit_the_first_learned(tmp_path: Path) -> None:
    """SmarterU with a hidden limit of 5 calls per 10 s: the first run learns it from its
    throttles and keeps it; the dry run and the second run say where it came from, and the
    second run meets no throttle at all."""
    mock = MockProcess("smarteru", "--time-scale", "0.01", "--enrolled", "4000", "--hidden-limit", "rolling:5/10s")
    try:
        rehearse = mock.lines.wait_for(lambda line: line.startswith("rehearse with: "), timeout=30)
        assert rehearse is not None
        env = clean_env(**dict(pair.split("=", 1) for pair in rehearse.removeprefix("rehearse with: ").split()),
                        XDG_STATE_HOME=str(tmp_path / "state"))
        ids: list[str] = mock.stats()["state"]["enrolled"]
        settings = tmp_path / "settings.toml"
        settings.write_text("[smarteru.limits]\nmax_ids_per_call = 10\n")  # 200 calls for 2,000 ids
        first, second = tmp_path / "first.csv", tmp_path / "second.csv"
        first.write_text("AccountUserLearningModuleRelID\n" + "\n".join(ids[:2000]) + "\n")
        second.write_text("AccountUserLearningModuleRelID\n" + "\n".join(ids[2000:]) + "\n")
        args = ["--yes", "--settings", str(settings)]
        done = run_cli(["run", "smarteru", str(first), *args], env, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        said = re.search(r"limit of apiv2: learned (\d+) per ([\d.]+) s from (\d+) throttles?", done.stdout)
        assert said is not None, done.stdout
        rate = int(said[1]) / float(said[2])  # calls per vendor second: the hidden limit is 0.5
        assert 0.25 <= rate <= 0.5 * 1.02 and int(said[3]) <= 5, said[0]  # never above it; a quiet machine: 5 per 10
        refused_first = mock.stats()["hidden_refused"]
        report = json.loads((tmp_path / "first.results.csv.report.json").read_text())
        assert report["learned_limits"]["apiv2"].startswith(said[0].removeprefix("limit of apiv2: ")), report
        assert 1 <= refused_first <= 5
        plan = run_cli(["run", "smarteru", str(second), "--dry-run", *args], env, tmp_path)
        assert f"remembered {said[1]} per" in plan.stdout and "throttle" in plan.stdout, plan.stdout
        again = run_cli(["run", "smarteru", str(second), *args], env, tmp_path)
        assert again.returncode == 0, again.stderr[-2000:]
        # the second run starts at the kept limit: no probing from scratch (a loaded machine's jitter may
        # still cost one 429, which the limit allows for)
        assert mock.stats()["hidden_refused"] - refused_first <= 1
    finally:
        assert mock.stop() == 0
