"""The library in a data pipeline: a resumable stream stage, vendor clients that own their
HTTP session, ids as a database or pandas hands them over, a misnamed operation caught at
once, and a stage left early on purpose that logs no error."""

from __future__ import annotations

import fractions
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from tests.conftest import FAST_RETRY, TIME_SCALE, FakeVendor, unenroll_items
from unenroll import Item, ItemOutcome, JobSettings, Journal, Outcome, run, stream
from unenroll.adapters.docebo.adapter import COURSE, Docebo
from unenroll.adapters.docebo.mock import DoceboMock, DoceboMockConfig, DoceboMockState
from unenroll.adapters.smarteru.adapter import SmarterU
from unenroll.adapters.smarteru.mock import SmarterUMock, SmarterUMockConfig, SmarterUMockState
from unenroll.adapters.zoho.adapter import ZohoLimits, ZohoPeople
from unenroll.adapters.zoho.mock import ZohoMock, ZohoMockConfig, ZohoMockState
from unenroll.contract.mock import MockBase
from unenroll.planning.plan import make_plan
from unenroll.wire import http
from unenroll.wire.http import HttpRequest

SETTINGS = JobSettings(retry=FAST_RETRY, linger=0.5, seed=11)


def items_for(n: int, targets: int = 3) -> list[Item]:
    return [Item("unenroll", (f"c{i % targets}",), str(1000 + i)) for i in range(n)]


# -- a stream stage resumes from its journal ------------------------------------------------


async def test_a_stream_stage_with_a_journal_resumes_and_never_resends_what_was_confirmed(
    fake_vendor: Callable[..., FakeVendor], tmp_path: Path,
) -> None:
    vendor = fake_vendor(max_items=10)
    items = items_for(600)
    path = tmp_path / "stage.db"
    first: list[ItemOutcome] = []
    with Journal.open(path, "stage-1") as journal:
        async with stream(vendor, items, settings=SETTINGS, journal=journal) as outcomes:
            async for outcome in outcomes:
                first.append(outcome)
                if len(first) == 100:
                    break  # the pipeline is stopped half way
    confirmed = {o.item.subject for o in first if o.outcome is Outcome.UNENROLLED}
    assert len(confirmed) == 100

    second: list[ItemOutcome] = []
    with Journal.open(path, "stage-1", resume=True) as journal:
        async with stream(vendor, items, settings=SETTINGS, journal=journal) as outcomes:
            async for outcome in outcomes:
                second.append(outcome)
    assert sorted(o.index for o in second) == list(range(600))
    assert {o.outcome for o in second} == {Outcome.UNENROLLED}
    assert outcomes.report.replayed >= len(confirmed)
    assert all(vendor.sends_of(s) == 1 for s in confirmed)  # replayed, not sent again


# -- a vendor client owns its session -------------------------------------------------------


@dataclass
class VendorCase:
    name: str
    mock: Callable[[], MockBase]
    client: Callable[..., Any]  # (url, **session) -> the client
    items: Callable[[MockBase], list[Item]]


def _zoho_mock() -> ZohoMock:
    return ZohoMock(ZohoMockConfig(time_scale=TIME_SCALE), ZohoMockState.generate(2, 2, 20))


def _zoho(url: str, **session: Any) -> ZohoPeople:
    config = ZohoMockConfig()
    return ZohoPeople(base_url=url, accounts_url=url, refresh_token=config.refresh_token, client_id=config.client_id,
                      client_secret=config.client_secret, limits=ZohoLimits(margin=5.0), time_scale=TIME_SCALE,
                      timeout=5.0, **session)


def _smarteru_mock() -> SmarterUMock:
    return SmarterUMock(SmarterUMockConfig(time_scale=TIME_SCALE), SmarterUMockState.generate(40, 0))


def _smarteru(url: str, **session: Any) -> SmarterU:
    config = SmarterUMockConfig()
    return SmarterU(base_url=url, allow_insecure_http=True, account_api_key=config.account_api_key,
                    user_api_key=config.user_api_key, time_scale=TIME_SCALE, timeout=5.0, **session)


def _docebo_mock() -> DoceboMock:
    state = DoceboMockState.generate(courses=2, plans=0, courses_per_plan=0, users_per_target=20)
    return DoceboMock(DoceboMockConfig(time_scale=TIME_SCALE), state)


def _docebo(url: str, **session: Any) -> Docebo:
    config = DoceboMockConfig()
    return Docebo(base_url=url, client_id=config.client_id, client_secret=config.client_secret,
                  time_scale=TIME_SCALE, timeout=5.0, **session)


def _docebo_items(mock: MockBase) -> list[Item]:
    assert isinstance(mock, DoceboMock)
    return [Item("unenroll", (COURSE, str(c)), str(u)) for c, users in mock.state.courses.items() for u in users]


def _smarteru_items(mock: MockBase) -> list[Item]:
    assert isinstance(mock, SmarterUMock)
    return [Item("unenroll", ("account",), i) for i in mock.state.enrollments]


def _zoho_items(mock: MockBase) -> list[Item]:
    assert isinstance(mock, ZohoMock)
    return unenroll_items(mock.state)


CASES = [
    VendorCase("zoho", _zoho_mock, _zoho, _zoho_items),
    VendorCase("smarteru", _smarteru_mock, _smarteru, _smarteru_items),
    VendorCase("docebo", _docebo_mock, _docebo, _docebo_items),
]


