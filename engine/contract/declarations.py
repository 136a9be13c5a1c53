"""What an adapter declares, and the engine reads. The engine knows no vendor.

An adapter is:

- :class:`EndpointSpec` per endpoint: the documented limits (calls per window, lock
  period, calls in flight), each a setting;
- :class:`Operation` per operation: which endpoint it uses, its caps, and pure functions
  to validate an item, size a request, build it, and read the vendor's answer into
  per-item results;
- a transport and credentials (see ``transport.py`` and ``auth.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from unenroll.limits.window import CallLimiter, RollingWindowLimiter, UnlimitedLimiter
from unenroll.model import CallResult, Item, ItemResult, Outcome
from unenroll.wire.auth import Auth
from unenroll.wire.http import HttpRequest, HttpResponse, Transport


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """Limits of one vendor endpoint. ``max_calls`` ``None`` means none is documented."""

    name: str
    max_calls: int | None = None
    window: float = 60.0
    lock_period: float = 60.0  # pause when the vendor locks us without saying for how long
    min_interval: float = 0.0
    margin: float = 0.0  # extra window on our side for network jitter
    max_in_flight: int = 1
    # an adapter's own limiter (e.g. one that learns an undocumented rate from 429s)
    limiter_factory: Callable[[EndpointSpec], CallLimiter] | None = None
    # whether the vendor's daily cap per tenant counts this endpoint's calls: the adapter says, from the
    # vendor's documentation; the engine applies the admin's daily_calls to these endpoints only
    in_daily_budget: bool = True

    def scaled(self, time_scale: float) -> EndpointSpec:
        """Every duration multiplied by ``time_scale`` (0.01: a minute becomes 0.6 s)."""
        return replace(
            self,
            window=self.window * time_scale,
            lock_period=self.lock_period * time_scale,
            min_interval=self.min_interval * time_scale,
            margin=self.margin * time_scale,
        )

    def pause_for(self, retry_after: float | None, max_pause: float) -> float:
        """Seconds to pause this endpoint after a throttle: the vendor's word, at most
        ``max_pause`` (an ``inf`` or a billion seconds never hangs a job); without a usable
        word (none, negative, NaN, not a number) the endpoint's own ``lock_period``, also at most ``max_pause``."""
        if not isinstance(retry_after, int | float) or not retry_after >= 0:  # NaN fails >=
            return min(self.lock_period, max_pause)
        return min(float(retry_after), max_pause)

    def make_limiter(self) -> CallLimiter:
        if self.limiter_factory is not None:
            return self.limiter_factory(self)
        if self.max_calls is None:
            return UnlimitedLimiter()
        return RollingWindowLimiter(
            self.max_calls, self.window, min_interval=self.min_interval, margin=self.margin
        )

    def least_seconds_for(self, calls: int) -> float:
        """The least time these limits allow for ``calls`` calls (0 if unlimited)."""
        if self.max_calls is None or calls <= 0:
            return 0.0
        by_window = ((calls - 1) // self.max_calls) * self.window
        by_interval = (calls - 1) * self.min_interval
        return max(by_window, by_interval)


def sharing_one_limiter(specs: Mapping[str, EndpointSpec]) -> dict[str, EndpointSpec]:
    """The same endpoints, all drawing on one limiter (made from the first spec, once): for
    a vendor that counts calls per IP or per tenant rather than per endpoint. Every job and
    backup that makes a limiter from these specs gets that one, so a backup's reads and the
    job after it share one window."""
    first = next(iter(specs.values()))
    shared: list[CallLimiter] = []

    def one_limiter(spec: EndpointSpec) -> CallLimiter:
        if not shared:
            shared.append(replace(first, limiter_factory=None).make_limiter())
        return shared[0]

    return {name: replace(spec, limiter_factory=one_limiter) for name, spec in specs.items()}


def _no_problem(item: Item) -> str | None:
    return None


def _zero_bytes(value: object) -> int:
    return 0


@dataclass(frozen=True, slots=True)
class Operation:
    """One vendor operation, declared.

    ``validate`` returns why an item cannot be sent, or ``None``. ``base_bytes`` and
    ``item_bytes`` measure the request the way its cap counts (e.g. a URL's length), so the
    chunker can keep ``base + sum(item) <= max_request_bytes`` without building requests.
    ``build_request`` and ``read_response`` are pure: the same chunk gives the same
    request, the same answer gives the same results.
    """

    name: str
    endpoint: str
    done: Outcome
    max_items: int
    build_request: Callable[[tuple[str, ...], Sequence[str]], HttpRequest]
    read_response: Callable[[tuple[str, ...], Sequence[str], HttpResponse], CallResult]
    validate: Callable[[Item], str | None] = _no_problem
    max_request_bytes: int | None = None
    base_bytes: Callable[[tuple[str, ...]], int] = _zero_bytes
    item_bytes: Callable[[str], int] = _zero_bytes
    destructive_options: Mapping[str, bool] | None = None  # recorded in the report


class Adapter(Protocol):
    """A configured vendor client: declarations plus the wire."""

    @property
    def vendor(self) -> str: ...
    @property
    def operations(self) -> Mapping[str, Operation]: ...
    @property
    def endpoints(self) -> Mapping[str, EndpointSpec]: ...
    @property
    def transport(self) -> Transport: ...
    @property
    def auth(self) -> Auth: ...


# -- reads, for backups ------------------------------------------------------------------------

Target = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadPage:
    """One answer of a read: the records of targeted subjects it holds, and whether
    another page follows."""

    records: Mapping[str, Mapping[str, Any]]  # subject -> the vendor's record
    more: bool
    # a whole-target read: how many enrolments this page listed (targeted or not), which
    # counts what the target holds for the change threshold (``planning/threshold.py``)
    listed: int | None = None


@dataclass(frozen=True, slots=True)
class EnrolmentReader:
    """How one operation's targets are read, declared by the adapter.

    ``max_subjects`` is how many subjects one read filters on (its pages are followed to
    the end); ``None`` means the read lists the whole target and every subject is picked
    from its pages. ``plan_calls(target, n_items)`` is the calls reading ``n_items`` of a
    target costs: exact, or a lower bound when ``plan_is_exact`` is false (the target's
    size is only known by reading it), ``plan_note`` then says why. ``build_page`` and
    ``read_page`` are pure; pages count from 0.
    """

    endpoint: str
    build_page: Callable[[Target, Sequence[str], int], HttpRequest]
    read_page: Callable[[Target, Sequence[str], HttpResponse], ReadPage | CallResult]
    plan_calls: Callable[[Target, int], int]
    max_subjects: int | None = None
    plan_is_exact: bool = True
    plan_note: str | None = None
    # given a subject's backup record (None: the read did not list it), its final result
    # when the read alone shows the item needs no change; see :func:`reconcile_refusals`
    settled: Callable[[Mapping[str, Any] | None], ItemResult | None] | None = None
    # a cheap count of what a target holds, in one call (e.g. a list's ``total_count``), for
    # the change threshold where the pages of a read do not count the target
    build_count: Callable[[Target], HttpRequest] | None = None
    read_count: Callable[[Target, HttpResponse], int | CallResult] | None = None
