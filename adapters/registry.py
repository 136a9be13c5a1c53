"""The composition root: per vendor, how to build its adapter from settings and
credentials, the rows each operation reads, and how to serve its mock as a sandbox.

Only the command line imports this module; the engine knows no vendor. Adapter and mock
modules are imported when a vendor is used, so ``unenroll --help`` stays fast.

Credentials are read from these environment variables (or a credentials file with the
same names) and nowhere else:

- Zoho People: ``UNENROLL_ZOHO_REFRESH_TOKEN``, ``UNENROLL_ZOHO_CLIENT_ID``,
  ``UNENROLL_ZOHO_CLIENT_SECRET`` (tokens are fetched and refreshed), or
  ``UNENROLL_ZOHO_ACCESS_TOKEN`` (used as is);
- SmarterU: ``UNENROLL_SMARTERU_ACCOUNT_API_KEY`` and ``UNENROLL_SMARTERU_USER_API_KEY``;
- Docebo: ``UNENROLL_DOCEBO_CLIENT_ID`` and ``UNENROLL_DOCEBO_CLIENT_SECRET``, plus
  ``UNENROLL_DOCEBO_USERNAME`` and ``UNENROLL_DOCEBO_PASSWORD`` for the password grant;
  or ``UNENROLL_DOCEBO_ACCESS_TOKEN``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from unenroll.cli.config import ConfigError, Credentials, RunSettings
from unenroll.contract.declarations import Adapter
from unenroll.inputs.files import Column, RowShape
from unenroll.observe.secrets import Secret
from unenroll.wire.http import LOOPBACK_HOSTS, is_loopback

if TYPE_CHECKING:
    import aiohttp

# stands in for a credential a dry run was not given: it sends nothing, so none is needed
PLACEHOLDER = "unset-credential-for-a-dry-run"


@dataclass(frozen=True, slots=True)
class InputOperation:
    """An operation as the command line offers it: its name, what it does, its rows."""

    name: str
    help: str
    shape: RowShape


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """What building an adapter takes. ``dry_run``: missing credentials are replaced by
    placeholders (nothing will be sent)."""

    settings: RunSettings
    credentials: Credentials
    session: aiohttp.ClientSession
    destructive: frozenset[str] = frozenset()
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class VendorEntry:
    name: str
    title: str
    operations: Mapping[str, InputOperation]
    credential_names: tuple[str, ...]
    credential_help: str  # which combinations are accepted
    destructive_flags: Mapping[str, str]  # flag -> what it does
    default_base_url: str | None
    limit_keys: Callable[[], dict[str, type]]  # the vendor's limits that a settings file may override
    build: Callable[[BuildRequest], Adapter]
    mock_hint: str = ""  # how the mock's state looks, for `mock serve --help`

    @property
    def env_prefix(self) -> str:
        return f"UNENROLL_{self.name.upper()}_"


# -- shared pieces ---------------------------------------------------------------------------


def check_url(name: str, url: str, *, allow_insecure_http: bool) -> str:
    """``url`` if it is https (or http to a loopback host, when allowed): credentials
    never travel in clear over a network."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        if not allow_insecure_http:
            raise ConfigError(f"{name} {url!r} is plain HTTP: use https://, or set allow_insecure_http "
                              "(UNENROLL_ALLOW_INSECURE_HTTP=1) for a mock on this machine")
        if parts.hostname not in LOOPBACK_HOSTS:
            raise ConfigError(f"allow_insecure_http is for a mock on this machine (127.0.0.1) only, "
                              f"not {parts.hostname!r}")
        return url
    raise ConfigError(f"{name} must look like https://host, not {url!r}")


def _limit_keys(limits_type: Any) -> dict[str, type]:
    keys: dict[str, type] = {}
    for f in dataclasses.fields(limits_type):
        kind = str(f.type)
        if kind.startswith("int"):
            keys[f.name] = int
        elif kind.startswith("float"):
            keys[f.name] = float
    return keys


def _limits(limits_type: Any, overrides: Mapping[str, float]) -> Any:
    return limits_type(**overrides)


def _credential(request: BuildRequest, name: str) -> Secret | None:
    return request.credentials.get(name)


def _missing(entry: str, help_text: str) -> ConfigError:
    return ConfigError(f"no credentials for {entry}: set {help_text} in the environment or in a "
                       "--credentials-file")


def _timeout(settings: RunSettings, default: float) -> float:
    return settings.connection.timeout if settings.connection.timeout is not None else default