@asynccontextmanager
async def served(case: VendorCase) -> AsyncIterator[tuple[str, list[Item]]]:
    mock = case.mock()
    async with mock.serve() as server:
        yield server.url, case.items(mock)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_a_client_without_a_session_owns_one_for_its_async_with_block(case: VendorCase) -> None:
    async with served(case) as (url, items):
        async with case.client(url) as client:
            report = await run(client, items, settings=SETTINGS)
            own = client.http.session
        assert report.total == len(items) > 0 and report.all_succeeded, report.counts
        assert own.closed  # closed on leaving the block
        async with case.client(url) as client:  # a second block opens a fresh one
            assert client.http.session is not own and not client.http.session.closed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_a_session_given_to_a_client_is_used_and_left_open(case: VendorCase) -> None:
    async with served(case) as (url, items), aiohttp.ClientSession() as session:
        async with case.client(url, session=session) as client:
            report = await run(client, items, settings=SETTINGS)
            assert client.http.session is session
        assert report.all_succeeded, report.counts
        assert not session.closed  # the caller's to close


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_a_client_that_owns_its_session_refuses_a_call_outside_async_with(case: VendorCase) -> None:
    client = case.client("http://127.0.0.1:9")  # nothing listens: nothing may be tried
    with pytest.raises(RuntimeError, match=rf"no HTTP session: use it inside `async with {type(client).__name__}"):
        await client.transport.send(HttpRequest("GET", "/"), {})
    async with client:
        pass
    with pytest.raises(RuntimeError, match="no HTTP session"):  # left: closed, not reopened behind the caller
        await client.transport.send(HttpRequest("GET", "/"), {})
    async with served(case) as (url, items):
        with pytest.raises(BaseExceptionGroup) as raised:
            await run(case.client(url), items[:3], settings=SETTINGS)
    assert raised.group_contains(RuntimeError, match=r"no HTTP session: use it inside `async with")


async def test_nested_async_with_closes_the_own_session_when_the_outermost_block_is_left() -> None:
    own = http.HttpSession("Client")
    async with own:
        async with own:
            session = own.session
        assert not session.closed
    assert session.closed


# -- ids as a database or pandas hands them over --------------------------------------------


class DatabaseId(int):
    """An integer type that is not ``int`` itself (as numpy's and pandas' are not)."""


def as_given(operation: str, target: tuple[Any, ...], subject: Any) -> Item:
    """An item with ids as a database or a data frame hands them over (the type says text)."""
    return Item(operation, target, subject)


async def test_integer_ids_are_sent_as_their_decimal_text(fake_vendor: Callable[..., FakeVendor]) -> None:
    vendor = fake_vendor()
    items = [
        as_given("unenroll", (1, 2), 7000000000001),
        as_given("unenroll", ("1", "2"), "7000000000001"),  # the same item, as text
        as_given("unenroll", (DatabaseId(3),), DatabaseId(42)),
        as_given("unenroll", ("c",), True),  # a flag, not an id
        as_given("unenroll", ("c",), 7.000000000983e12),  # a float is not an id
        as_given("unenroll", ("c",), fractions.Fraction(3, 1)),  # a number, but not an integer type
    ]
    got: list[ItemOutcome] = []
    report = await run(vendor, items, settings=SETTINGS, sinks=[got.append])
    by_index = {o.index: o for o in got}
    assert sorted(vendor.calls) == [(("1", "2"), ("7000000000001",)), (("3",), ("42",))]
    assert by_index[0].outcome is Outcome.UNENROLLED and by_index[0].item[1:3] == (("1", "2"), "7000000000001")
    assert by_index[1].outcome is Outcome.DUPLICATE
    assert by_index[2].item[1:3] == (("3",), "42") and type(by_index[2].item.subject) is str
    assert [by_index[i].outcome for i in (3, 4, 5)] == [Outcome.REJECTED] * 3
    assert "not bool" in (by_index[3].message or "") and "not float" in (by_index[4].message or "")
    assert report.total == 6


# -- a misnamed operation is the calling code's mistake -------------------------------------


async def test_an_unknown_operation_raises_when_it_is_taken_in_naming_it_and_the_known_ones(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    vendor = fake_vendor()
    items = [*items_for(5), Item("unenrol", ("c0",), "99"), *items_for(500)]
    got: list[ItemOutcome] = []
    with pytest.raises(ValueError, match=r"unknown operation 'unenrol': the adapter's operations are 'unenroll'"):
        await run(vendor, items, settings=SETTINGS, sinks=[got.append])
    assert sorted(o.index for o in got) == list(range(5))  # what was taken in before is accounted for
    assert all(s < "1005" for _, subjects in vendor.calls for s in subjects)  # nothing after it was read

    with pytest.raises(ValueError, match="unknown operation 'unenrol'"):
        async with stream(vendor, items, settings=SETTINGS) as outcomes:
            async for _ in outcomes:
                pass
    with pytest.raises(ValueError, match="unknown operation 'unenrol'"):
        make_plan(vendor, items)


# -- leaving a stream early is the caller's choice ------------------------------------------


async def test_leaving_a_stream_early_is_logged_as_info_not_as_an_error(
    fake_vendor: Callable[..., FakeVendor],
) -> None:
    seen = 0
    with structlog.testing.capture_logs() as logs:
        async with stream(fake_vendor(), items_for(3000), settings=SETTINGS) as outcomes:
            async for _ in outcomes:
                seen += 1
                if seen == 20:
                    break
    assert sum(outcomes.report.counts.values()) == 3000
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    finished = [e for e in logs if e["event"] == "job.finished"]
    assert len(finished) == 1 and finished[0]["log_level"] == "info"
    assert "left the outcome stream" in finished[0]["stopped"]
