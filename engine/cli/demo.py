"""A real job against the bundled Zoho mock, started in-process: no credentials needed.

The mock is seeded with enrolments; the input mixes good rows with the mistakes real
files have (a malformed id, a repeated row, someone not enrolled) so every kind of
outcome shows up in the report.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from unenroll.accounts.ledger import Report
from unenroll.accounts.results import ResultsWriter
from unenroll.job.pipeline import run
from unenroll.job.retry import RetryPolicy
from unenroll.job.settings import JobSettings
from unenroll.model import Item


@dataclass(frozen=True, slots=True)
class DemoSettings:
    learners: int = 6000
    batches: int = 6
    time_scale: float = 0.01  # a minute lasts 0.6 s, so the demo shows several windows quickly
    fault_rate: float = 0.05
    seed: int = 42
    results: Path | None = None


def demo_items(batches: dict[tuple[str, str], dict[str, str]], seed: int) -> Iterator[Item]:
    """Every enrolled learner once, plus, at fixed places, rows of the kinds users get
    wrong: a repeated row, a malformed id, someone who is not enrolled there."""
    rng = random.Random(seed)
    targets = list(batches)
    for row, (target, erecno) in enumerate((t, e) for t in targets for e in batches[t]):
        yield Item("unenroll", target, erecno, meta={"row": row})
        if row % 397 == 5:
            yield Item("unenroll", target, erecno, meta={"row": f"{row} again"})
        if row % 601 == 7:
            yield Item("unenroll", target, erecno + "x", meta={"row": f"{row} typo"})
        if row % 251 == 3:
            yield Item("unenroll", rng.choice(targets), str(9_000_000_000_000 + row), meta={"row": f"{row} stale"})


async def run_demo(settings: DemoSettings) -> tuple[Report, dict[str, Any]]:
    """Start the mock on 127.0.0.1, run the job, return the report and the mock's stats."""
    from unenroll.adapters.zoho.adapter import ZohoPeople
    from unenroll.adapters.zoho.mock import ZohoMock, ZohoMockConfig, ZohoMockState
    from unenroll.contract.mock import Faults, Latency

    per_batch = max(1, settings.learners // settings.batches)
    state = ZohoMockState.generate(courses=2, batches_per_course=max(1, settings.batches // 2),
                                   learners_per_batch=per_batch, seed=settings.seed)
    share = settings.fault_rate / 3
    config = ZohoMockConfig(
        time_scale=settings.time_scale,
        latency=Latency(base=0.4, per_item=0.004, jitter=0.3),
        faults=Faults(server_error=share, drop=share, truncated=share),
        seed=settings.seed,
    )
    mock = ZohoMock(config, state)
    batches = {k: dict(v) for k, v in state.batches.items()}
    job_settings = JobSettings(retry=RetryPolicy().scaled(settings.time_scale), seed=settings.seed)
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        adapter = ZohoPeople(
            session=session, base_url=server.url, accounts_url=server.url,
            refresh_token=config.refresh_token, client_id=config.client_id, client_secret=config.client_secret,
            time_scale=settings.time_scale,
        )
        items = demo_items(batches, settings.seed)
        if settings.results is not None:
            with ResultsWriter(settings.results) as results:
                report = await run(adapter, items, settings=job_settings, sinks=[results])
        else:
            report = await run(adapter, items, settings=job_settings)
        async with session.get(server.url + "/__mock__/stats", params={"state": "0"}) as response:
            stats: dict[str, Any] = await response.json()
    return report, stats
