"""Taking input items in: the one filter the job and the plan share, and the job's reading
of its input.

:class:`IntakeFilter` judges each raw input item once, in input order, into exactly one of:
confirmed by the journal from an earlier run (``replayed``: never sent again), rejected
(not an :class:`Item`, an :class:`Unreadable`, a problem by the operation's own rules,
unhashable fields), a duplicate of an item judged earlier, or to be sent through its
operation. Integer ids (from a database, pandas, numpy: any ``numbers.Integral`` but
``bool``) in the subject or target are taken as their decimal text first, so ``7`` and
``"7"`` are the same item. An :class:`Item` naming an operation the adapter does not have
is a mistake in the calling code, not in one row: it raises :class:`UnknownOperation`.
The filter never waits and keeps one integer per distinct item (and a small cache per
target). :func:`~unenroll.planning.plan.make_plan` and the job use it alike, so the plan
counts what the job will do.

:class:`Intake` is the job's side: each item is opened in the ledger as it is taken in,
then ended at once by the filter's verdict or handed on to be routed. Invariant: every
item read from the input is opened exactly once (but the one that raises
:class:`UnknownOperation`: the job stops there and raises it). A sync input is read in batches (one
async step per batch); when the job stops before the input was all read, :meth:`Intake.drain`
takes a finite input (``Sized``, not async) in to its end by the same rules, so the
report covers the whole input; a stream or any other iterable is not read further (it
may be unbounded, or have side effects), and ``read_all`` stays False.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sized
from numbers import Integral
from typing import Any, NamedTuple

from unenroll.accounts.journal import Journal, Recalled
from unenroll.accounts.ledger import Ledger
from unenroll.contract.declarations import Operation
from unenroll.job.queue import Work
from unenroll.model import Item, ItemOutcome, Outcome, Unreadable
from unenroll.observe.secrets import scrub

Items = Iterable[Any] | AsyncIterable[Any]
Target = tuple[str, ...]
BATCH = 256  # items of a sync input read per async step


class UnknownOperation(ValueError):
    """An item names an operation the adapter does not have (raised when it is taken in)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown operation {name!r}: the adapter's operations are {', '.join(map(repr, known))}")
        self.operation = name


