"""Acting on one call's result: which items end, which go again, and how.

Invariants of :meth:`Verdicts.act` (it never waits):

- each item of the chunk either ends once (in the ledger) or goes back to its endpoint's
  buffer once, never both; only a ``FATAL`` answer leaves them open (the job stops and
  ends them ``not_sent``);
- after an answer read in full, only the items whose own result is not final go again:
  an item the vendor settled is never sent twice;
- a whole call refused for one of its items (``SPLIT``) is bisected into pinned halves,
  so the bad item ends ``failed`` alone; ``TOO_LARGE`` halves the endpoint's cap, never
  below a size that was answered (a refused call of that size is an item's fault, so it
  is bisected instead);
- a transient failure (``RETRY``, and a 401 right after a refresh) spends an attempt of
  each item and waits the backoff; a throttle spends none but counts toward
  ``max_throttles``: the budget is the job's :class:`~unenroll.job.settings.JobSettings`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from unenroll.accounts.ledger import Ledger
from unenroll.contract.declarations import Operation
from unenroll.job.endpoint import Endpoint
from unenroll.job.queue import Chunk
from unenroll.job.settings import JobSettings
from unenroll.model import CallResult, CallVerdict, ItemOutcome, ItemVerdict, Outcome, Work
from unenroll.observe.secrets import scrub
from unenroll.wire.http import HttpResponse


def chunk_reader(op: Operation, target: tuple[str, ...],
                 subjects: Sequence[str]) -> Callable[[HttpResponse], CallResult]:
    """The operation's reading of an answer, checked: an answer that does not cover every
    item of the call, one each, is unreadable (retried)."""

    def read(response: HttpResponse) -> CallResult:
        result = op.read_response(target, subjects, response)
        if result.verdict is CallVerdict.ANSWERED and len(result.items) != len(subjects):
            return CallResult.whole(CallVerdict.RETRY, "unreadable",
                                    f"the answer covered {len(result.items)} of {len(subjects)} items")
        return result

    return read


Ending = Callable[[Work, Outcome, str | None, str | None], None]


class Verdicts:
    """A job's way of acting on call results (see the module docstring)."""

    def __init__(self, ledger: Ledger, settings: JobSettings, rng: random.Random, stop: Callable[[str], None]) -> None:
        self._ledger = ledger
        self._settings = settings
        self._rng = rng
        self._stop = stop

    def act(self, ep: Endpoint, chunk: Chunk, result: CallResult, answer_lost: bool, log: Any) -> list[ItemOutcome]:
        """Turn one call's result into outcomes (returned) and re-queued items."""
        op, works, verdict = chunk.operation, chunk.works, result.verdict
        now = anyio.current_time()
        ended: list[ItemOutcome] = []

        def end(w: Work, outcome: Outcome, code: str | None, message: str | None) -> None:
            if outcome is Outcome.NOT_ENROLLED and w.answer_lost:
                message = (message or "") + " (an earlier send's answer was lost; it may have done this)"
            ended.append(self._ledger.end(w, outcome, code, message))
            ep.open_items -= 1

        if verdict is CallVerdict.TOO_LARGE and len(works) <= ep.largest_answered:
            verdict = CallVerdict.SPLIT  # calls this size were answered: an item is refused, not the size
        if verdict is CallVerdict.ANSWERED:
            ep.largest_answered = max(ep.largest_answered, len(works))
            retry: list[Work] = []
            for w, r in zip(works, result.items, strict=True):
                if r.verdict is ItemVerdict.FINAL and r.outcome is not None:
                    end(w, r.outcome, r.code, r.message)
                else:
                    w.last_code, w.last_message = r.code, r.message
                    retry.append(w)
            if retry:
                self._retry_later(ep, op, retry, None, None, now, end)
        elif verdict is CallVerdict.RETRY or verdict is CallVerdict.AUTH_EXPIRED:
            # AUTH_EXPIRED here: refused again right after a refresh (the refresh may not have
            # reached every server yet): an attempt spent; the next attempt may refresh once more
            ep.stats.retried_calls += 1
            for w in works:
                w.answer_lost = w.answer_lost or answer_lost
            self._retry_later(ep, op, works, result.code, result.message, now, end)
        elif verdict is CallVerdict.THROTTLED:  # the endpoint was paused when the answer was read
            again = []
            for w in works:
                w.throttles += 1
                if not self._settings.may_meet_another_throttle(w.throttles):
                    end(w, Outcome.GAVE_UP, result.code, f"throttled {w.throttles} times: {result.message}")
                else:
                    again.append(w)
            if again:
                ep.buffer.put_pinned(op, chunk.target, again, now)
        elif verdict in (CallVerdict.SPLIT, CallVerdict.TOO_LARGE) and len(works) > 1:
            half = (len(works) + 1) // 2
            if verdict is CallVerdict.TOO_LARGE:
                # by the refused size (calls in flight together halve once), never below a size
                # that was answered
                new_cap = max(1, len(works) // 2, ep.largest_answered)
                if new_cap < ep.buffer.cap_items:
                    ep.buffer.cap_items = new_cap
                    ep.stats.cap_halvings += 1
                    log.warning("endpoint.cap_halved", cap_items=new_cap, code=result.code)
            else:
                ep.stats.splits += 1
                log.info("chunk.split", code=result.code, message=result.message)
            ep.buffer.put_pinned(op, chunk.target, works[half:], now)
            ep.buffer.put_pinned(op, chunk.target, works[:half], now)
        elif verdict is CallVerdict.FATAL:
            self._stop(scrub(f"{result.code}: {result.message}"))
        else:  # FAILED, or a refused single item
            for w in works:
                end(w, Outcome.FAILED, result.code, result.message)
        return ended

    def _retry_later(self, ep: Endpoint, op: Operation, works: Sequence[Work], code: str | None,
                     message: str | None, now: float, end: Ending) -> None:
        """One failure more for each item: back in the buffer after the backoff, or
        ``gave_up`` when the retry policy allows it no further send."""
        policy = self._settings.retry
        delay = policy.backoff(max(w.failures for w in works) + 1, self._rng)
        for w in works:
            w.failures += 1
            if w.failures == 1:
                self._ledger.report.retried_items += 1
            if code is not None or message is not None:
                w.last_code, w.last_message = code, message
            assert w.first_sent_at is not None
            if policy.may_retry(w.failures, w.first_sent_at, now + delay):  # as of the re-send
                ep.buffer.put_later(op, w, now + delay)
            else:
                end(w, Outcome.GAVE_UP, w.last_code, f"gave up after {w.sends} sends: {w.last_message}")
