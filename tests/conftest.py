"""Shared fixtures: a Zoho mock on loopback with an adapter pointed at it, the networks a
mock is reached over (plain loopback HTTP, or HTTPS with answers in gzip, chunked pieces),
and an in-process fake vendor for engine tests that need no HTTP."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
import structlog

from unenroll import EndpointSpec, Item, Operation, Outcome, RetryPolicy
from unenroll.adapters.zoho.adapter import ZohoLimits, ZohoPeople
from unenroll.adapters.zoho.mock import ZohoMock, ZohoMockConfig, ZohoMockState
from unenroll.contract.mock import HOSTILE_WIRE, LoopbackTLS, WireOptions
from unenroll.model import CallResult, ItemResult
from unenroll.wire.auth import NoAuth
from unenroll.wire.http import HttpRequest, HttpResponse, InProcessTransport

TIME_SCALE = 0.01  # a minute is 0.6 s, the 5 minute lock 3 s
FAST_RETRY = RetryPolicy(max_attempts=8, base_delay=0.005, max_delay=0.05)


@dataclass(frozen=True)
class Network:
    """How a test reaches its mock: the mock's wire options and, for HTTPS, the test certificate."""

    wire: WireOptions
    tls: LoopbackTLS | None

    @property
    def server_ssl(self) -> ssl.SSLContext | None:
        return self.tls.server if self.tls is not None else None

    def session(self) -> aiohttp.ClientSession:
        """A client session that trusts the test certificate (and only it) when there is one."""
        connector = aiohttp.TCPConnector(ssl=self.tls.client) if self.tls is not None else None
        return aiohttp.ClientSession(connector=connector)


LOOPBACK_HTTP = Network(WireOptions(), None)


@pytest.fixture(autouse=True)
def own_state_folder(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test (and every command it starts) keeps its shared quota in a folder of its
    own, never in the user's ~/.local/state: no test waits on another's recorded calls."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(autouse=True)
def logging_as_found() -> Iterator[None]:
    """A test that configures structlog for the process (as the command line does) leaves it
    unconfigured again: a later test's captured logs never depend on which tests ran first
    (a WARNING filter left behind once hid the INFO events another test captures)."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def secrets_as_found() -> Iterator[None]:
    """The process's scrubber forgets the secrets a test registered: a short one such as
    ``wrong`` would otherwise blank that word in every later test's messages (the order of
    the tests would decide what they see)."""
    from unenroll.observe import secrets

    before = set(secrets._SCRUBBER._values)
    yield
    if secrets._SCRUBBER._values != before:
        secrets._SCRUBBER._values = before
        secrets._SCRUBBER._pattern = None


@pytest.fixture(scope="session")
def loopback_tls() -> LoopbackTLS:
    return LoopbackTLS.generate()


@pytest.fixture(params=["http", "https-fragmented"])
def network(request: pytest.FixtureRequest, loopback_tls: LoopbackTLS) -> Network:
    """Each integration test that takes it runs twice: over plain loopback HTTP as the mock
    writes by default, and over HTTPS with every answer gzip-encoded, chunked and in pieces
    with pauses (as real vendors and networks deliver them)."""
    return LOOPBACK_HTTP if request.param == "http" else Network(HOSTILE_WIRE, loopback_tls)


@dataclass
class ZohoRig:
    mock: ZohoMock
    adapter: ZohoPeople
    url: str
    session: aiohttp.ClientSession

    async def stats(self) -> dict[str, Any]:
        async with self.session.get(self.url + "/__mock__/stats") as response:
            result: dict[str, Any] = await response.json()
            return result


@asynccontextmanager
async def zoho_rig(
    config: ZohoMockConfig | None = None,
    state: ZohoMockState | None = None,
    limits: ZohoLimits | None = None,
    request_timeout: float = 5.0,
    network: Network = LOOPBACK_HTTP,
) -> AsyncIterator[ZohoRig]:
    """A Zoho mock on 127.0.0.1 and a ZohoPeople adapter with refresh credentials for it,
    over ``network`` (whose wire options, unless plain, replace the config's)."""
    config = config or ZohoMockConfig(time_scale=TIME_SCALE)
    if not network.wire.plain:
        config = replace(config, wire=network.wire)
    mock = ZohoMock(config, state or ZohoMockState.generate(2, 2, 50))
    async with mock.serve(ssl_context=network.server_ssl) as server, network.session() as session:
        adapter = ZohoPeople(
            session=session,
            base_url=server.url,
            accounts_url=server.url,
            refresh_token=config.refresh_token,
            client_id=config.client_id,
            client_secret=config.client_secret,
            limits=limits or ZohoLimits(margin=5.0),  # 5 s scaled: 50 ms of jitter allowance
            time_scale=config.time_scale,
            timeout=request_timeout,
        )
        yield ZohoRig(mock, adapter, server.url, session)


def unenroll_items(state: ZohoMockState) -> list[Item]:
    return [Item("unenroll", key, erecno) for key, learners in state.batches.items() for erecno in learners]


# -- an in-process fake vendor -----------------------------------------------------------

Decide = Callable[[tuple[str, ...], Sequence[str]], Awaitable[CallResult] | CallResult]


def _answered_all(target: tuple[str, ...], subjects: Sequence[str]) -> CallResult:
    return CallResult.answered([ItemResult.final(Outcome.UNENROLLED)] * len(subjects))


@dataclass
class FakeVendor:
    """An adapter whose answers come from ``decide(target, subjects)``; records every call.

    The request carries the subjects in ``json`` and the response reads back the decision
    made for that call, so the engine's full path (build, send, read, act) is exercised.
    """

    decide: Decide = _answered_all
    max_items: int = 10
    max_calls: int | None = None
    window: float = 1.0
    max_in_flight: int = 2
    vendor: str = "fake"
    calls: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._results: dict[int, CallResult] = {}
        self.transport = InProcessTransport(self._handle)
        self.auth = NoAuth()
        self.operations: Mapping[str, Operation] = {
            "unenroll": Operation("unenroll", "bulk", Outcome.UNENROLLED, self.max_items, self._build, self._read,
                                  self._validate),
        }
        self.endpoints = {
            "bulk": EndpointSpec("bulk", max_calls=self.max_calls, window=self.window, lock_period=0.01,
                                 max_in_flight=self.max_in_flight)
        }

    @staticmethod
    def _validate(item: Item) -> str | None:
        return None if item.subject.isdigit() else f"{item.subject!r} is not digits"

    def _build(self, target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
        return HttpRequest("POST", "/" + "/".join(target), json={"target": list(target), "subjects": list(subjects)})

    async def _handle(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        target, subjects = tuple(request.json["target"]), tuple(request.json["subjects"])
        self.calls.append((target, subjects))
        decided = self.decide(target, subjects)
        result = decided if isinstance(decided, CallResult) else await decided
        key = len(self.calls)
        self._results[key] = result
        return HttpResponse(200, str(key).encode())

    def _read(self, target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
        return self._results.pop(int(response.body))

    def sends_of(self, subject: str) -> int:
        return sum(subjects.count(subject) for _, subjects in self.calls)


@pytest.fixture
def fake_vendor() -> Callable[..., FakeVendor]:
    return FakeVendor
