"""SmarterU: the vendor plugin (declarations in ``adapter``, its mock in ``mock``).

Discovered through the ``unenroll.vendors`` entry point; the engine never imports it.
Credentials are read from these environment variables (or a credentials file with the
same names) and nowhere else: UNENROLL_SMARTERU_ACCOUNT_API_KEY and UNENROLL_SMARTERU_USER_API_KEY.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

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
    limit_keys_of,
    limits_from,
    missing_credentials,
)
from unenroll.contract.mock import Faults, Latency, WireOptions

from . import adapter
from .adapter import SmarterU, SmarterULimits, unenroll_item

SMARTERU_CREDENTIALS = ("UNENROLL_SMARTERU_ACCOUNT_API_KEY", "UNENROLL_SMARTERU_USER_API_KEY")
SMARTERU_CREDENTIAL_HELP = "UNENROLL_SMARTERU_ACCOUNT_API_KEY and UNENROLL_SMARTERU_USER_API_KEY"


def _build_smarteru(request: BuildRequest) -> Adapter:
    s = request.settings
    c = s.connection
    base_url = check_url("base_url", c.base_url or adapter.BASE_URL, allow_insecure_http=c.allow_insecure_http)
    account, user = (request.credential(n) for n in SMARTERU_CREDENTIALS)
    if not (account and user):
        if not request.dry_run:
            raise missing_credentials("SmarterU", SMARTERU_CREDENTIAL_HELP)
        account, user = account or Secret(PLACEHOLDER), user or Secret(PLACEHOLDER)
    try:
        return adapter.SmarterU(
            account_api_key=account, user_api_key=user, session=request.session, base_url=base_url,
            allow_insecure_http=c.allow_insecure_http, limits=limits_from(adapter.SmarterULimits, s.limits),
            time_scale=c.time_scale, timeout=request.timeout(60.0),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _smarteru_limit_keys() -> dict[str, type]:
    keys = limit_keys_of(adapter.SmarterULimits)
    keys["calls_per_window"] = int  # `int | None`: None (the default) learns the rate from 429s
    return keys


def _smarteru_item(values: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    return ("account",), values["enrollment_id"]



def _sandbox(request: MockRequest) -> Sandbox:
    from . import mock

    config = mock.SmarterUMockConfig(
        time_scale=request.time_scale, latency=Latency(base=request.latency),
        faults=Faults.at_rate(request.fault_rate), seed=request.seed, wire=request.wire or WireOptions(),
        queue_delay=request.option("queue_delay", 60.0),
        hidden_limit=request.option("hidden_limit", None),
        account_api_key=request.credential("UNENROLL_SMARTERU_ACCOUNT_API_KEY", "mock-account-api"),
        user_api_key=request.credential("UNENROLL_SMARTERU_USER_API_KEY", "mock-user-api"),
    )
    state = mock.SmarterUMockState.generate(request.option("enrolled", 1000), request.option("queued", 0),
                                            seed=request.seed)
    env: list[str] = []
    if "UNENROLL_SMARTERU_ACCOUNT_API_KEY" not in request.environ:
        env += [f"UNENROLL_SMARTERU_ACCOUNT_API_KEY={config.account_api_key}",
                f"UNENROLL_SMARTERU_USER_API_KEY={config.user_api_key}"]
    ids = sorted(state.ids_with(mock.ENROLLED))

    def demo_items() -> Iterator[Item]:
        for row, rel_id in enumerate(ids):
            yield Item("unenroll", ("account",), rel_id, meta={"row": row})

    return Sandbox(mock.SmarterUMock(config, state).app, env, demo_items=demo_items)


MOCK = MockPlugin(
    options=(
        MockOption("enrolled", int, 1000, "Enrolments."),
        MockOption("queued", int, 0, "Enrolments already queued."),
        MockOption("queue_delay", float, 60.0, "Seconds until a queued unenrolment is done (before time scale)."),
        MockOption("hidden_limit", str, None, "An undocumented rate limit the client is not told: rolling:5/1s, "
                   "fixed:20/10s, bucket:5/s,burst=5 or changing:5/1s->3/1s@200."),
    ),
    build=_sandbox,
    hint="--enrolled and --queued (enrolments), --queue-delay",
)

SMARTERU = VendorPlugin(
    name="smarteru",
    title="SmarterU",
    operations={
        "unenroll": InputOperation(
            "unenroll", "unenroll enrolments (queued by SmarterU, up to 100 per call)",
            RowShape("unenroll", (Column("enrollment_id", "the enrolment's AccountUserLearningModuleRelID",
                                         aliases=("AccountUserLearningModuleRelID", "ID", "Enrolment ID")),),
                     _smarteru_item)),
    },
    credential_names=SMARTERU_CREDENTIALS,
    credential_help=SMARTERU_CREDENTIAL_HELP,
    destructive_flags={},
    default_base_url="https://api.smarteru.com",
    limit_keys=_smarteru_limit_keys,
    build=_build_smarteru,
    mock=MOCK,
)

plugin = SMARTERU

__all__ = ['SmarterU', 'SmarterULimits', 'plugin', 'unenroll_item']
