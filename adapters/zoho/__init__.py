"""Zoho People LMS: the vendor plugin (declarations in ``adapter``, its mock in ``mock``).

Discovered through the ``unenroll.vendors`` entry point; the engine never imports it.
Credentials are read from these environment variables (or a credentials file with the
same names) and nowhere else: UNENROLL_ZOHO_REFRESH_TOKEN, UNENROLL_ZOHO_CLIENT_ID and UNENROLL_ZOHO_CLIENT_SECRET .
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from unenroll.contract import (
    PLACEHOLDER,
    Adapter,
    BuildRequest,
    Column,
    ConfigError,
    InputOperation,
    Item,
    MockOption,
    MockPlugin,
    MockRequest,
    RowShape,
    Sandbox,
    Secret,
    VendorPlugin,
    check_url,
    is_loopback,
    limit_keys_of,
    limits_from,
    missing_credentials,
)
from unenroll.contract.mock import Faults, Latency, WireOptions

from . import adapter
from .adapter import ZohoLimits, ZohoPeople

ZOHO_CREDENTIALS = ("UNENROLL_ZOHO_REFRESH_TOKEN", "UNENROLL_ZOHO_CLIENT_ID", "UNENROLL_ZOHO_CLIENT_SECRET",
                    "UNENROLL_ZOHO_ACCESS_TOKEN")
ZOHO_CREDENTIAL_HELP = ("UNENROLL_ZOHO_REFRESH_TOKEN, UNENROLL_ZOHO_CLIENT_ID and UNENROLL_ZOHO_CLIENT_SECRET "
                        "(or UNENROLL_ZOHO_ACCESS_TOKEN)")


def _zoho_accounts_url(base_url: str) -> str | None:
    """Zoho's accounts host for a data centre's people host (people.zoho.eu -> accounts.zoho.eu)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if host.startswith("people.zoho."):
        return f"{parts.scheme}://accounts.{host.removeprefix('people.')}"
    return None


def _build_zoho(request: BuildRequest) -> Adapter:
    s = request.settings
    c = s.connection
    base_url = check_url("base_url", c.base_url or adapter.BASE_URL, allow_insecure_http=c.allow_insecure_http)
    # a mock on this machine serves the token endpoint too: never send its run's refresh
    # token to a real Zoho accounts server by default
    default_accounts = base_url if is_loopback(base_url) else _zoho_accounts_url(base_url) or adapter.ACCOUNTS_URL
    accounts_url = c.accounts_url or default_accounts
    check_url("accounts_url", accounts_url, allow_insecure_http=c.allow_insecure_http)
    if is_loopback(base_url) and not is_loopback(accounts_url):
        raise ConfigError("base_url is a mock on this machine but accounts_url is not: the refresh token would "
                          "go to a real Zoho accounts server; point accounts_url at the mock too")
    refresh, client_id, client_secret, access = (request.credential(n) for n in ZOHO_CREDENTIALS)
    if not (refresh and client_id and client_secret) and not access:
        if not request.dry_run:
            raise missing_credentials("Zoho People", ZOHO_CREDENTIAL_HELP)
        access = Secret(PLACEHOLDER)
    limits = limits_from(adapter.ZohoLimits, s.limits)
    common: dict[str, Any] = {
        "session": request.session, "base_url": base_url, "accounts_url": accounts_url, "limits": limits,
        "time_scale": c.time_scale, "timeout": request.timeout(60.0),
    }
    if refresh and client_id and client_secret:
        return adapter.ZohoPeople(refresh_token=refresh, client_id=client_id.reveal(), client_secret=client_secret,
                               **common)
    return adapter.ZohoPeople(access_token=access, **common)


def _zoho_limit_keys() -> dict[str, type]:
    return limit_keys_of(adapter.ZohoLimits)


_ZOHO_COURSE = Column("course_id", "the course's id")
_ZOHO_BATCH = Column("batch_id", "the batch's id")
_ZOHO_ERECNO = Column("erecno", "the employee's erecno", aliases=("erecNo", "Employee ID"))