def _is_integer(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def with_text_ids(item: Item) -> Item:
    """``item`` with each integer id of its subject and target as its decimal text (the
    same object when there is none)."""
    subject, target = item.subject, item.target
    if type(subject) is not str and _is_integer(subject):
        subject = str(int(subject))
    if type(target) is tuple and not all(type(part) is str for part in target):
        target = tuple(str(int(part)) if _is_integer(part) else part for part in target)
    if subject is item.subject and target is item.target:
        return item
    return item._replace(subject=subject, target=target)


def intake_problem(
    raw: object, item: Item, op: Operation | None, targets: dict[tuple[str, Target], int | str]
) -> str | None:
    """Why ``item`` (``raw`` as taken in, integer ids as text) cannot be sent, or ``None``.
    ``targets`` caches, per operation and target, the target's own problem or its request's
    base size."""
    if not isinstance(raw, Item):
        return raw.reason if isinstance(raw, Unreadable) else "not an Item"
    if op is None:
        return "the operation, target and id must be strings"
    subject, target = item.subject, item.target
    if type(subject) is not str:
        return "the id is missing" if subject is None else \
            f"the id must be text or a whole number, not {type(subject).__name__}"
    if not subject or subject.isspace():
        return "the id is empty"
    if type(target) is not tuple:
        return "the target is missing or not a tuple of ids"
    base = targets.get((op.name, target))
    if base is None:
        if not target or not all(type(t) is str and t for t in target):
            base = "the target is missing or not a tuple of ids"
        else:
            base = 0 if op.max_request_bytes is None else op.base_bytes(target)
        targets[(op.name, target)] = base
    if isinstance(base, str):
        return base
    problem = op.validate(item)
    if problem is None and op.max_request_bytes is not None:
        if base + op.item_bytes(subject) > op.max_request_bytes:
            problem = "the id is too long to fit in one request"
    return problem


def placeholder_item(raw: object) -> Item:
    """An :class:`Item` standing for an input entry that is not one (for its outcome line)."""
    if isinstance(raw, Unreadable):
        text = raw.text.decode("utf-8", "backslashreplace") if isinstance(raw.text, bytes) else str(raw.text)
        return Item(operation="?", target=(), subject=scrub(text)[:200], meta=raw.meta)
    return Item(operation="?", target=(), subject=scrub(repr(raw))[:200])


class Ending(NamedTuple):
    outcome: Outcome
    code: str | None
    message: str | None


class Judgement(NamedTuple):
    """The filter's verdict on one input item: ``ended`` set, or ``operation`` to send it by."""

    position: int  # its index in the input
    item: Item
    operation: Operation | None
    ended: Ending | None
    recalled: Recalled | None  # what the journal knew of it, confirmed or not
    replayed: bool  # ``ended`` is the journal's confirmed outcome from an earlier run


def _place(item: Item, index: int) -> int:
    """Where an item is, for "same as row 41": its row when the input has rows, else minus its
    1-based position (a negative number: an item of a library caller's iterable)."""
    row = item.meta.get("row") if item.meta else None
    return row if isinstance(row, int) and not isinstance(row, bool) else -(index + 1)


class IntakeFilter:
    """Judges input items in order (see the module docstring). Use one per pass over an input."""

    __slots__ = ("_journal", "_operations", "_seen", "_targets", "taken")

    def __init__(self, operations: Mapping[str, Operation], journal: Journal | None = None) -> None:
        self._operations = operations
        self._journal = journal
        # hash of (operation, target, subject) -> where it first appeared (its row, else its index)
        self._seen: dict[int, int] = {}
        self._targets: dict[tuple[str, Target], int | str] = {}
        self.taken = 0  # items judged: the next item's index

    def judge(self, raw: Any) -> Judgement:
        index = self.taken
        self.taken += 1
        item = with_text_ids(raw) if isinstance(raw, Item) else placeholder_item(raw)
        recalled = None
        if self._journal is not None and (recalled := self._journal.recall(index)) is not None:
            if recalled.confirmed and recalled.outcome is not None:  # never sent again
                if recalled.outcome not in (Outcome.REJECTED, Outcome.DUPLICATE):
                    self._seen.setdefault(hash((item.operation, item.target, item.subject)), _place(item, index))
                ending = Ending(recalled.outcome, recalled.code, recalled.message)
                return Judgement(index, item, None, ending, recalled, True)
        try:
            op = self._operations.get(item.operation)
            if op is None and type(item.operation) is str and isinstance(raw, Item):
                raise UnknownOperation(item.operation, self._operations)
            problem = intake_problem(raw, item, op, self._targets)
            key = hash((item.operation, item.target, item.subject))
        except TypeError:  # a list where an id should be: unhashable
            op, problem = None, "the operation, target and id must be strings"
        if problem is not None or op is None:
            return Judgement(index, item, None, Ending(Outcome.REJECTED, "invalid", problem), recalled, False)
        if (first := self._seen.get(key)) is not None:
            where = f"row {first}" if first > 0 else f"item {-first}"
            ending = Ending(Outcome.DUPLICATE, "duplicate", f"the same item appeared earlier: same as {where}")
            return Judgement(index, item, None, ending, recalled, False)
        self._seen[key] = _place(item, index)
        return Judgement(index, item, op, None, recalled, False)


class Intake:
    """The job's input as it is taken in (see the module docstring)."""

    __slots__ = ("_batch", "_filter", "_items", "_ledger", "_source", "error", "failed", "read_all")

    def __init__(self, items: Items, operations: Mapping[str, Operation], ledger: Ledger,
                 journal: Journal | None = None) -> None:
        self._items = items
        self._filter = IntakeFilter(operations, journal)
        self._ledger = ledger
        self._source: Iterator[Any] | None = None  # a sync input, as it is read
        self._batch: Iterator[Any] = iter(())  # the part of the current batch not taken in yet
        self.read_all = False  # the input was read to its end (by the batches or the drain)
        self.failed = False  # the input raised: it is not read again
        self.error: str | None = None  # why, if the drain found it (the job says why for the batches)

    @property
    def taken(self) -> int:
        return self._filter.taken

    def admit(self, raw: Any) -> tuple[Work, Operation | None, ItemOutcome | None]:
        """Take one input item in: open it in the ledger, then end it here by the filter's
        verdict, or return the operation to route it by. Never waits."""
        judged = self._filter.judge(raw)
        work = Work(judged.position, judged.item)
        self._ledger.open(work)
        if (recalled := judged.recalled) is not None:
            work.sends, work.answer_lost = recalled.attempts, recalled.was_sending
        if judged.ended is not None:
            return work, None, self._ledger.end(work, *judged.ended)
        return work, judged.operation, None

    async def batches(self) -> AsyncIterator[Iterator[Any]]:
        """The input in batches: lists of :data:`BATCH` for a sync input, one item at a time
        for an async one (a slow stream's items are not held back). Iterate each batch to
        its end before asking for the next; what is left of it when the job stops is
        drained. Sets ``read_all`` at the input's end; an input that raises is ``failed``
        (what was read before is yielded first) and the error propagates."""
        items = self._items
        try:
            if isinstance(items, AsyncIterable):
                async for item in items:
                    self._batch = iter((item,))
                    yield self._batch
            else:
                source = self._source = iter(items)
                while True:
                    batch: list[Any] = []
                    try:
                        batch.extend(itertools.islice(source, BATCH))
                    except Exception:
                        if batch:  # never drop what was read before the input failed
                            self._batch = iter(batch)
                            yield self._batch
                        raise
                    if not batch:
                        break
                    self._batch = iter(batch)
                    yield self._batch
        except Exception:
            self.failed = True
            raise
        self.read_all = True

    def drain(self) -> list[ItemOutcome]:
        """The job stopped before its input was all read: take a finite input in to its end
        by :meth:`admit`'s rules and return the outcomes ended here; items to send are left
        open (the job ends them ``not_sent``). Any other input is not read further. Never
        waits. An input that raises while drained ends the drain: ``failed`` is set,
        ``error`` says why, and what was read is accounted for."""
        if self.read_all or self.failed or isinstance(self._items, AsyncIterable) or not isinstance(self._items, Sized):
            return []
        ended: list[ItemOutcome] = []
        source = iter(self._items) if self._source is None else self._source  # None: stopped before the intake ran
        try:
            for raw in itertools.chain(self._batch, source):
                outcome = self.admit(raw)[2]
                if outcome is not None:
                    ended.append(outcome)
        except Exception as exc:
            self.failed = True
            self.error = scrub(f"{type(exc).__name__}: {exc}")
            return ended
        self.read_all = True
        return ended
