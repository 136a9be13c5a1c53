"""The progress line (unenroll.observe.progress): what it shows of the shared quota."""

from __future__ import annotations

from unenroll.limits.memory_quota import MemoryQuotaStore
from unenroll.limits.quota import QuotaKey, SharedWindowLimiter, WindowRule
from unenroll.observe.progress import Progress, QuotaWatch, render_line

KEY = QuotaKey("vendor", "https://tenant.example", "api")


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_progress_line_says_what_other_runs_spend_of_the_quota() -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    rules = [WindowRule(30, 60.0)]
    for _ in range(12):
        assert store.acquire_step(KEY, rules, participant="another run", call_timeout=5.0).call_id is not None
    mine = SharedWindowLimiter(store, KEY, rules, 5.0, participant="this run")
    progress = Progress(100, {}, {}, {}, clock)
    watch = QuotaWatch(progress, [mine])
    await watch.look()
    line = render_line(progress.snapshot(), width=200)
    assert line.endswith("| 12 of 30 calls per minute are used by another run"), line
    clock.now += 61.0  # their calls left the window: nothing to say
    await watch.look()
    assert progress.snapshot().shared is None
    assert "another run" not in render_line(progress.snapshot(), width=200)


async def test_an_unreadable_store_keeps_the_last_words_and_stops_nothing() -> None:
    class Unreachable(MemoryQuotaStore):
        async def usage(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            raise ConnectionError("the store is down")

    progress = Progress(1, {}, {}, {})
    progress.shared = "3 of 30 calls per minute are used by another run"
    await QuotaWatch(progress, [SharedWindowLimiter(Unreachable(), KEY, [WindowRule(30, 60.0)], 5.0)]).look()
    assert progress.shared == "3 of 30 calls per minute are used by another run"
