"""The mocks' wire: answers really go out in pieces, chunked, gzip-encoded, stalled, over
HTTPS when asked, faults included; each mock's command line takes these options.

Read with aiohttp's low-level stream (``auto_decompress=False``), so the pieces, headers and
encoded bytes are the wire's, not a client's reassembly.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import random
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from unenroll.adapters.smarteru.adapter import ApiKeys, build_learner_report, read_learner_report
from unenroll.adapters.smarteru.mock import SmarterUMock, SmarterUMockConfig, SmarterUMockState
from unenroll.adapters.zoho.mock import ZohoMock, ZohoMockConfig, ZohoMockState
from unenroll.contract.mock import Faults, LoopbackTLS, MockServer, WireOptions, mock_app, server_tls
from unenroll.wire.http import AiohttpTransport, HttpRequest, HttpResponse

TIME_SCALE = 0.01
TOKEN_FORM = {"grant_type": "refresh_token", "refresh_token": "mock-refresh-token", "client_id": "mock-client-id",
              "client_secret": "mock-client-secret"}


@pytest.fixture(scope="module")
def tls() -> LoopbackTLS:
    return LoopbackTLS.generate()


@asynccontextmanager
async def zoho(wire: WireOptions, *, faults: Faults | None = None, learners: int = 100,
               tls: LoopbackTLS | None = None) -> AsyncIterator[tuple[ZohoMock, str, aiohttp.ClientSession]]:
    """A Zoho mock with ``wire`` and a raw session (no decompression) holding a token for it."""
    config = ZohoMockConfig(time_scale=TIME_SCALE, wire=wire, faults=faults or Faults(), seed=1)
    mock = ZohoMock(config, ZohoMockState.generate(1, 1, learners))
    connector = aiohttp.TCPConnector(ssl=tls.client if tls is not None else True)
    async with mock.serve(ssl_context=tls.server if tls else None) as server, \
            aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        yield mock, server.url, session


async def token(session: aiohttp.ClientSession, url: str, wire: WireOptions) -> str:
    async with session.post(url + "/oauth/v2/token", data=TOKEN_FORM) as response:
        raw = await response.read()
    answer: dict[str, str] = json.loads(gzip.decompress(raw) if wire.gzip else raw)
    return answer["access_token"]


def unenroll_url(mock: ZohoMock, url: str) -> tuple[str, dict[str, str]]:
    (course, batch), learners = next(iter(mock.state.batches.items()))
    erecnos = "[" + ",".join(sorted(learners)) + "]"
    return f"{url}/api/v1/courses/{course}/batches/{batch}/unenroll", {"erecnosList": erecnos}


async def pieces_of(response: aiohttp.ClientResponse) -> list[bytes]:
    return [piece async for piece in response.content.iter_any()]


# -- the plan of cuts ----------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 2, 5, 999, 1000, 1001, 20_000])
@pytest.mark.parametrize(("fragments", "fragment_bytes"), [(1, None), (4, None), (1, 1000), (6, 300)])
def test_the_cuts_split_a_body_into_the_pieces_asked_for(
    length: int, fragments: int, fragment_bytes: int | None
) -> None:
    options = WireOptions(fragments=fragments, fragment_bytes=fragment_bytes)
    cuts = options.cuts(length, random.Random(7))
    assert cuts == sorted(set(cuts)) and all(0 < c < length for c in cuts)
    bounds = [0, *cuts, length]
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    assert sum(sizes) == length
    assert len(sizes) >= min(fragments, max(length, 1))  # at least the pieces asked for, as far as bytes allow
    if fragment_bytes is not None:
        assert max(sizes) <= fragment_bytes
    assert cuts == options.cuts(length, random.Random(7))  # seeded


@pytest.mark.parametrize("bad", [{"fragments": 0}, {"fragment_bytes": 0}, {"fragment_pause": -1.0},
                                 {"stall_after": -1}, {"stall_seconds": float("inf")}, {"stall_share": 1.5}])
def test_nonsense_wire_options_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WireOptions(**bad)  # type: ignore[arg-type]


# -- on the wire -----------------------------------------------------------------------------


async def test_a_big_answer_arrives_in_several_pieces_and_whole() -> None:
    wire = WireOptions(fragments=6, fragment_pause=5.0)  # 50 ms between pieces: a reader sees them apart
    async with zoho(wire) as (mock, url, session):
        headers = {"Authorization": "Zoho-oauthtoken " + await token(session, url, wire)}
        address, params = unenroll_url(mock, url)
        async with session.post(address, params=params, headers=headers) as response:
            pieces = await pieces_of(response)
            length = response.content_length
    assert len(pieces) > 1
    body = b"".join(pieces)
    assert len(body) == length and len(json.loads(body)["learners"]) == 100


async def test_chunked_gzip_answers_say_so_in_their_headers_and_decode_to_the_answer() -> None:
    wire = WireOptions(fragments=3, fragment_pause=2.0, chunked=True, gzip=True)
    async with zoho(wire) as (mock, url, session):
        headers = {"Authorization": "Zoho-oauthtoken " + await token(session, url, wire)}
        address, params = unenroll_url(mock, url)
        async with session.post(address, params=params, headers=headers) as response:
            raw = b"".join(await pieces_of(response))
            got = response.headers
    assert got["Transfer-Encoding"] == "chunked" and got["Content-Encoding"] == "gzip"
    assert "Content-Length" not in got
    assert len(json.loads(gzip.decompress(raw))["learners"]) == 100


async def test_fault_answers_travel_the_same_wire() -> None:
    wire = WireOptions(chunked=True, gzip=True)
    async with zoho(wire, faults=Faults(server_error=1.0)) as (mock, url, session):
        headers = {"Authorization": "Zoho-oauthtoken " + await token(session, url, wire)}
        address, params = unenroll_url(mock, url)
        async with session.post(address, params=params, headers=headers) as response:
            raw = await response.read()
            assert response.status >= 500
            assert response.headers["Transfer-Encoding"] == "chunked"
    assert json.loads(gzip.decompress(raw))["code"] == "500"


async def test_the_mocks_own_stats_are_written_plainly() -> None:
    async with zoho(WireOptions(fragments=5, chunked=True, gzip=True)) as (_, url, session):
        async with session.get(url + "/__mock__/stats") as response:
            body = await response.read()
            assert "Content-Encoding" not in response.headers and response.content_length == len(body)
    assert "endpoints" in json.loads(body)


async def test_a_stalled_answer_holds_its_first_bytes_and_a_read_timeout_fires() -> None:
    wire = WireOptions(stall_after=50, stall_seconds=1000.0)  # 10 s scaled: far past the read timeout
    async with zoho(wire) as (_, url, session):
        received = b""
        async with session.post(url + "/oauth/v2/token", data=TOKEN_FORM,
                                timeout=aiohttp.ClientTimeout(sock_read=0.3)) as response:
            with pytest.raises(asyncio.TimeoutError):
                async for piece in response.content.iter_any():
                    received += piece
            assert response.content_length is not None and response.content_length > 50
    assert len(received) == 50 and received.startswith(b'{"access_token": "1000.')


async def test_a_stall_share_of_zero_never_stalls() -> None:
    wire = WireOptions(stall_after=50, stall_seconds=1000.0, stall_share=0.0)
    async with zoho(wire) as (mock, url, session):
        headers = {"Authorization": "Zoho-oauthtoken " + await token(session, url, wire)}
        address, params = unenroll_url(mock, url)
        async with session.post(address, params=params, headers=headers,
                                timeout=aiohttp.ClientTimeout(sock_read=5.0)) as response:
            body = await response.read()
    assert len(json.loads(body)["learners"]) == 100


# -- HTTPS -----------------------------------------------------------------------------------


async def test_https_on_loopback_is_trusted_by_the_test_authority_only(tls: LoopbackTLS) -> None:
    wire = WireOptions(fragments=4, fragment_pause=1.0, chunked=True, gzip=True)
    async with zoho(wire, tls=tls) as (mock, url, session):
        assert url.startswith("https://127.0.0.1:")
        headers = {"Authorization": "Zoho-oauthtoken " + await token(session, url, wire)}
        async with aiohttp.ClientSession() as stranger:  # the system's authorities only
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with stranger.get(url + "/__mock__/stats"):
                    pass
        (course, batch) = next(iter(mock.state.batches))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client)) as client:
            # the engine's transport reads the TLS, gzip, chunked answer in pieces to its end
            answer = await AiohttpTransport(client, url).send(
                HttpRequest("GET", f"/api/v1/courses/{course}/batches/{batch}/learners"), headers)
    assert len(json.loads(answer.body)["learners"]) == 25


async def test_smarteru_with_require_https_refuses_plain_http_and_serves_https(tls: LoopbackTLS) -> None:
    state = SmarterUMockState.generate(3, 0)
    config = SmarterUMockConfig(time_scale=TIME_SCALE, require_https=True)
    keys = ApiKeys.of(config.account_api_key, config.user_api_key)
    request = build_learner_report(keys, list(state.enrollments))
    answers = {}
    for scheme, server_ssl in (("http", None), ("https", tls.server)):
        mock = SmarterUMock(config, state)
        async with mock.serve(ssl_context=server_ssl) as server, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.client)) as session:
            assert server.url.startswith(scheme + "://")
            answers[scheme] = (await AiohttpTransport(session, server.url).send(request, {})).body
    assert b"SU:01" in answers["http"] and b"No POST data detected" in answers["http"]
    assert {r.id for r in read_learner_report(HttpResponse(200, answers["https"], {}))} == set(state.enrollments)


# -- each mock's command line ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


VENDOR_CALLS = {
    "zoho": ("/oauth/v2/token", TOKEN_FORM),
    "docebo": ("/oauth2/token", {"grant_type": "client_credentials", "client_id": "mock-client-id",
                                 "client_secret": "mock-client-secret"}),
    "smarteru": ("/apiv2/", {"Package": "<SmarterU><AccountAPI>mock-account-api</AccountAPI><UserAPI>mock-user-api"
                                        "</UserAPI><Method>getLearnerReport</Method><Parameters/></SmarterU>"}),
}


@pytest.mark.parametrize("vendor", sorted(VENDOR_CALLS))
async def test_each_mock_process_serves_https_with_fragmented_answers(vendor: str, tmp_path: Path) -> None:
    port, ca_file = _free_port(), tmp_path / "ca.pem"
    extra = ["--require-https"] if vendor == "smarteru" else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"unenroll.adapters.{vendor}.mock", "--port", str(port), "--time-scale", "0.01",
        "--fragmented", "--tls-self-signed", str(ca_file), *extra,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    path, form = VENDOR_CALLS[vendor]
    try:
        for _ in range(200):  # bounded: up to ~10 s for the interpreter to start
            if ca_file.exists() and ca_file.stat().st_size:
                break
            await asyncio.sleep(0.05)
        client = ssl.create_default_context(cafile=str(ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client)) as session:
            for _ in range(200):
                try:
                    async with session.post(f"https://127.0.0.1:{port}{path}", data=form) as response:
                        body = await response.read()  # decoded by aiohttp
                        headers = response.headers
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the mock process did not start")
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    assert headers["Content-Encoding"] == "gzip" and headers["Transfer-Encoding"] == "chunked"
    assert (b"<Result>Success</Result>" in body) if vendor == "smarteru" else ("access_token" in json.loads(body))


@pytest.mark.parametrize("flags", [["--tls-cert", "x.pem"], ["--fragments", "0"],
                                   ["--tls-self-signed", "ca.pem", "--tls-cert", "a", "--tls-key", "b"]])
def test_a_mocks_bad_wire_flag_ends_in_a_usage_error(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from unenroll.adapters.docebo.mock import main

    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


async def test_a_mock_serves_https_with_a_certificate_and_key_from_files(tmp_path: Path) -> None:
    import trustme

    authority = trustme.CA()
    pem = tmp_path / "server.pem"
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    client = ssl.create_default_context()
    authority.configure_trust(client)
    mock = ZohoMock(ZohoMockConfig(time_scale=TIME_SCALE), ZohoMockState.generate(1, 1, 5))
    async with mock.serve(ssl_context=server_tls(str(pem), str(pem))) as server, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client)) as session:
        async with session.post(server.url + "/oauth/v2/token", data=TOKEN_FORM) as response:
            answer = await response.json()
    assert server.url.startswith("https://") and answer["token_type"] == "Bearer"


async def test_an_empty_answer_goes_out_whole_chunked() -> None:
    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=200, body=b"")

    app = mock_app(WireOptions(fragments=3, chunked=True), time_scale=TIME_SCALE, seed=0)
    app.router.add_post("/empty", empty)
    async with MockServer(app) as server, aiohttp.ClientSession() as session:
        async with session.post(server.url + "/empty") as response:
            assert await response.read() == b""
            assert response.headers["Transfer-Encoding"] == "chunked"
