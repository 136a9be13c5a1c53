"""The values that cross the engine: items in, outcomes out, and what an adapter reads
from one vendor answer.

Invariant kept by the pipeline (see ``ledger.py``): every item taken from the input ends
in exactly one :class:`ItemOutcome`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Outcome(enum.StrEnum):
    """How an item ended. Exactly one per input item."""

    # done: the operation's success (each operation names which one it reports)
    UNENROLLED = "unenrolled"
    SHARED = "shared"
    QUEUED = "queued"  # accepted into a vendor's processing queue, done later
    # already in the wanted state: not an error
    NOT_ENROLLED = "not_enrolled"
    # never sent
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    NOT_SENT = "not_sent"  # the job stopped (cancelled, fatal vendor error) before it was done
    # sent, and it did not work
    FAILED = "failed"  # permanent: the vendor's code and message say why
    GAVE_UP = "gave_up"  # retryable failures until the retry budget ran out

    @property
    def is_done(self) -> bool:
        return self in _DONE

    @property
    def is_success(self) -> bool:
        """The wanted state was reached (done, or it already held)."""
        return self in _DONE or self is Outcome.NOT_ENROLLED


_DONE = frozenset({Outcome.UNENROLLED, Outcome.SHARED, Outcome.QUEUED})


class Item(NamedTuple):
    """One unit of work: do ``operation`` to ``subject`` within ``target``.

    ``target`` is the tuple of ids the vendor groups a call by (e.g. a course and
    a batch, or a kind and an id). ``meta`` is the caller's own data and comes back
    untouched with the item's outcome.
    """

    operation: str
    target: tuple[str, ...]
    subject: str
    meta: Mapping[str, Any] | None = None


class Unreadable(NamedTuple):
    """An input record that could not be read as an item (a CSV row with a bad encoding,
    a JSONL line that is not JSON). Put it in the input where the item would have been:
    the engine ends it ``rejected`` with ``reason``, so the row is still accounted for."""

    reason: str
    text: str | bytes = ""  # what can be shown of the raw record (bytes are shown escaped)
    meta: Mapping[str, Any] | None = None


@dataclass(slots=True)
class ItemOutcome:
    """The final word on one input item. ``index`` is its 0-based position in the input.

    Treat it as a value. (Not ``frozen``: a frozen dataclass costs three times as much to
    build, and a big job builds one per item.)"""

    index: int
    item: Item
    outcome: Outcome
    code: str | None = None
    message: str | None = None
    attempts: int = 0

    def as_record(self) -> dict[str, Any]:
        """A flat dict for JSONL/CSV results files."""
        return {
            "index": self.index,
            "operation": self.item.operation,
            "target": "/".join(self.item.target),
            "subject": self.item.subject,
            "outcome": self.outcome.value,
            "code": self.code,
            "message": self.message,
            "attempts": self.attempts,
            "meta": dict(self.item.meta) if self.item.meta else None,
        }


class ItemVerdict(enum.Enum):
    """What an answer says about one item of a call."""

    FINAL = "final"  # the outcome is known and final
    RETRY = "retry"  # transient, or missing from the answer: send it again


@dataclass(frozen=True, slots=True)
class ItemResult:
    verdict: ItemVerdict
    outcome: Outcome | None = None
    code: str | None = None
    message: str | None = None

    @staticmethod
    def final(outcome: Outcome, code: str | None = None, message: str | None = None) -> ItemResult:
        return ItemResult(ItemVerdict.FINAL, outcome, code, message)

    @staticmethod
    def retry(code: str | None = None, message: str | None = None) -> ItemResult:
        return ItemResult(ItemVerdict.RETRY, None, code, message)


class CallVerdict(enum.Enum):
    """What an answer says about the call as a whole; the engine acts on it."""

    ANSWERED = "answered"  # per-item results follow
    RETRY = "retry"  # transient (5xx, timeout, dropped connection, malformed body)
    THROTTLED = "throttled"  # the vendor locked or throttled the endpoint: pause, then retry
    SPLIT = "split"  # the call was refused for its content: bisect to isolate bad items
    TOO_LARGE = "too_large"  # over a cap we did not know: halve the endpoint's chunk size
    AUTH_EXPIRED = "auth_expired"  # refresh credentials once and re-send
    FAILED = "failed"  # every item of this call failed permanently (e.g. unknown course)
    FATAL = "fatal"  # no retry can fix it (no permission, bad keys): stop the job


@dataclass(frozen=True, slots=True)
class CallResult:
    """An adapter's reading of one vendor answer.

    For ``ANSWERED``, ``items`` is aligned with the subjects that were sent.
    """

    verdict: CallVerdict
    items: Sequence[ItemResult] = field(default_factory=tuple)
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None  # seconds, for THROTTLED

    @staticmethod
    def answered(items: Sequence[ItemResult]) -> CallResult:
        return CallResult(CallVerdict.ANSWERED, items)

    @staticmethod
    def whole(
        verdict: CallVerdict,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> CallResult:
        return CallResult(verdict, (), code, message, retry_after)


@dataclass(slots=True, eq=False)
class Work:
    """An item on its way through the pipeline, with what happened to it so far."""

    index: int
    item: Item
    sends: int = 0
    failures: int = 0  # transient failures (5xx, timeouts, malformed answers)
    throttles: int = 0  # lock / 429 answers to a call that carried it
    first_sent_at: float | None = None
    last_code: str | None = None
    last_message: str | None = None
    answer_lost: bool = False  # a send got no readable answer: it may have taken effect