# -- Zoho People -----------------------------------------------------------------------------

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
    from unenroll.adapters import zoho

    s = request.settings
    c = s.connection
    base_url = check_url("base_url", c.base_url or zoho.BASE_URL, allow_insecure_http=c.allow_insecure_http)
    # a mock on this machine serves the token endpoint too: never send its run's refresh
    # token to a real Zoho accounts server by default
    default_accounts = base_url if is_loopback(base_url) else _zoho_accounts_url(base_url) or zoho.ACCOUNTS_URL
    accounts_url = c.accounts_url or default_accounts
    check_url("accounts_url", accounts_url, allow_insecure_http=c.allow_insecure_http)
    if is_loopback(base_url) and not is_loopback(accounts_url):
        raise ConfigError("base_url is a mock on this machine but accounts_url is not: the refresh token would "
                          "go to a real Zoho accounts server; point accounts_url at the mock too")
    refresh, client_id, client_secret, access = (_credential(request, n) for n in ZOHO_CREDENTIALS)
    if not (refresh and client_id and client_secret) and not access:
        if not request.dry_run:
            raise _missing("Zoho People", ZOHO_CREDENTIAL_HELP)
        access = Secret(PLACEHOLDER)
    limits = _limits(zoho.ZohoLimits, s.limits)
    common: dict[str, Any] = {
        "session": request.session, "base_url": base_url, "accounts_url": accounts_url, "limits": limits,
        "time_scale": c.time_scale, "timeout": _timeout(s, 60.0),
    }
    if refresh and client_id and client_secret:
        return zoho.ZohoPeople(refresh_token=refresh, client_id=client_id.reveal(), client_secret=client_secret,
                               **common)
    return zoho.ZohoPeople(access_token=access, **common)


def _zoho_limit_keys() -> dict[str, type]:
    from unenroll.adapters import zoho

    return _limit_keys(zoho.ZohoLimits)


_ZOHO_COURSE = Column("course_id", "the course's id")
_ZOHO_BATCH = Column("batch_id", "the batch's id")
_ZOHO_ERECNO = Column("erecno", "the employee's erecno", aliases=("erecNo",))

ZOHO = VendorEntry(
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
    mock_hint="--courses, --batches (per course) and --learners (per batch)",
)


# -- SmarterU --------------------------------------------------------------------------------

SMARTERU_CREDENTIALS = ("UNENROLL_SMARTERU_ACCOUNT_API_KEY", "UNENROLL_SMARTERU_USER_API_KEY")
SMARTERU_CREDENTIAL_HELP = "UNENROLL_SMARTERU_ACCOUNT_API_KEY and UNENROLL_SMARTERU_USER_API_KEY"


