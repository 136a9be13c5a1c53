"""Scenario 7: N processes, each its own ``unenroll run`` job, against one Zoho tenant.

One Zoho mock (rolling 30-call window counted on arrival, the 5 minute lock, jittered
latency) holds N batches; N real ``unenroll run zoho`` processes each unenroll one batch,
all at once, through one of:

- **sqlite**: the shared quota in one SQLite file (the command line's default);
- **redis**: the shared quota in a real ``redis-server`` started here on loopback
  (``--quota redis://...``); skipped with a note when ``redis-server`` is not installed;
- **unshared**: each process with its own limiter (``--quota memory``), which is what
  every run did before the shared quota.

The total work is the same at every N (split evenly), so the figures compare directly.
*efficiency* is the combined one: the least time the documented limit allows for all the
calls the mock served, over the span of all arrivals (``measure.efficiency``).
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from unenroll.adapters.zoho.adapter import ZohoLimits

from .measure import Row, efficiency, vendor_offsets, window_ceiling
from .mockproc import MockProcess
from .zoho import THRESHOLD, WINDOW, Key, ZohoScenario, mock_config, zoho_mock, zoho_state

STORES = ("sqlite", "redis", "unshared")
RUN_TIMEOUT = 900.0  # seconds for every process of a case to finish


@dataclass(frozen=True, slots=True)
class QuotaScenario:
    processes: int = 4
    store: str = "sqlite"  # one of STORES
    items: int = 24_000  # in all, split evenly over the processes (one batch each)
    time_scale: float = 0.05
    fragmented: bool = True
    seed: int = 1

    @property
    def zoho(self) -> ZohoScenario:
        """The tenant: one batch per process, the mock of scenarios 1 and 2."""
        return ZohoScenario(items=self.items, batches=self.processes, time_scale=self.time_scale,
                            fragmented=self.fragmented, seed=self.seed)


@contextmanager
def _quota_for(store: str, folder: Path) -> Iterator[list[str] | None]:
    """The ``--quota`` arguments of ``store``; None when it cannot run here (no redis-server)."""
    if store == "unshared":
        yield ["--quota", "memory"]
    elif store == "sqlite":
        yield ["--quota", str(folder / "quota.db")]
    else:
        executable = shutil.which("redis-server")
        if executable is None:
            yield None
            return
        from tests.redis_server import running_redis_server  # the suite's own loopback server

        with running_redis_server(executable) as url:
            yield ["--quota", url]


def _input_files(folder: Path, work: list[Key], processes: int) -> list[Path]:
    """One CSV per batch, in the order of the work."""
    by_target: dict[tuple[str, str], list[str]] = {}
    for target, erecno in work:
        by_target.setdefault(target, []).append(erecno)
    assert len(by_target) == processes, (len(by_target), processes)
    paths = []
    for n, ((course, batch), erecnos) in enumerate(by_target.items()):
        path = folder / f"job{n}" / "in.csv"
        path.parent.mkdir()
        path.write_text("course_id,batch_id,erecno\n" + "".join(f"{course},{batch},{e}\n" for e in erecnos))
        paths.append(path)
    return paths


def _reported(path: Path) -> dict[Key, str]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    reported: dict[Key, str] = {}
    for row in rows:
        reported[((row["course_id"], row["batch_id"]), row["erecno"])] = row["outcome"]
    return reported


async def shared_quota_contender(sc: QuotaScenario) -> Row:
    zoho = sc.zoho
    _, work = zoho_state(zoho)
    config = mock_config(zoho)
    contender = f"{sc.store}, {sc.processes} process{'es' if sc.processes > 1 else ''}"
    with tempfile.TemporaryDirectory(prefix="unenroll-quota-") as tmp, _quota_for(sc.store, Path(tmp)) as quota:
        if quota is None:
            return Row(scenario="7", contender=contender, items=0, accounted=0, calls=0, elapsed=0.0,
                       time_scale=sc.time_scale, notes=["skipped: redis-server is not installed"],
                       extra={"failed": True})
        folder = Path(tmp)
        inputs = _input_files(folder, work.work, sc.processes)
        async with MockProcess(zoho_mock, asdict(zoho)) as mock:
            env = {k: v for k, v in os.environ.items() if not k.startswith("UNENROLL_")} | {
                "UNENROLL_BASE_URL": mock.url, "UNENROLL_ACCOUNTS_URL": mock.url, "UNENROLL_ALLOW_INSECURE_HTTP": "1",
                "UNENROLL_TIME_SCALE": repr(sc.time_scale), "UNENROLL_TIMEOUT": "30",
                "UNENROLL_ZOHO_REFRESH_TOKEN": config.refresh_token, "UNENROLL_ZOHO_CLIENT_ID": config.client_id,
                "UNENROLL_ZOHO_CLIENT_SECRET": config.client_secret, "XDG_STATE_HOME": str(folder / "state"),
            }
            started = time.monotonic()
            processes = [
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "unenroll.cli", "run", "zoho", str(path), "--yes", *quota,
                    env=env, cwd=path.parent, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                for path in inputs]
            codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), RUN_TIMEOUT)
            elapsed = time.monotonic() - started
            stats = await mock.stats()
            recording = (await mock.record()).recording
        reported: dict[Key, str] = {}
        for path in inputs:
            results = path.with_name("in.results.csv")
            if results.exists():
                reported |= _reported(results)
    arrivals = recording.of("unenroll")
    counter = stats["endpoints"]["unenroll"]
    latency = recording.mean_latency("unenroll") / sc.time_scale
    notes = [] if all(code == 0 for code in codes) else [f"exit codes {sorted(codes)}"]
    return Row(
        scenario="7",
        contender=contender,
        items=len(work.work),
        accounted=work.accounted(reported, work.work, stats),
        calls=len(arrivals),
        elapsed=elapsed,
        time_scale=sc.time_scale,
        efficiency=efficiency(zoho.reference, arrivals, recording.served("unenroll")),
        ceiling=window_ceiling(WINDOW, latency, ZohoLimits().margin),
        throttles=counter["lock_events"],
        notes=notes,
        window=WINDOW,
        limit=THRESHOLD,
        arrivals=vendor_offsets(arrivals, sc.time_scale),
        extra={"processes": sc.processes, "store": sc.store, "refused_calls": counter["refused"],
               "max_in_rolling_window": counter["max_in_rolling_window"], "exit_codes": codes},
    )


def params(store: str, processes: int, quick: bool, fragmented: bool) -> dict[str, Any]:
    """A case's parameters: the same total work at every N."""
    if quick:
        return {"processes": processes, "store": store, "items": 6_000, "time_scale": 0.01, "fragmented": fragmented}
    return {"processes": processes, "store": store, "items": 24_000, "time_scale": 0.05, "fragmented": fragmented}
