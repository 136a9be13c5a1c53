"""The command line's shared quota: each windowed endpoint's limiter becomes a
:class:`~unenroll.limits.quota.SharedWindowLimiter` on the store ``--quota`` names, keyed by
what the vendor counts (vendor, tenant = the base URL's scheme://host[:port], limit group).

Endpoints that share one limiter (the adapter made the same object for them: the vendor
counts per IP or tenant) share one group; endpoints with no documented window, or with
the adapter's own limiter (one that learns an undocumented rate), keep theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import anyio

from unenroll.contract.declarations import EndpointSpec
from unenroll.contract.settings import ConfigError
from unenroll.limits.budget import DAY, DAY_GROUP, BudgetedLimiter
from unenroll.limits.quota import QuotaKey, QuotaStore, SharedWindowLimiter, WindowRule
from unenroll.limits.window import CallLimiter, RollingWindowLimiter

_DEFAULT_PORTS = {"http": 80, "https": 443}


def tenant_of(base_url: str) -> str:
    """``scheme://host[:port]``, lower case, the scheme's default port left out."""
    parts = urlsplit(base_url.strip())
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    return f"{scheme}://{host}" if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{scheme}://{host}:{port}"


async def open_quota_store(kind: str, where: str | None) -> QuotaStore:
    """The store ``--quota`` names; a :class:`ConfigError` the admin can act on if it cannot be opened."""
    if kind == "redis" and where is not None:
        try:
            from unenroll.limits.redis_quota import RedisQuotaStore
        except ImportError:
            raise ConfigError("--quota redis://... needs the redis extra: pip install 'unenroll[redis]'") from None
        return RedisQuotaStore(where)  # type: ignore[no-any-return,unused-ignore]
    from unenroll.limits.sqlite_quota import SqliteQuotaStore

    path = Path(where or "")
    try:
        return await anyio.to_thread.run_sync(SqliteQuotaStore, path)
    except OSError as exc:
        raise ConfigError(f"--quota: cannot open the quota file {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # sqlite3.Error: not a database, locked for good
        raise ConfigError(f"--quota: cannot use the quota file {path} ({exc}); give another with --quota") from None


def shared_endpoints(vendor: str, base_url: str, specs: Mapping[str, EndpointSpec], store: QuotaStore, *,
                     call_timeout: float, daily_calls: int | None = None,
                     day: float = DAY) -> tuple[dict[str, EndpointSpec], list[SharedWindowLimiter]]:
    """``specs`` whose windowed endpoints make shared limiters (see the module docstring), and
    those limiters, to be entered (``async with``) around the job. With ``daily_calls``,
    every endpoint of the tenant the adapter declares ``in_daily_budget`` also draws on one
    daily budget (key group ``day``, a window of ``day`` seconds), the last of the limiters
    returned."""
    groups: dict[int, list[str]] = {}  # the identity of the limiter an endpoint makes -> its endpoints
    alive: list[CallLimiter] = []  # each made limiter kept until grouping is done: an id is unique only while alive
    for name, spec in specs.items():
        if spec.max_calls is None:
            continue
        made: CallLimiter = spec.make_limiter()
        alive.append(made)
        if spec.limiter_factory is not None and not isinstance(made, RollingWindowLimiter):
            continue  # the adapter's own kind of limiter
        groups.setdefault(id(made), []).append(name)
    shared = dict(specs)
    limiters: list[SharedWindowLimiter] = []
    tenant = tenant_of(base_url)
    for names in groups.values():
        first = specs[names[0]]
        assert first.max_calls is not None
        rule = WindowRule(first.max_calls, first.window, first.margin, first.min_interval)
        group = names[0] if len(names) == 1 else "+".join(sorted(names))
        limiter = SharedWindowLimiter(store, QuotaKey(vendor, tenant, group), [rule], call_timeout)
        limiters.append(limiter)
        for name in names:
            shared[name] = replace(specs[name], limiter_factory=_always(limiter))
    if daily_calls is not None:
        budget = SharedWindowLimiter(store, QuotaKey(vendor, tenant, DAY_GROUP), [WindowRule(daily_calls, day)],
                                     call_timeout)
        limiters.append(budget)
        shared = {name: replace(spec, limiter_factory=_within_budget(spec, budget)) if spec.in_daily_budget else spec
                  for name, spec in shared.items()}
    return shared, limiters


def _within_budget(spec: EndpointSpec, budget: SharedWindowLimiter) -> Callable[[EndpointSpec], CallLimiter]:
    """A limiter factory whose limiters are ``spec``'s, also drawing on ``budget``; a shared
    limiter stays one object (its wrapper too), so a backup and the job still share it."""
    made: list[BudgetedLimiter] = []  # each wrapper keeps its inner limiter alive: identities stay unique

    def factory(_: EndpointSpec) -> CallLimiter:
        inner = spec.make_limiter()
        for wrapper in made:
            if wrapper.inner is inner:
                return wrapper
        made.append(BudgetedLimiter(inner, budget))
        return made[-1]

    return factory


def _always(limiter: CallLimiter) -> Callable[[EndpointSpec], CallLimiter]:
    """A limiter factory that hands out ``limiter`` every time (a backup and the job after it share it)."""
    return lambda spec: limiter
