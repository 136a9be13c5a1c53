"""A tenant's daily budget on top of an endpoint's own limiter.

Some vendors cap calls per organisation per day across all their APIs (one documents 250
calls per user licence, up to 25,000 a day by edition), beside each API's own window.
The budget is one :class:`~unenroll.limits.quota.SharedWindowLimiter` per tenant, keyed
``(vendor, tenant, "day")`` with one rule (``daily_calls`` per day), shared by every
endpoint of the tenant and, through the quota store, by every process.

:class:`BudgetedLimiter` asks the endpoint's limiter first and the budget second, and
only when both grant does the call start. Invariant: **a call starts only with a slot of
both, taken at the same moment**, so the budget's record never holds a start earlier than
the call's real start (its crash rule, ``start + call_timeout``, stays the latest the call
could reach the vendor). When the budget refuses, the endpoint's slot just taken is handed
back at once (it counts as a call that ended immediately: conservative, never over), and
the limiter sleeps until the budget says to ask again. Before taking an endpoint slot it
*peeks* at the budget (records nothing), so a spent budget is waited out without taking
any: a slot is handed back only when another participant took the budget's last slot
between the peek and the ask.
"""

from __future__ import annotations

import anyio

from unenroll.limits.quota import SharedPermit, SharedWindowLimiter
from unenroll.limits.window import CallLimiter, Permit

DAY = 86400.0


DAY_GROUP = "day"  # the key group of a tenant's daily budget in the quota store

class BudgetedPermit(Permit):
    """A call's slots in the endpoint's limiter and in the tenant's budget."""

    __slots__ = ("budget", "inner")

    def __init__(self, inner: Permit, budget: SharedPermit) -> None:
        super().__init__(inner.start)
        self.inner = inner
        self.budget = budget


class BudgetedLimiter:
    """``inner`` (an endpoint's limiter) and ``budget`` (the tenant's daily budget) together;
    see the module docstring for the invariant."""

    def __init__(self, inner: CallLimiter, budget: SharedWindowLimiter) -> None:
        self.inner = inner
        self.budget = budget
        self._turn = anyio.Lock()

    def __repr__(self) -> str:
        return f"BudgetedLimiter({self.inner!r}, budget={self.budget!r})"

    async def acquire(self) -> Permit:
        async with self._turn:
            while True:
                if (until_budget := await self.budget.peek()) > 0:  # spent: wait without taking anything
                    await anyio.sleep(until_budget)
                    continue
                permit = await self.inner.acquire()
                try:
                    granted, wait = await self.budget.try_once()
                except BaseException:  # cancelled while asking: the ask may have left a place in line
                    self.inner.done(permit)
                    await self.budget.withdraw()
                    raise
                if granted is not None:
                    return BudgetedPermit(permit, granted)
                self.inner.done(permit)  # another run took the budget's slot: this call does not start
                try:
                    await anyio.sleep(max(wait, 0.001))
                except BaseException:
                    await self.budget.withdraw()
                    raise

    def done(self, permit: Permit) -> None:
        if isinstance(permit, BudgetedPermit):
            permit.end = permit.start
            self.inner.done(permit.inner)
            self.budget.done(permit.budget)
        else:
            self.inner.done(permit)

    def observe(self, permit: Permit, *how: object) -> None:
        """Passed on to an endpoint limiter that learns from each answer (``observe``)."""
        observe = getattr(self.inner, "observe", None)
        if observe is not None:
            observe(permit.inner if isinstance(permit, BudgetedPermit) else permit, *how)

    def pause(self, seconds: float) -> None:
        """A vendor's pause is the endpoint's (a lock, a 429); the daily budget keeps its own count."""
        self.inner.pause(seconds)

    def seconds_until_free(self) -> float | None:
        """The later of the endpoint's and the budget's waits, where both can tell."""
        inner = getattr(self.inner, "seconds_until_free", None)
        waits = [inner() if inner is not None else None, self.budget.seconds_until_free()]
        return None if None in waits else max(w for w in waits if w is not None)