def _demo_items(batches: Mapping[tuple[str, str], Mapping[str, str]], seed: int) -> Iterator[Item]:
    """Every enrolled learner once, plus, at fixed places, rows of the kinds users get
    wrong: a repeated row, a malformed id, someone who is not enrolled there."""
    import random

    rng = random.Random(seed)
    targets = list(batches)
    for row, (target, erecno) in enumerate((t, e) for t in targets for e in batches[t]):
        yield Item("unenroll", target, erecno, meta={"row": row})
        if row % 397 == 5:
            yield Item("unenroll", target, erecno, meta={"row": f"{row} again"})
        if row % 601 == 7:
            yield Item("unenroll", target, erecno + "x", meta={"row": f"{row} typo"})
        if row % 251 == 3:
            yield Item("unenroll", rng.choice(targets), str(9_000_000_000_000 + row), meta={"row": f"{row} stale"})


def _sandbox(request: MockRequest) -> Sandbox:
    from . import mock

    config = mock.ZohoMockConfig(
        time_scale=request.time_scale, latency=Latency(base=request.latency),
        faults=Faults.at_rate(request.fault_rate), seed=request.seed, wire=request.wire or WireOptions(),
        client_id=request.credential("UNENROLL_ZOHO_CLIENT_ID", "mock-client-id"),
        client_secret=request.credential("UNENROLL_ZOHO_CLIENT_SECRET", "mock-client-secret"),
        refresh_token=request.credential("UNENROLL_ZOHO_REFRESH_TOKEN", "mock-refresh-token"),
    )
    state = mock.ZohoMockState.generate(request.option("courses", 2), request.option("batches", 2),
                                        request.option("learners", 100), seed=request.seed)
    env = ["UNENROLL_ACCOUNTS_URL={url}"]  # the mock serves the token endpoint too
    if "UNENROLL_ZOHO_REFRESH_TOKEN" not in request.environ:
        env += [f"UNENROLL_ZOHO_REFRESH_TOKEN={config.refresh_token}", f"UNENROLL_ZOHO_CLIENT_ID={config.client_id}",
                f"UNENROLL_ZOHO_CLIENT_SECRET={config.client_secret}"]
    batches = {k: dict(v) for k, v in state.batches.items()}
    return Sandbox(mock.ZohoMock(config, state).app, env, demo_items=lambda: _demo_items(batches, request.seed))


MOCK = MockPlugin(
    options=(
        MockOption("courses", int, 2, "Courses."),
        MockOption("batches", int, 2, "Batches per course."),
        MockOption("learners", int, 100, "Learners per batch."),
    ),
    build=_sandbox,
    hint="--courses, --batches (per course) and --learners (per batch)",
    demo_options={"courses": 2, "batches": 3, "learners": 1000},
)

ZOHO = VendorPlugin(
    name="zoho",
    title="Zoho People LMS",
    operations={
        "unenroll": InputOperation(
            "unenroll", "unenroll employees from a course batch (many per call)",
            RowShape("unenroll", (_ZOHO_COURSE, _ZOHO_BATCH, _ZOHO_ERECNO),
                     lambda v: ((v["course_id"], v["batch_id"]), v["erecno"]))),
        "remove_learner": InputOperation(
            "remove_learner", "remove one learner from a course batch by learnerId (one per call)",
            RowShape("remove_learner", (_ZOHO_COURSE, _ZOHO_BATCH, Column("learner_id", "the learnerId",
                                                                          aliases=("learnerId",))),
                     lambda v: ((v["course_id"], v["batch_id"]), v["learner_id"]))),
        "share_course": InputOperation(
            "share_course", "share a course with employees",
            RowShape("share_course", (_ZOHO_COURSE, _ZOHO_ERECNO), lambda v: ((v["course_id"],), v["erecno"]))),
    },
    credential_names=ZOHO_CREDENTIALS,
    credential_help=ZOHO_CREDENTIAL_HELP,
    destructive_flags={},
    default_base_url="https://people.zoho.com",
    limit_keys=_zoho_limit_keys,
    build=_build_zoho,
    mock=MOCK,
    demo=True,
)

plugin = ZOHO

__all__ = ['ZohoLimits', 'ZohoPeople', 'plugin']
