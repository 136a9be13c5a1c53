"""The exact account of a job: every item taken in ends in exactly one outcome.

:class:`Ledger` holds the items that are open (taken in, not yet ended) and refuses to
end one twice or to end one it never opened. When the job stops for any reason, the
pipeline ends whatever is still open as ``not_sent``; so, when a job returns,
``opened == sum(counts)`` and nothing is open. ``tests/test_ledger.py`` pins it.

Every outcome passes :meth:`Ledger.end` before any sink sees it (results files, the
journal, ``unenroll.stream``, the report), so that is where vendor text is scrubbed of
secrets (``secrets.scrub``): a vendor's code or message quoting a token reaches no sink.
The report's stop reason is scrubbed whenever it is shown. ``tests/test_secret_leaks.py``
pins it end to end.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from unenroll.model import ItemOutcome, Outcome, Work
from unenroll.observe.secrets import scrub


class AccountingError(AssertionError):
    """An item was ended twice, or ended without being opened: a bug in the engine."""


@dataclass(slots=True)
class EndpointStats:
    calls: int = 0
    throttled: int = 0  # lock or 429 answers
    retried_calls: int = 0  # calls whose answer was a transient failure
    splits: int = 0  # whole-call refusals bisected
    cap_halvings: int = 0
    auth_refreshes: int = 0
    cap_items: int = 0  # the chunk cap in force at the end


@dataclass(slots=True)
class Report:
    """What a job did. ``counts`` has one entry per outcome that occurred."""

    vendor: str
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)
    retried_items: int = 0
    elapsed: float = 0.0
    stopped: str | None = None  # why the job ended early, if it did
    replayed: int = 0  # items whose confirmed outcome came from an earlier run's journal
    options: dict[str, bool] = field(default_factory=dict)
    # every item of the input was taken in; False: the job stopped with a stream (or other
    # non-Sized input) not read to its end, and ``total`` is how many items were taken in
    input_complete: bool = True

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.endpoints.values())

    @property
    def throttled(self) -> int:
        return sum(s.throttled for s in self.endpoints.values())

    @property
    def all_succeeded(self) -> bool:
        """Every item reached the wanted state, or was refused before sending."""
        bad = {Outcome.FAILED, Outcome.GAVE_UP, Outcome.NOT_SENT}
        return self.stopped is None and not any(self.counts.get(o.value) for o in bad)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "total": self.total,
            "counts": dict(self.counts),
            "calls": self.calls,
            "endpoints": {name: asdict(s) for name, s in self.endpoints.items()},
            "retried_items": self.retried_items,
            "elapsed_s": round(self.elapsed, 3),
            "stopped": None if self.stopped is None else scrub(self.stopped),
            "replayed": self.replayed,
            "options": dict(self.options),
            "input_complete": self.input_complete,
        }

    def summary(self) -> str:
        """A short human-readable table."""
        lines = [f"unenroll report: {self.vendor}, {self.total} items, {self.elapsed:.2f}s"]
        if self.stopped:
            lines.append(f"  STOPPED: {scrub(self.stopped)}")
        if not self.input_complete:
            lines.append(f"  input: {self.total} items were taken in; the rest of the input was not read")
        if self.replayed:
            lines.append(f"  resumed: {self.replayed} items were confirmed by the earlier run and not sent again")
        for outcome in Outcome:
            if n := self.counts.get(outcome.value):
                lines.append(f"  {outcome.value:<13} {n:>9}")
        for name, s in self.endpoints.items():
            if not s.calls:
                continue  # an endpoint this job did not use
            lines.append(
                f"  endpoint {name}: {s.calls} calls, {s.throttled} throttled, "
                f"{s.retried_calls} retried, {s.splits} split, chunk cap {s.cap_items}"
            )
        if self.options:
            on = [k for k, v in self.options.items() if v]
            lines.append(f"  destructive options on: {', '.join(on) if on else 'none'}")
        return "\n".join(lines)


OutcomeSink = Callable[[ItemOutcome], None]


class Ledger:
    """Open items and final outcomes. Synchronous: ending an item never waits."""

    __slots__ = ("_counts", "_open", "_sinks", "_started", "report")

    def __init__(self, vendor: str, sinks: Iterable[OutcomeSink] = ()) -> None:
        self.report = Report(vendor)
        self._open: dict[int, Work] = {}
        self._counts: Counter[Outcome] = Counter()
        self._sinks = list(sinks)
        self._started = time.monotonic()

    def open(self, work: Work) -> None:
        if work.index in self._open:
            raise AccountingError(f"item {work.index} opened twice")
        self._open[work.index] = work
        self.report.total += 1

    @property
    def open_count(self) -> int:
        return len(self._open)

    def end(
        self,
        work: Work,
        outcome: Outcome,
        code: str | None = None,
        message: str | None = None,
    ) -> ItemOutcome:
        if self._open.pop(work.index, None) is None:
            raise AccountingError(f"item {work.index} ended twice or never opened")
        self._counts[outcome] += 1
        if code is not None:  # vendor text: the one place before every sink
            code = scrub(code)
        if message is not None:
            message = scrub(message)
        result = ItemOutcome(work.index, work.item, outcome, code, message, work.sends)
        for sink in self._sinks:
            sink(result)
        return result

    def end_all_open(self, reason: str) -> list[ItemOutcome]:
        """End every open item as ``not_sent``: the job stopped before they were done."""
        ended = []
        for work in list(self._open.values()):
            message = reason
            if work.sends:
                message = f"{reason}; it was sent {work.sends} time(s) without a final answer"
            ended.append(self.end(work, Outcome.NOT_SENT, "stopped", message))
        return ended

    def close(self) -> Report:
        if self._open:
            raise AccountingError(f"{len(self._open)} items still open at the end of the job")
        self.report.counts = {o.value: self._counts[o] for o in Outcome if self._counts[o]}
        if self.report.stopped is not None:
            self.report.stopped = scrub(self.report.stopped)
        self.report.elapsed = time.monotonic() - self._started
        return self.report
