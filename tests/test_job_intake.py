"""The intake filter has one home: the plan judges every input item as the job does."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import FAST_RETRY, FakeVendor
from unenroll import Item, JobSettings, Unreadable, run
from unenroll.planning.plan import make_plan

ODD_INPUT: list[object] = [
    Item("unenroll", ("c",), "1"),
    Item("unenroll", ("c",), "1"),  # duplicate
    Item("unenroll", ("c",), "abc"),  # the adapter's id rule
    Item(["unenroll"], ("c",), "3"),  # unhashable operation
    Item("unenroll", ("c", ["x"]), "2"),  # unhashable target
    {"not": "an item"},
    Unreadable("row 9: not UTF-8", "caf\\xe9", meta={"row": 9}),
    Item("unenroll", ("d",), "1"),
]


async def test_the_plan_counts_every_item_as_the_job_ends_it(fake_vendor: Callable[..., FakeVendor]) -> None:
    vendor = fake_vendor()
    plan = make_plan(vendor, ODD_INPUT)  # type: ignore[arg-type]
    report = await run(vendor, ODD_INPUT, settings=JobSettings(retry=FAST_RETRY, seed=3))
    assert plan.rows == report.total == len(ODD_INPUT)
    assert dict(plan.counts) == {k: v for k, v in report.counts.items() if k in ("rejected", "duplicate")}
    assert plan.to_send == report.counts["unenrolled"] == 2
    assert plan.first_problems[1:3] == [f"item {n}: the operation, target and id must be strings" for n in (4, 5)]


def test_a_duplicate_names_the_row_or_the_item_it_repeats() -> None:
    from unenroll.job.intake import IntakeFilter

    operations = FakeVendor().operations
    judge = IntakeFilter(operations).judge
    rows = [Item("unenroll", ("c",), "1", meta={"row": 2}), Item("unenroll", ("c",), "2", meta={"row": 3}),
            Item("unenroll", ("c",), "1", meta={"row": 41})]
    verdicts = [judge(item) for item in rows]
    assert verdicts[2].ended is not None and verdicts[2].ended.message is not None
    assert verdicts[2].ended.message.endswith("same as row 2")
    plain = IntakeFilter(operations).judge  # a library caller's items: no rows, positions instead
    plain(Item("unenroll", ("c",), "1"))
    plain(Item("unenroll", ("c",), "2"))
    again = plain(Item("unenroll", ("c",), "2")).ended
    assert again is not None and again.message is not None and again.message.endswith("same as item 2")
