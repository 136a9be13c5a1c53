"""What every benchmark case measures, and how the figures are defined.

**Efficiency** of a rate-limited run is ``least / span``:

- ``least`` is :meth:`unenroll.EndpointSpec.least_seconds_for` of the *vendor's* limits (the
  mock's, not the client's settings) for the calls the vendor *served*: every call it
  counted against the limit (retries and faulted calls included), not the ones it refused
  because the limit was exceeded (Zoho's 7209 lock answers, 429s). This is the least time
  those limits allow between the first and the last call start;
- ``span`` is the time between the first and the last call *arrival*, refused ones
  included, as the vendor saw them (the mock records each arrival), so both sides measure
  the same start-to-start interval. The wall time (token fetch before the first call, the
  last call's latency after it) is reported beside it as ``elapsed``.

So a client that trips a lock is charged the lock's time and gets no credit for the calls
refused during it; efficiency can never exceed 1 for a client that keeps to the limits.

For tiny call counts: when the served calls fit in one window (``served <= max_calls``),
``least`` is 0 whatever the client does, so the limits do not bind and efficiency is not
defined (``None``, printed ``n/a``), unless the vendor refused calls: then the client did
go over the limit, and spent the span to serve what one burst could have (efficiency 0).
Above that, a run of a few windows reads lower than a long one: ``least`` has every call
of the last window start at once, which a client with a few calls in flight cannot do,
and that spread weighs more in a short span. The engine's limiter counts each window from
the *answer* of the call ``max_calls`` starts before (``engine/limiter.py``), so every
window costs one call's latency plus the limiter's ``margin`` on top: it can reach at most
``window / (window + latency + margin)``, the **ceiling** printed beside it (latency: the
mean the mock measured, so the ceiling is if anything a little high).

Docebo's endpoint is bound by "one call in flight", not by the calls per hour, so its
efficiency is the share of the span with a call in flight (the mock times it).
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from unenroll import EndpointSpec


@dataclass
class Row:
    """One contender's run of one scenario: a row of the table and of the JSON file.

    Times are wall seconds as run (``time_scale`` applied); ``vendor_seconds`` converts
    back to the vendor's clock. ``arrivals`` are the calls' arrival times at the vendor in
    vendor seconds from the first (for the chart).
    """

    scenario: str
    contender: str
    items: int
    accounted: int  # items whose reported outcome matches what the vendor did, each once
    calls: int
    elapsed: float
    time_scale: float = 1.0
    efficiency: float | None = None
    ceiling: float | None = None
    throttles: int = 0  # lock events (Zoho) or 429 answers (SmarterU, Docebo)
    retries: int = 0  # calls that re-sent items after a failed or refused call
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)
    window: float | None = None  # the vendor's window in vendor seconds, for the chart
    limit: int | None = None  # the vendor's calls per window, for the chart
    arrivals: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    goal: str | None = None  # "met" / "MISSED", set by the harness

    @property
    def vendor_seconds(self) -> float:
        return self.elapsed / self.time_scale

    @property
    def items_per_second(self) -> float:
        """Items accounted per second of the vendor's clock."""
        return self.accounted / self.vendor_seconds if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vendor_seconds"] = round(self.vendor_seconds, 3)
        data["items_per_second"] = round(self.items_per_second, 1)
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Row:
        fields = {k: v for k, v in data.items() if k not in ("vendor_seconds", "items_per_second")}
        return Row(**fields)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (``ru_maxrss`` is KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def efficiency(reference: EndpointSpec, arrivals: Sequence[float], served: int) -> float | None:
    """``least_seconds_for(served) / span of arrivals`` (see the module docstring); ``None``
    when the limits do not bind. ``reference`` and ``arrivals`` on the same (scaled) clock."""
    if not arrivals:
        return None
    least = reference.least_seconds_for(served)
    span = max(arrivals) - min(arrivals)
    if least <= 0.0:  # the served calls fit in one window
        refused = served < len(arrivals)
        return 0.0 if refused and span > 0 else None  # bound only if the client went over
    return least / span if span > 0 else None


def window_ceiling(window: float, latency: float, margin: float) -> float:
    """The best efficiency the engine's limiter can reach: each window is counted from the
    answer of the call ``max_calls`` before, so it lasts ``window + latency + margin``."""
    return window / (window + latency + margin)


def vendor_offsets(arrivals: Sequence[float], time_scale: float) -> list[float]:
    """Arrival times as vendor seconds from the first arrival, rounded for the JSON file."""
    if not arrivals:
        return []
    first = min(arrivals)
    return [round((t - first) / time_scale, 4) for t in sorted(arrivals)]


Classifier = Callable[[web.Request], str | None]
RefusalTest = Callable[[web.StreamResponse], bool]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recording:
    """What a mock saw, per endpoint: call arrivals and answers (loop clock, seconds), and
    how many calls it refused for the rate limit. A plain value: it crosses processes as JSON."""

    arrivals: dict[str, list[float]] = field(default_factory=dict)
    answered: dict[str, list[float]] = field(default_factory=dict)  # when the handler returned
    refusals: dict[str, int] = field(default_factory=dict)

    def of(self, endpoint: str) -> list[float]:
        return sorted(self.arrivals.get(endpoint, []))

    def served(self, endpoint: str) -> int:
        """Calls counted against the limit: all but the ones refused for it."""
        return len(self.arrivals.get(endpoint, ())) - self.refusals.get(endpoint, 0)

    def mean_latency(self, endpoint: str) -> float:
        """Mean seconds from a call's arrival to its answer (each arrival has one answer)."""
        arrivals, answered = self.arrivals.get(endpoint, []), self.answered.get(endpoint, [])
        count = min(len(arrivals), len(answered))
        return (sum(answered[:count]) - sum(arrivals[:count])) / count if count else 0.0

    def idle_gaps(self, endpoint: str) -> list[float]:
        """For one call at a time: from each answer to the next call's arrival (seconds)."""
        arrivals, answered = self.of(endpoint), sorted(self.answered.get(endpoint, []))
        return [max(0.0, arrival - done) for done, arrival in zip(answered, arrivals[1:], strict=False)]


class ArrivalRecorder:
    """Records, in a mock, when each vendor call arrives and is answered, per endpoint,
    and which calls the mock refused for the rate limit.

    Installed as the mock app's first middleware, so the time is taken before the mock's
    own handler counts the call against its threshold: the vendor's view of the call start.
    ``classify`` names a request's endpoint, or ``None`` for calls not to record (tokens,
    the mock's own stats); ``refused`` tells a limit refusal from any other answer. A call
    whose connection the mock dropped counts as served (it was counted against the limit).
    """

    def __init__(self, classify: Classifier, refused: RefusalTest) -> None:
        self._classify = classify
        self._refused = refused
        self.recording = Recording()

    def install(self, app: web.Application) -> None:
        recording = self.recording

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            endpoint = self._classify(request)
            if endpoint is None:
                return await handler(request)
            loop = asyncio.get_running_loop()
            recording.arrivals.setdefault(endpoint, []).append(loop.time())
            response = await handler(request)
            recording.answered.setdefault(endpoint, []).append(loop.time())
            if self._refused(response):
                recording.refusals[endpoint] = recording.refusals.get(endpoint, 0) + 1
            return response

        app.middlewares.insert(0, record)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb: float | None = None
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }
