"""End to end: a vendor whose errors quote the credentials, in every encoding, leaks none
of them into the results files, the journal, the logs, the outcomes or the report.

A tiny Zoho on 127.0.0.1 answers the token request, then every unenroll call with an error
whose message quotes the ``Authorization`` header, the refresh token and the client secret:
raw, URL-encoded (``quote`` and ``quote_plus``), XML-escaped and JSON-escaped (``\\/``).
The command line, against a SmarterU that quotes a 7-character key, prints and writes none."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
import structlog
from aiohttp import web

from tests.conftest import TIME_SCALE
from tests.test_cli_run import clean_env, run_cli
from unenroll import Item, ItemOutcome, JobSettings, Report, ResultsWriter, RetryPolicy, run
from unenroll.accounts.journal import Journal
from unenroll.adapters.zoho.adapter import ZohoLimits, ZohoPeople
from unenroll.contract.mock import MockServer
from unenroll.observe.logs import configure_logging
from unenroll.observe.secrets import MASK

REFRESH_TOKEN = "1000.r3fresh/Tok+en&x=\"q'<9>\u00e9-Wm5Kc8"
ACCESS_TOKEN = "1000.acc/ess+Tok&en<7>=Yb2Nf6"
CLIENT_ID = "1000.CLIENT-Hv4Qs"
LONG_CLIENT_SECRET = "cs/Se+cr&et<9>\"\u00e9'x-Lq4Vz"
SHORT_CLIENT_SECRET = "SEKRIT7"  # 7 characters: blanked as a whole token
SETTINGS = JobSettings(retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01), linger=0.05, seed=5)
ITEMS = [Item("unenroll", ("5000000000000", "5000000000001"), str(7000000000001 + n)) for n in range(6)]


def forms(value: str) -> list[str]:
    """How the vendor quotes ``value``."""
    return [value, quote(value, safe=""), quote_plus(value), html.escape(value),
            json.dumps(value)[1:-1].replace("/", "\\/")]


def leaky_zoho(status: int) -> web.Application:
    """Grants ``ACCESS_TOKEN``; answers every unenroll with ``status`` quoting what it was sent."""
    sent: dict[str, str] = {}

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        sent.update({k: str(v) for k, v in form.items()})
        return web.json_response({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})

    async def unenroll(request: web.Request) -> web.Response:
        quoted = [request.headers.get("Authorization", ""), sent["refresh_token"], sent["client_secret"]]
        message = "upstream failed; your request was: " + " | ".join(f for value in quoted for f in forms(value))
        return web.json_response({"code": "9000", "message": message}, status=status)

    app = web.Application()
    app.router.add_post("/oauth/v2/token", token)
    app.router.add_post("/api/v1/courses/{course}/batches/{batch}/unenroll", unenroll)
    return app


def strings(value: Any) -> Iterator[str]:
    """Every string inside a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


@pytest.mark.parametrize("client_secret", [LONG_CLIENT_SECRET, SHORT_CLIENT_SECRET], ids=["long", "short"])
@pytest.mark.parametrize("status", [500, 403], ids=["retried-then-gave-up", "fatal-stop"])
async def test_no_form_of_any_credential_reaches_any_sink(tmp_path: Path, status: int, client_secret: str) -> None:
    log = io.StringIO()
    configure_logging(json=True, level="debug", stream=log)
    outcomes: list[ItemOutcome] = []
    journal_path = tmp_path / "job.journal"
    try:
        async with MockServer(leaky_zoho(status)) as server, aiohttp.ClientSession() as session:
            adapter = ZohoPeople(session=session, base_url=server.url, accounts_url=server.url,
                                 refresh_token=REFRESH_TOKEN, client_id=CLIENT_ID, client_secret=client_secret,
                                 limits=ZohoLimits(margin=5.0), time_scale=TIME_SCALE, timeout=5.0)
            with (ResultsWriter(tmp_path / "results.csv") as as_csv,
                  ResultsWriter(tmp_path / "results.jsonl") as as_jsonl,
                  Journal.open(journal_path, "leak-test") as journal):
                report = await run(adapter, ITEMS, settings=SETTINGS, sinks=[as_csv, as_jsonl, outcomes.append],
                                   journal=journal)
    finally:
        structlog.reset_defaults()

    # the vendor's text did reach every item's outcome, blanked
    assert report.total == len(ITEMS) == len(outcomes)
    assert all(o.message and MASK in o.message for o in outcomes)
    if status == 500:
        assert report.counts == {"gave_up": len(ITEMS)}
        assert all("upstream failed" in (o.message or "") for o in outcomes)
    else:
        assert report.stopped is not None and "upstream failed" in report.stopped and MASK in report.stopped

    leaks = [f for value in (f"Zoho-oauthtoken {ACCESS_TOKEN}", ACCESS_TOKEN, REFRESH_TOKEN, client_secret)
             for f in forms(value)]
    seen = what_the_sinks_hold(tmp_path, journal_path, outcomes, report, log.getvalue())
    assert seen["logs"], "the job logged nothing: the log check would prove nothing"
    for where, texts in seen.items():
        for leak in leaks:
            hits = [text for text in texts if leak in text]
            assert not hits, f"{leak!r} in {where}: {hits[0][:300]!r}"


