"""The mock kit's mechanisms, each against its stated invariant, on a toy mock that uses
only the kit (no vendor): the scaled clock, token expiry, the fault gate (drawn before any
state changes), status counting, the stats route and the command line."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from unenroll.contract.mock import (
    HOSTILE_WIRE,
    STATS_PATH,
    Faults,
    Latency,
    MainArguments,
    MockBase,
    ScaledClock,
    TokenStore,
    WireOptions,
    parse_main,
)

NO_FAULTS = Faults()


class Now:
    """A clock a test moves by hand."""

    def __init__(self, at: float = 100.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


class ToyMock(MockBase):
    """A vendor of one route, ``POST /toy/{n}``, that adds ``n`` to a total once the kit
    has let the call through; a token endpoint; and a stats field of its own."""

    def __init__(self, faults: Faults = NO_FAULTS, *, time_scale: float = 1.0, clock: Now | None = None,
                 token_lifetime: float = 60.0, seed: int = 0) -> None:
        super().__init__(time_scale=time_scale, seed=seed, latency=Latency(), faults=faults, wire=WireOptions(),
                         endpoints=("toy",), clock=clock)
        self.total = 0
        self.stats_reads = 0
        self.tokens = TokenStore("Toy", self.clock.seconds(token_lifetime))
        self.app.router.add_post("/toy/token", self.token)
        self.app.router.add_post("/toy/{n}", self.add)

    async def token(self, request: web.Request) -> web.Response:
        return web.json_response({"access_token": self.issue_token()})

    async def add(self, request: web.Request) -> web.StreamResponse:
        if not self.authorised(request):
            return self.answer("toy", web.json_response({"error": "token"}, status=401))
        if (fault := await self.fault_gate(request, 1, {"total": 0})) is not None:
            return self.answer("toy", fault)
        self.total += int(request.match_info["n"])
        return self.answer("toy", web.json_response({"total": self.total}))

    def stats_fields(self) -> dict[str, Any]:
        self.stats_reads += 1  # the snapshot below must see what this did
        return {"toy_calls": sum(self.statuses["toy"].values())}

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.total, "stats_reads": self.stats_reads}


async def _call(session: aiohttp.ClientSession, url: str, token: str | None) -> int:
    headers = {"Authorization": f"Toy {token}"} if token else {}
    async with session.post(url, headers=headers) as response:
        await response.read()
        return response.status


# -- the clock -----------------------------------------------------------------------------


def test_the_clock_plays_vendor_seconds_at_the_time_scale() -> None:
    now = Now(7.0)
    clock = ScaledClock(0.01, now)
    assert clock.seconds(60) == pytest.approx(0.6) and clock.seconds(300) == pytest.approx(3.0)
    now.at = 9.5
    assert clock.now() == 9.5


@pytest.mark.parametrize("scale", [0.0, -1.0, float("inf"), float("nan")])
def test_the_clock_refuses_a_time_scale_that_is_not_a_positive_number(scale: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(scale)


async def test_the_clock_reads_the_event_loop_without_a_source() -> None:
    import asyncio

    before = asyncio.get_running_loop().time()
    assert before <= ScaledClock().now() <= asyncio.get_running_loop().time()


# -- tokens --------------------------------------------------------------------------------


def test_a_token_is_accepted_until_its_expiry_and_never_after() -> None:
    store = TokenStore("Bearer", 30.0, prefix="1000.", nbytes=8)
    token = store.issue(now=100.0)
    assert token.startswith("1000.") and store.issued == 1 and list(store) == [token]
    assert store.accepts(f"Bearer {token}", 100.0) and store.accepts(f"Bearer {token}", 130.0)
    assert not store.accepts(f"Bearer {token}", 130.001)


def test_a_token_never_issued_or_under_another_scheme_is_refused() -> None:
    store = TokenStore("Zoho-oauthtoken", 30.0)
    token = store.issue(now=0.0)
    assert not store.accepts("Zoho-oauthtoken not-a-token", 1.0)
    assert not store.accepts(f"Bearer {token}", 1.0)
    assert not store.accepts(token, 1.0) and not store.accepts("", 1.0)
    assert store.accepts(f"Zoho-oauthtoken {token}", 1.0)


async def test_a_mocks_token_lives_its_lifetime_times_the_time_scale() -> None:
    now = Now(1000.0)
    mock = ToyMock(time_scale=0.5, clock=now, token_lifetime=10.0)  # 10 vendor seconds: 5 on the clock
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        async with session.post(server.url + "/toy/token") as response:
            token = (await response.json())["access_token"]
        now.at = 1005.0
        assert await _call(session, server.url + "/toy/1", token) == 200
        now.at = 1005.01
        assert await _call(session, server.url + "/toy/1", token) == 401
    assert mock.total == 1 and mock.tokens is not None and mock.tokens.issued == 1


# -- the fault gate ------------------------------------------------------------------------


async def test_a_faulted_call_changes_no_state_and_is_logged() -> None:
    mock = ToyMock(Faults(server_error=1.0))
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        token = mock.issue_token()
        statuses = [await _call(session, server.url + "/toy/5", token) for _ in range(6)]
    assert all(status in (500, 502, 503) for status in statuses)
    assert mock.total == 0 and mock.fault_log.injected["server_error"] == 6
    assert sum(mock.statuses["toy"].values()) == 6


async def test_the_same_seed_draws_the_same_faults() -> None:
    async def faults_of(seed: int) -> list[int]:
        mock = ToyMock(Faults(server_error=0.5), seed=seed)
        async with mock.serve() as server, aiohttp.ClientSession() as session:
            token = mock.issue_token()
            return [await _call(session, server.url + "/toy/1", token) for _ in range(12)]

    first, again = await faults_of(3), await faults_of(3)
    assert first == again and 200 in first and any(status >= 500 for status in first)


async def test_a_call_the_gate_lets_through_is_served_once() -> None:
    mock = ToyMock()
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        token = mock.issue_token()
        assert [await _call(session, server.url + f"/toy/{n}", token) for n in (1, 2, 3)] == [200, 200, 200]
    assert mock.total == 6 and not mock.fault_log.injected and mock.statuses["toy"] == {200: 3}


# -- stats ---------------------------------------------------------------------------------


async def test_stats_show_the_vendors_fields_faults_tokens_and_state_unless_asked_not_to() -> None:
    mock = ToyMock(Faults(server_error=1.0))
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        token = mock.issue_token()
        await _call(session, server.url + "/toy/1", token)
        await _call(session, server.url + "/toy/1", "stale")
        async with session.get(server.url + STATS_PATH) as response:
            full = await response.json()
        async with session.get(server.url + STATS_PATH + "?state=0") as response:
            brief = await response.json()
    assert full == {"toy_calls": 2, "faults": {"server_error": 1}, "tokens_issued": 1,
                    "state": {"total": 0, "stats_reads": 1}}  # the snapshot comes after the vendor's fields
    assert brief == {"toy_calls": 2, "faults": {"server_error": 1}, "tokens_issued": 1}


async def test_stats_of_a_mock_without_tokens_say_nothing_of_tokens() -> None:
    mock = ToyMock()
    mock.tokens = None
    async with mock.serve() as server, aiohttp.ClientSession() as session:
        async with session.get(server.url + STATS_PATH + "?state=0") as response:
            assert await response.json() == {"toy_calls": 0, "faults": {}}


# -- the command line ----------------------------------------------------------------------


def _toy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=int, default=0)


def _toy_build(args: MainArguments) -> ToyMock:
    if args.options.start < 0:
        raise ValueError("--start must be >= 0")
    mock = ToyMock(time_scale=args.time_scale, seed=args.seed)
    mock.total = args.options.start
    mock.built_with = args  # type: ignore[attr-defined]
    return mock


def _parse(argv: list[str]) -> Any:
    return parse_main(argv, description="toy", default_port=9999, add_options=_toy_options, build=_toy_build)


def test_the_command_line_gives_the_kits_options_and_the_vendors() -> None:
    parsed = _parse(["--time-scale", "0.01", "--seed", "7", "--fragmented", "--start", "4"])
    args = parsed.mock.built_with
    assert (parsed.host, parsed.port, parsed.ssl_context) == ("127.0.0.1", 9999, None)
    assert (args.time_scale, args.seed, args.wire) == (0.01, 7, HOSTILE_WIRE) and parsed.mock.total == 4
    assert parsed.mock.clock.seconds(100) == pytest.approx(1.0)


@pytest.mark.parametrize("argv", [["--time-scale", "0"], ["--time-scale", "nan"], ["--start", "-1"],
                                  ["--fragments", "0"], ["--tls-key", "k.pem"], ["--bogus"]])
def test_a_bad_option_ends_in_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err
