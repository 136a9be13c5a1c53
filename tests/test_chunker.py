"""The chunker's invariants: one target per chunk, caps held, every item out exactly once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unenroll import Item, Operation, Outcome
from unenroll.job.queue import ChunkBuffer, Work
from unenroll.model import CallResult
from unenroll.wire.http import HttpRequest, HttpResponse


def _build(target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
    return HttpRequest("POST", "/")


def _read(target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
    return CallResult.answered([])


def make_op(max_items: int, max_bytes: int | None = None) -> Operation:
    return Operation("op", "ep", Outcome.UNENROLLED, max_items, _build, _read,
                     max_request_bytes=max_bytes, base_bytes=lambda t: 10, item_bytes=len)


@settings(max_examples=200, deadline=None)
@given(
    cap=st.integers(1, 12),
    max_bytes=st.one_of(st.none(), st.integers(20, 80)),
    items=st.lists(st.tuples(st.integers(0, 4), st.text("0123456789", min_size=1, max_size=9)), max_size=200),
    take_every=st.integers(1, 30),
    halve_at=st.one_of(st.none(), st.integers(0, 200)),
)
def test_every_item_comes_out_once_in_a_chunk_within_caps(
    cap: int, max_bytes: int | None, items: list[tuple[int, str]], take_every: int, halve_at: int | None
) -> None:
    op = make_op(cap, max_bytes)
    buffer = ChunkBuffer(cap, linger=0.0)
    taken: list[int] = []

    def take_one(final: bool) -> bool:
        chunk = buffer.take(0.0, flush_partial=final)
        if chunk is None:
            return False
        assert len({w.item.target for w in chunk.works}) == 1
        assert all(w.item.target == chunk.target for w in chunk.works)
        assert 0 < len(chunk.works) <= buffer.cap_items
        if max_bytes is not None and not chunk.pinned:
            assert chunk.nbytes <= max_bytes
            assert chunk.nbytes == 10 + sum(len(w.item.subject) for w in chunk.works)
        taken.extend(w.index for w in chunk.works)
        return True

    for index, (target, subject) in enumerate(items):
        if halve_at == index:
            buffer.cap_items = max(1, buffer.cap_items // 2)
        buffer.put(op, Work(index, Item("op", (str(target),), subject)), 0.0)
        if index % take_every == 0:
            take_one(final=False)
    while take_one(final=True):
        pass
    assert sorted(taken) == list(range(len(items)))
    assert buffer.count == 0


def test_pinned_chunks_leave_first_and_unmerged() -> None:
    op = make_op(10)
    buffer = ChunkBuffer(10)
    buffer.put(op, Work(0, Item("op", ("a",), "1")), 0.0)
    halves = [Work(i, Item("op", ("a",), str(i))) for i in (5, 6)]
    buffer.put_pinned(op, ("a",), halves[1:], 0.0)
    buffer.put_pinned(op, ("a",), halves[:1], 0.0)
    first = buffer.take(0.0, flush_partial=True)
    second = buffer.take(0.0, flush_partial=True)
    third = buffer.take(0.0, flush_partial=True)
    assert first is not None and [w.index for w in first.works] == [5]
    assert second is not None and [w.index for w in second.works] == [6]
    assert third is not None and [w.index for w in third.works] == [0]


def test_partial_chunks_wait_for_linger_while_input_flows() -> None:
    op = make_op(10)
    buffer = ChunkBuffer(10, linger=1.0)
    buffer.put(op, Work(0, Item("op", ("a",), "1")), 0.0)
    assert buffer.take(0.5, flush_partial=False) is None
    assert buffer.next_wakeup(0.5) == 0.5
    chunk = buffer.take(1.0, flush_partial=False)
    assert chunk is not None and len(chunk) == 1


def test_a_chunk_already_takeable_sets_no_wakeup() -> None:
    """A worker that finds every takeable chunk claimed by others waits for a change, not
    for a wakeup of 0 seconds (which would spin for as long as a limiter makes them wait)."""
    op = make_op(10)
    buffer = ChunkBuffer(10, linger=1.0)
    buffer.put(op, Work(0, Item("op", ("a",), "1")), 0.0)
    buffer.put(op, Work(1, Item("op", ("b",), "2")), 0.8)
    assert buffer.takeable(1.5, flush_partial=False) == 1
    assert buffer.next_wakeup(1.5) == pytest.approx(0.3)  # the second one lingers until 1.8
    assert buffer.takeable(2.0, flush_partial=False) == 2
    assert buffer.next_wakeup(2.0) is None  # both are counted: nothing to wake up for
    assert buffer.next_wakeup(0.5, flush_partial=True) is None  # flushing: every open chunk counts already
    buffer.put_later(op, Work(2, Item("op", ("c",), "3")), due=3.0)
    assert buffer.next_wakeup(2.0) == 1.0


def test_retries_join_their_target_when_due() -> None:
    op = make_op(10)
    buffer = ChunkBuffer(10, linger=0.0)
    buffer.put_later(op, Work(1, Item("op", ("a",), "1")), due=5.0)
    buffer.put(op, Work(2, Item("op", ("a",), "2")), 0.0)
    early = buffer.take(1.0, flush_partial=True)
    assert early is not None and [w.index for w in early.works] == [2]
    assert buffer.take(1.0, flush_partial=True) is None
    assert buffer.next_wakeup(1.0) == 4.0
    late = buffer.take(5.0, flush_partial=True)
    assert late is not None and [w.index for w in late.works] == [1]


def test_a_rare_target_is_not_starved_by_fuller_chunks() -> None:
    op = make_op(2)
    buffer = ChunkBuffer(2, linger=0.0, max_wait=10.0)
    buffer.put(op, Work(0, Item("op", ("rare",), "1")), 0.0)
    for i in range(1, 7):  # a busy target keeps filling chunks
        buffer.put(op, Work(i, Item("op", ("busy",), str(i))), 0.0)
    first = buffer.take(5.0, flush_partial=False)
    assert first is not None and first.target == ("busy",)  # not overdue yet: fuller first
    overdue = buffer.take(10.0, flush_partial=False)
    assert overdue is not None and overdue.target == ("rare",)


def test_open_chunks_age_in_the_order_they_opened_even_with_a_stale_clock() -> None:
    """The oldest open chunk is found without a scan; a put carrying an earlier clock
    reading (the intake reads the clock per batch) must not jump the queue."""
    op = make_op(10)
    buffer = ChunkBuffer(10, linger=1.0, max_wait=2.0)
    buffer.put(op, Work(0, Item("op", ("a",), "1")), 5.0)
    buffer.put(op, Work(1, Item("op", ("b",), "2")), 3.0)  # stale: stamped 5.0, not 3.0
    assert buffer.takeable(5.5, flush_partial=False) == 0
    assert buffer.takeable(6.0, flush_partial=False) == 2
    assert buffer.next_wakeup(5.5) == 0.5
    first = buffer.take(7.0, flush_partial=False)
    assert first is not None and first.target == ("a",)  # overdue, and opened first
