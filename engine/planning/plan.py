"""The plan of a job, made by reading its whole input once and sending nothing.

:func:`make_plan` sees every item the way the job's intake will (the same validation,
the same de-duplication, and, when resuming, the same journal outcomes), and groups the
items left to send the way the chunker will, so it can say before anything is sent:

- how many items end how (rejected, duplicate, already done by an earlier run) and how
  many will be sent, per target;
- how many calls each endpoint needs at least (full chunks: a lower bound, as retries
  and splits add calls) and the least time the endpoint's limits allow for them
  (:meth:`~unenroll.EndpointSpec.least_seconds_for`; endpoints run side by side);
- a sample request per endpoint, with every credential masked.

Memory: one integer per distinct item (as the intake), one open chunk per target, and
the items to send only if asked (``keep_items``, for a backup).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus, urlencode
from xml.sax.saxutils import escape

from unenroll.accounts.journal import Journal
from unenroll.contract.declarations import Adapter, Operation
from unenroll.job.intake import IntakeFilter
from unenroll.limits.budget import DAY
from unenroll.model import Item, Outcome, Unreadable
from unenroll.observe.secrets import MASK, Secret, scrub
from unenroll.planning.durations import format_duration as format_duration  # re-exported for older imports
from unenroll.wire.http import HttpRequest

Target = tuple[str, ...]
SAMPLE_SUBJECTS = 3


@dataclass(slots=True)
class _OpenChunk:
    items: int = 0
    nbytes: int = 0


@dataclass(slots=True)
class Plan:
    """What a job will do. ``counts`` has the outcomes known before sending (``rejected``,
    ``duplicate``) and, when resuming, those the journal confirms (``already <outcome>``)."""

    vendor: str
    operations: tuple[str, ...]
    rows: int = 0
    to_send: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    per_target: Counter[tuple[str, Target]] = field(default_factory=Counter)  # (operation, target) -> items
    calls: dict[str, int] = field(default_factory=dict)  # endpoint -> calls, at least
    seconds: dict[str, float] = field(default_factory=dict)  # endpoint -> least time the limits allow
    limits: dict[str, str] = field(default_factory=dict)  # endpoint -> its limits, in words
    samples: dict[str, HttpRequest] = field(default_factory=dict)
    sample_sizes: dict[str, int] = field(default_factory=dict)  # endpoint -> items in the sample request
    first_problems: list[str] = field(default_factory=list)
    options: dict[str, bool] = field(default_factory=dict)
    items: list[Item] | None = None  # the items to send, if kept
    daily_calls: int | None = None  # the tenant's daily budget, when known (set by the caller)
    day: float = DAY  # the budget's window (a day, times the time scale)
    outside_budget: set[str] = field(default_factory=set)  # endpoints the adapter says the daily cap leaves out

    @property
    def budget_calls(self) -> int:
        """The calls the tenant's daily budget counts."""
        return sum(n for endpoint, n in self.calls.items() if endpoint not in self.outside_budget)

    @property
    def days(self) -> int:
        """The days of the tenant's daily budget the calls span (1 without a known budget)."""
        if self.daily_calls is None or self.budget_calls <= self.daily_calls:
            return 1
        return -(-self.budget_calls // self.daily_calls)

    @property
    def least_seconds(self) -> float:
        """The least time the limits allow: the slowest endpoint's windows, and a full day of
        the budget for every day but the last."""
        return max(max(self.seconds.values(), default=0.0), (self.days - 1) * self.day)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def _calls_in_words(n: int) -> str:
    return f"{n:,} call" if n == 1 else f"{n:,} calls"


def _limits_in_words(adapter: Adapter, endpoint: str) -> str:
    spec = adapter.endpoints[endpoint]
    if spec.max_calls is None:
        return "no documented rate limit (paced by the vendor's throttles)"
    words = f"{spec.max_calls:,} calls per {format_duration(spec.window)}"
    if spec.min_interval > 0:
        words += f", one every {format_duration(spec.min_interval)}"
    return words + f", {spec.max_in_flight} in flight"


def make_plan(
    adapter: Adapter,
    items: Iterable[Item | Unreadable],
    *,
    journal: Journal | None = None,
    keep_items: bool = False,
    max_problems: int = 5,
    operations_used: Sequence[str] | None = None,
) -> Plan:
    """Read every item and plan the job (see the module docstring). ``journal``: a journal
    opened with ``resume=True``; its recalled outcomes count as the resumed job will
    replay them. Use a journal object for one plan only (recalling consumes it).
    ``operations_used``: the operations the input holds (their endpoints are planned;
    default: every operation of the adapter)."""
    operations = adapter.operations
    used = [operations[name] for name in (operations_used or operations) if name in operations]
    plan = Plan(adapter.vendor, tuple(op.name for op in used), items=[] if keep_items else None)
    for declared in used:
        if declared.destructive_options:
            plan.options.update(declared.destructive_options)
    judge = IntakeFilter(operations, journal).judge  # the job's own intake rules
    open_chunks: dict[tuple[str, Target], _OpenChunk] = {}
    calls: Counter[str] = Counter()
    sample_of: dict[str, tuple[Operation, Target, list[str]]] = {}
    for raw in items:
        plan.rows += 1
        index, item, op, ended, _, replayed = judge(raw)
        if replayed and ended is not None:
            plan.counts[f"already {ended.outcome.value}"] += 1
            continue
        if ended is not None and ended.outcome is Outcome.REJECTED:
            plan.counts[Outcome.REJECTED.value] += 1
            problem = ended.message
            if len(plan.first_problems) < max_problems:
                row = item.meta.get("row") if item.meta else None
                where = "" if problem and problem.startswith("row ") else (
                    f"row {row}: " if row is not None else f"item {index + 1}: ")
                plan.first_problems.append(where + (problem or "rejected"))
            continue
        if ended is not None:
            plan.counts[ended.outcome.value] += 1
            continue
        assert op is not None
        plan.to_send += 1
        plan.per_target[(op.name, item.target)] += 1
        if plan.items is not None:
            plan.items.append(item)
        _count_calls(op, item, open_chunks, calls, adapter)
        sample = sample_of.get(op.endpoint)
        if sample is None:
            sample_of[op.endpoint] = (op, item.target, [item.subject])
        elif sample[1] == item.target and len(sample[2]) < SAMPLE_SUBJECTS:
            sample[2].append(item.subject)
    for (name, _), chunk in open_chunks.items():
        if chunk.items:
            calls[operations[name].endpoint] += 1
    for endpoint in dict.fromkeys([*(declared.endpoint for declared in used), *calls]):
        plan.calls[endpoint] = calls[endpoint]
        plan.seconds[endpoint] = adapter.endpoints[endpoint].least_seconds_for(calls[endpoint])
        plan.limits[endpoint] = _limits_in_words(adapter, endpoint)
        if not adapter.endpoints[endpoint].in_daily_budget:
            plan.outside_budget.add(endpoint)
    for endpoint, (sample_op, target, subjects) in sample_of.items():
        plan.samples[endpoint] = sample_op.build_request(target, subjects)
        plan.sample_sizes[endpoint] = sample_op.max_items
    return plan


def _count_calls(op: Operation, item: Item, open_chunks: dict[tuple[str, Target], _OpenChunk],
                 calls: Counter[str], adapter: Adapter) -> None:
    """Fill the target's open chunk as the chunker does; a full one is a call."""
    chunk = open_chunks.get((op.name, item.target))
    size = 0 if op.max_request_bytes is None else op.item_bytes(item.subject)
    if chunk is not None and (chunk.items >= op.max_items or (
            op.max_request_bytes is not None and chunk.nbytes + size > op.max_request_bytes)):
        calls[op.endpoint] += 1
        chunk = None
    if chunk is None:
        base = 0 if op.max_request_bytes is None else op.base_bytes(item.target)
        chunk = open_chunks[(op.name, item.target)] = _OpenChunk(0, base)
    chunk.items += 1
    chunk.nbytes += size


# -- showing it -------------------------------------------------------------------------------


def mask(text: str, secrets: Iterable[Secret]) -> str:
    """``text`` with each secret masked as it may appear in a request: raw, XML-escaped,
    URL-encoded; then every other known secret value too."""
    for secret in secrets:
        value = secret.reveal()
        if len(value) < 1:
            continue
        for form in {value, escape(value, {'"': "&quot;", "'": "&apos;"}), quote(value, safe=""), quote_plus(value)}:
            text = text.replace(form, MASK)
    return scrub(text)


def _cut(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_request(request: HttpRequest, base_url: str, secrets: Iterable[Secret] = ()) -> str:
    """A request as an admin would read it, credentials masked. (Auth headers are added
    by the transport and are never part of an :class:`HttpRequest`.)"""
    url = base_url.rstrip("/") + request.path
    if request.params:
        url += "?" + urlencode(list(request.params))
    lines = [f"{request.method} {url}"]
    if request.form is not None:
        for name, value in request.form:
            lines.append(f"  form {name}={_cut(value)}")
    if request.json is not None:
        lines.append(f"  json {_cut(json.dumps(request.json))}")
    return mask("\n".join(lines), list(secrets))


def _count(n: int, word: str) -> str:
    """``1 row``, ``2,000 rows``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def describe(plan: Plan, *, source: str, base_url: str, secrets: Sequence[Secret] = (),
             max_targets: int = 10) -> str:
    """The plan in words, for the terminal."""
    out = [f"plan: {plan.vendor} {'/'.join(plan.operations)}, {_count(plan.rows, 'row')} in {source}"]
    out.append(f"  {'to send':<24}{plan.to_send:>10,}")
    for name, n in sorted(plan.counts.items()):
        out.append(f"  {name:<24}{n:>10,}")
    for problem in plan.first_problems:
        out.append(f"    e.g. {_cut(problem, 160)}")
    if plan.per_target:
        out.append(f"  targets: {len(plan.per_target):,}")
        for (operation, target), n in plan.per_target.most_common(max_targets):
            out.append(f"    {operation} {'/'.join(target)}: {_count(n, 'item')}")
        if len(plan.per_target) > max_targets:
            out.append(f"    ... and {len(plan.per_target) - max_targets:,} more targets")
    for endpoint, calls in plan.calls.items():
        out.append(f"  endpoint {endpoint}: at least {_calls_in_words(calls)}, at least "
                   f"{format_duration(plan.seconds[endpoint])} at {plan.limits[endpoint]}")
    if plan.daily_calls is not None:
        counted = [e for e in plan.calls if e not in plan.outside_budget]
        scope = "all its APIs" if not plan.outside_budget else "not counting " + ", ".join(sorted(plan.outside_budget))
        one = plan.budget_calls == 1
        spent = (("this " if one else "these ") + _calls_in_words(plan.budget_calls)
                 + ("" if len(counted) < 2 else f" ({' + '.join(counted)})"))
        out.append(f"  daily budget: {_calls_in_words(plan.daily_calls)} a day for the tenant ({scope}, every run): "
                   + (f"{spent} span {plan.days:,} days" if plan.days > 1 else
                      f"{spent} {'fits' if one else 'fit'} in one day, if other runs leave room"))
    least = plan.least_seconds
    out.append(f"  the limits allow it in no less than {format_duration(least)}"
               + (" (it fits in one window)" if least == 0 and plan.total_calls else ""))
    if plan.options:
        flags = ", ".join(f"{name}={'ON' if on else 'off'}" for name, on in plan.options.items())
        out.append(f"  destructive options: {flags}")
    for endpoint, request in plan.samples.items():
        out.append(f"  sample request on {endpoint} (a full call carries up to {plan.sample_sizes[endpoint]:,} items):")
        out.extend("    " + line for line in render_request(request, base_url, secrets).splitlines())
    return "\n".join(out)
