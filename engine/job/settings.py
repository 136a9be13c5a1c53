"""A job's own knobs, as a value: what is not a vendor's limit (those live on the adapter).

It is the one owner of every retry budget, for jobs and backups alike: its
:class:`~unenroll.job.retry.RetryPolicy` decides how many sends a unit of work gets (an
item of a job, a page of a backup, a token fetch), until when, and the backoff between
them; ``max_throttles`` how many throttles one unit may meet; ``max_pause`` how long one
throttle may pause an endpoint. The job's verdicts (``verdicts.py``), the call path
(``calls.py``) and the backup (``planning/backup.py``) ask it and count nothing against
limits of their own; re-sends that fix the request (a bisect, a halving, the one re-send
after a token refresh) spend no attempt and are bounded on their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from unenroll.job.breaker import BreakerSettings
from unenroll.job.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class JobSettings:
    """Knobs of a job that are not a vendor's limits (those live on the adapter)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_throttles: int = 10  # lock/429 answers one item may meet before it gives up
    max_buffered_items: int = 20_000  # per endpoint: the intake waits above this
    linger: float = 0.25  # seconds a partial chunk waits for more items while input flows
    max_chunk_wait: float = 30.0  # a partial chunk this old goes before fuller ones (rare targets)
    outcome_buffer: int = 1_000  # outcomes held for a slow stream consumer
    seed: int | None = None  # for backoff jitter
    stop_grace: float = 30.0  # seconds a stopping job waits for a stream reader to take what is left
    max_pause: float = 3600.0  # the longest a vendor's Retry-After may pause an endpoint (vendor time)
    # the circuit breaker (job/breaker.py): None (the library's default) switches it off; the command
    # line turns it on with BreakerSettings' defaults
    breaker: BreakerSettings | None = None

    def __post_init__(self) -> None:
        if self.max_buffered_items < 1 or self.outcome_buffer < 1:
            raise ValueError("max_buffered_items and outcome_buffer must be at least 1")
        if self.linger < 0 or self.max_throttles < 0 or self.stop_grace < 0 or self.max_chunk_wait < 0:
            raise ValueError("linger, max_chunk_wait, max_throttles and stop_grace cannot be negative")
        if not 0.0 < self.max_pause < math.inf:  # NaN fails too
            raise ValueError("max_pause must be a number of seconds above 0")

    def may_meet_another_throttle(self, throttles: int) -> bool:
        """Whether a unit of work that met ``throttles`` throttles may be sent again: it
        meets at most ``max_throttles`` of them."""
        return throttles < self.max_throttles

    def scaled(self, time_scale: float) -> JobSettings:
        """The durations that stand for vendor time (the retry policy, ``max_pause``)
        multiplied by ``time_scale``, as ``EndpointSpec.scaled`` does the vendor's limits;
        ``linger``, ``max_chunk_wait`` and ``stop_grace`` are our own and stay."""
        return replace(self, retry=self.retry.scaled(time_scale), max_pause=self.max_pause * time_scale)