def _build_smarteru(request: BuildRequest) -> Adapter:
    from unenroll.adapters import smarteru

    s = request.settings
    c = s.connection
    base_url = check_url("base_url", c.base_url or smarteru.BASE_URL, allow_insecure_http=c.allow_insecure_http)
    account, user = (_credential(request, n) for n in SMARTERU_CREDENTIALS)
    if not (account and user):
        if not request.dry_run:
            raise _missing("SmarterU", SMARTERU_CREDENTIAL_HELP)
        account, user = account or Secret(PLACEHOLDER), user or Secret(PLACEHOLDER)
    try:
        return smarteru.SmarterU(
            account_api_key=account, user_api_key=user, session=request.session, base_url=base_url,
            allow_insecure_http=c.allow_insecure_http, limits=_limits(smarteru.SmarterULimits, s.limits),
            time_scale=c.time_scale, timeout=_timeout(s, 60.0),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _smarteru_limit_keys() -> dict[str, type]:
    from unenroll.adapters import smarteru

    keys = _limit_keys(smarteru.SmarterULimits)
    keys["calls_per_window"] = int  # `int | None`: None (the default) learns the rate from 429s
    return keys


def _smarteru_item(values: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    return ("account",), values["enrollment_id"]


SMARTERU = VendorEntry(
    name="smarteru",
    title="SmarterU",
    operations={
        "unenroll": InputOperation(
            "unenroll", "unenroll enrolments (queued by SmarterU, up to 100 per call)",
            RowShape("unenroll", (Column("enrollment_id", "the enrolment's AccountUserLearningModuleRelID",
                                         aliases=("AccountUserLearningModuleRelID", "ID")),),
                     _smarteru_item)),
    },
    credential_names=SMARTERU_CREDENTIALS,
    credential_help=SMARTERU_CREDENTIAL_HELP,
    destructive_flags={},
    default_base_url="https://api.smarteru.com",
    limit_keys=_smarteru_limit_keys,
    build=_build_smarteru,
    mock_hint="--enrolled and --queued (enrolments), --queue-delay",
)


# -- Docebo ----------------------------------------------------------------------------------

DOCEBO_CREDENTIALS = ("UNENROLL_DOCEBO_CLIENT_ID", "UNENROLL_DOCEBO_CLIENT_SECRET", "UNENROLL_DOCEBO_USERNAME",
                      "UNENROLL_DOCEBO_PASSWORD", "UNENROLL_DOCEBO_ACCESS_TOKEN")
DOCEBO_CREDENTIAL_HELP = ("UNENROLL_DOCEBO_CLIENT_ID and UNENROLL_DOCEBO_CLIENT_SECRET (with UNENROLL_DOCEBO_USERNAME "
                          "and UNENROLL_DOCEBO_PASSWORD for the password grant), or UNENROLL_DOCEBO_ACCESS_TOKEN")
DOCEBO_FLAGS = {
    "reset_tracks": "also wipe the learners' tracking data of the course or plan",
    "cascade_unenroll_from_courses_in_selected_learning_plan":
        "also unenroll from every course of the learning plan (learning plans only)",
    "delete_issued_certificates": "also delete the certificates already issued",
}


def _build_docebo(request: BuildRequest) -> Adapter:
    from unenroll.adapters import docebo

    s = request.settings
    c = s.connection
    if not c.base_url:
        raise ConfigError("Docebo needs its base_url (https://<subdomain>.docebosaas.com): set base_url in the "
                          "settings file or UNENROLL_BASE_URL")
    base_url = check_url("base_url", c.base_url, allow_insecure_http=c.allow_insecure_http)
    client_id, client_secret, username, password, access = (_credential(request, n) for n in DOCEBO_CREDENTIALS)
    if bool(username) != bool(password):
        raise ConfigError("Docebo's password grant needs both UNENROLL_DOCEBO_USERNAME and UNENROLL_DOCEBO_PASSWORD")
    if not (client_id and client_secret) and not access:
        if not request.dry_run:
            raise _missing("Docebo", DOCEBO_CREDENTIAL_HELP)
        access = Secret(PLACEHOLDER)
    flags = {name: name in request.destructive for name in DOCEBO_FLAGS}
    common: dict[str, Any] = {
        "session": request.session, "base_url": base_url, "limits": _limits(docebo.DoceboLimits, s.limits),
        "time_scale": c.time_scale, "timeout": _timeout(s, 120.0), **flags,
    }
    if client_id and client_secret:
        return docebo.Docebo(client_id=client_id.reveal(), client_secret=client_secret,
                             username=username.reveal() if username else None, password=password, **common)
    return docebo.Docebo(access_token=access, **common)


def _docebo_limit_keys() -> dict[str, type]:
    from unenroll.adapters import docebo

    keys = _limit_keys(docebo.DoceboLimits)
    keys["min_interval"] = float  # `float | None`: None spaces calls at the bucket's leak rate
    return keys


_DOCEBO_USER = Column("user_id", "the user's id (Docebo's User Unique ID)", aliases=("User Unique ID",))

DOCEBO = VendorEntry(
    name="docebo",
    title="Docebo",
    operations={
        "unenroll": InputOperation(
            "unenroll", "unenroll users from courses (up to 1,000 users a call)",
            RowShape("unenroll", (Column("course_id", "the course's id", aliases=("Course Unique ID",)), _DOCEBO_USER),
                     lambda v: (("course", v["course_id"]), v["user_id"]))),
        "unenroll_learningplan": InputOperation(
            "unenroll_learningplan", "unenroll users from learning plans (up to 1,000 users a call)",
            RowShape("unenroll", (Column("learningplan_id", "the learning plan's id"), _DOCEBO_USER),
                     lambda v: (("learningplan", v["learningplan_id"]), v["user_id"]))),
    },
    credential_names=DOCEBO_CREDENTIALS,
    credential_help=DOCEBO_CREDENTIAL_HELP,
    destructive_flags=DOCEBO_FLAGS,
    default_base_url=None,
    limit_keys=_docebo_limit_keys,
    build=_build_docebo,
    mock_hint="--courses, --plans, --courses-per-plan and --learners (users per course and plan)",
)


VENDORS: dict[str, VendorEntry] = {v.name: v for v in (ZOHO, SMARTERU, DOCEBO)}


def all_destructive_flags() -> dict[str, str]:
    flags: dict[str, str] = {}
    for vendor in VENDORS.values():
        for name, help_text in vendor.destructive_flags.items():
            flags[name] = f"({vendor.title}) {help_text}"
    return flags


# -- mocks as sandboxes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MockOptions:
    time_scale: float = 1.0
    seed: int = 0
    fault_rate: float = 0.0  # share of calls answered with a server error, a dropped connection or a bad body
    latency: float = 0.0  # seconds per call before time scale
    courses: int = 2
    batches: int = 2
    learners: int = 100
    plans: int = 2
    courses_per_plan: int = 3
    enrolled: int = 1000
    queued: int = 0
    queue_delay: float = 60.0
    environ: Mapping[str, str] = field(default_factory=dict)  # credentials the mock accepts, if set


def _env(options: MockOptions, name: str, default: str) -> str:
    value = options.environ.get(name, "").strip()
    return value or default


def build_mock(vendor: str, options: MockOptions) -> tuple[Any, list[str]]:
    """The vendor's mock app (an ``aiohttp.web.Application``) seeded from ``options``, and
    the settings a run needs to use it (no secrets: the mock accepts the credentials in
    the environment if they are set, else its own well-known ones)."""
    from unenroll.adapters.mocks.common import Faults, Latency

    share = options.fault_rate / 3
    faults = Faults(server_error=share, drop=share, truncated=share)
    latency = Latency(base=options.latency)
    env: list[str] = []
    if vendor == "zoho":
        from unenroll.adapters.mocks.zoho import ZohoMock, ZohoMockConfig, ZohoMockState

        zoho_config = ZohoMockConfig(
            time_scale=options.time_scale, latency=latency, faults=faults, seed=options.seed,
            client_id=_env(options, "UNENROLL_ZOHO_CLIENT_ID", "mock-client-id"),
            client_secret=_env(options, "UNENROLL_ZOHO_CLIENT_SECRET", "mock-client-secret"),
            refresh_token=_env(options, "UNENROLL_ZOHO_REFRESH_TOKEN", "mock-refresh-token"),
        )
        zoho_state = ZohoMockState.generate(options.courses, options.batches, options.learners, seed=options.seed)
        if "UNENROLL_ZOHO_REFRESH_TOKEN" not in options.environ:
            env += ["UNENROLL_ZOHO_REFRESH_TOKEN=mock-refresh-token", "UNENROLL_ZOHO_CLIENT_ID=mock-client-id",
                    "UNENROLL_ZOHO_CLIENT_SECRET=mock-client-secret"]
        return ZohoMock(zoho_config, zoho_state).app, env
    if vendor == "smarteru":
        from unenroll.adapters.mocks.smarteru import SmarterUMock, SmarterUMockConfig, SmarterUMockState

        smarteru_config = SmarterUMockConfig(
            time_scale=options.time_scale, latency=latency, faults=faults, seed=options.seed,
            queue_delay=options.queue_delay,
            account_api_key=_env(options, "UNENROLL_SMARTERU_ACCOUNT_API_KEY", "mock-account-api"),
            user_api_key=_env(options, "UNENROLL_SMARTERU_USER_API_KEY", "mock-user-api"),
        )
        smarteru_state = SmarterUMockState.generate(options.enrolled, options.queued, seed=options.seed)
        if "UNENROLL_SMARTERU_ACCOUNT_API_KEY" not in options.environ:
            env += ["UNENROLL_SMARTERU_ACCOUNT_API_KEY=mock-account-api",
                    "UNENROLL_SMARTERU_USER_API_KEY=mock-user-api"]
        return SmarterUMock(smarteru_config, smarteru_state).app, env
    if vendor == "docebo":
        from unenroll.adapters.mocks.docebo import DoceboMock, DoceboMockConfig, DoceboMockState

        docebo_config = DoceboMockConfig(
            time_scale=options.time_scale, latency=latency, faults=faults, seed=options.seed,
            client_id=_env(options, "UNENROLL_DOCEBO_CLIENT_ID", "mock-client-id"),
            client_secret=_env(options, "UNENROLL_DOCEBO_CLIENT_SECRET", "mock-client-secret"),
            username=_env(options, "UNENROLL_DOCEBO_USERNAME", "mock-admin"),
            password=_env(options, "UNENROLL_DOCEBO_PASSWORD", "mock-password"),
        )
        docebo_state = DoceboMockState.generate(options.courses, options.plans, options.courses_per_plan,
                                                options.learners, seed=options.seed)
        if "UNENROLL_DOCEBO_CLIENT_ID" not in options.environ:
            env += ["UNENROLL_DOCEBO_CLIENT_ID=mock-client-id", "UNENROLL_DOCEBO_CLIENT_SECRET=mock-client-secret"]
        return DoceboMock(docebo_config, docebo_state).app, env
    raise ConfigError(f"no mock for {vendor!r} (known: {', '.join(VENDORS)})")


def describe_columns(vendors: Sequence[VendorEntry] = tuple(VENDORS.values())) -> list[tuple[str, str]]:
    """(vendor operation, its columns) for help texts."""
    rows = []
    for vendor in vendors:
        for op in vendor.operations.values():
            rows.append((f"{vendor.name} {op.name}", ", ".join(op.shape.column_names)))
    return rows