def what_the_sinks_hold(folder: Path, journal_path: Path, outcomes: list[ItemOutcome], report: Report,
                        log: str) -> dict[str, list[str]]:
    """Every text each sink holds: decoded (CSV cells, JSON strings, journal rows) and every file's raw bytes."""
    with sqlite3.connect(journal_path) as db:
        journal_rows = [str(v) for row in db.execute("SELECT outcome, code, message FROM items") for v in row]
    csv_text = (folder / "results.csv").read_text()
    seen = {
        "outcomes": [str(o.as_record()) for o in outcomes],
        "results.csv": [cell for row in csv.reader(io.StringIO(csv_text)) for cell in row],
        "results.jsonl": [s for line in (folder / "results.jsonl").read_text().splitlines()
                          for s in strings(json.loads(line))],
        "journal": journal_rows,
        "logs": [s for line in log.splitlines() for s in strings(json.loads(line))],
        "report": [*strings(report.as_dict()), report.summary()],
        "raw log": [log],
    }
    seen |= {f"raw {p.name}": [p.read_bytes().decode("utf-8", "replace")] for p in folder.iterdir()}
    return seen


# -- the command line: a 7-character SmarterU key --------------------------------------------------

SHORT_ACCOUNT_KEY = "SEKRIT7"
LONG_USER_KEY = "user/Key+Vn4&Kt8<9>"


def leaky_smarteru() -> web.Application:
    """Refuses the keys (SU:02), quoting both as it read them from the package."""

    async def api(request: web.Request) -> web.Response:
        package = str((await request.post()).get("Package", ""))
        keys = [html.unescape(m) for m in re.findall(r"<(?:AccountAPI|UserAPI)>(.*?)</", package)]
        leak = "keys not valid: " + " | ".join(f for key in keys for f in forms(key))
        return web.Response(content_type="text/xml", text=(
            "<SmarterU><Result>Failed</Result><Info/><Errors><Error><ErrorID>SU:02</ErrorID>"
            f"<ErrorMessage>{html.escape(leak)}</ErrorMessage></Error></Errors></SmarterU>"))

    app = web.Application()
    app.router.add_post("/apiv2/", api)
    return app


@contextmanager
def served_in_a_thread(app: web.Application) -> Iterator[str]:
    """``app`` on 127.0.0.1 in a thread of its own (the command runs in a subprocess); its URL."""
    loop = asyncio.new_event_loop()
    started: list[tuple[web.AppRunner, str]] = []
    ready = threading.Event()

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        started.append((runner, f"http://127.0.0.1:{runner.addresses[0][1]}"))

    def serve() -> None:
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(started[0][0].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "the server did not start"
    try:
        yield started[0][1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_a_seven_character_key_and_an_encoded_key_reach_no_output_of_the_command(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("AccountUserLearningModuleRelID\n1000001\n1000002\n1000003\n")
    with served_in_a_thread(leaky_smarteru()) as url:
        env = clean_env(UNENROLL_BASE_URL=url, UNENROLL_ALLOW_INSECURE_HTTP="1", UNENROLL_TIME_SCALE="0.01",
                        UNENROLL_SMARTERU_ACCOUNT_API_KEY=SHORT_ACCOUNT_KEY,
                        UNENROLL_SMARTERU_USER_API_KEY=LONG_USER_KEY)
        result = run_cli(["run", "smarteru", str(source), "-v", "--json-logs"], env, tmp_path)
    assert result.returncode == 3, result.stderr[-2000:]  # the refused keys stop the job
    report = json.loads((tmp_path / "in.results.csv.report.json").read_text())
    assert "keys not valid" in report["stopped"] and MASK in report["stopped"]  # the vendor's text did arrive
    outputs = {"stdout": result.stdout, "stderr (JSON log)": result.stderr}
    outputs |= {p.name: p.read_bytes().decode("utf-8", "replace") for p in tmp_path.iterdir() if p != source}
    assert {"in.results.csv", "in.results.csv.report.json", "in.results.csv.journal"} <= set(outputs)
    for where, text in outputs.items():
        for leak in [*forms(SHORT_ACCOUNT_KEY), *forms(LONG_USER_KEY), json.dumps(LONG_USER_KEY)[1:-1]]:
            assert leak not in text, f"{leak!r} in {where}"
