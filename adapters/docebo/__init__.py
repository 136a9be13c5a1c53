"""Docebo: the vendor plugin (declarations in ``adapter``, its mock in ``mock``).

Discovered through the ``unenroll.vendors`` entry point; the engine never imports it.
Credentials are read from these environment variables (or a credentials file with the
same names) and nowhere else: UNENROLL_DOCEBO_CLIENT_ID and UNENROLL_DOCEBO_CLIENT_SECRET, with
UNENROLL_DOCEBO_USERNAME and UNENROLL_DOCEBO_PASSWORD for the password grant; or UNENROLL_DOCEBO_ACCESS_TOKEN.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
from .adapter import Docebo, DoceboLimits

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
    s = request.settings
    c = s.connection
    if not c.base_url:
        raise ConfigError("Docebo needs its base_url (https://<subdomain>.docebosaas.com): set base_url in the "
                          "settings file or UNENROLL_BASE_URL")
    base_url = check_url("base_url", c.base_url, allow_insecure_http=c.allow_insecure_http)
    client_id, client_secret, username, password, access = (request.credential(n) for n in DOCEBO_CREDENTIALS)
    if bool(username) != bool(password):
        raise ConfigError("Docebo's password grant needs both UNENROLL_DOCEBO_USERNAME and UNENROLL_DOCEBO_PASSWORD")
    if not (client_id and client_secret) and not access:
        if not request.dry_run:
            raise missing_credentials("Docebo", DOCEBO_CREDENTIAL_HELP)
        access = Secret(PLACEHOLDER)
    flags = {name: name in request.destructive for name in DOCEBO_FLAGS}
    common: dict[str, Any] = {
        "session": request.session, "base_url": base_url, "limits": limits_from(adapter.DoceboLimits, s.limits),
        "time_scale": c.time_scale, "timeout": request.timeout(120.0), **flags,
    }
    if client_id and client_secret:
        return adapter.Docebo(client_id=client_id.reveal(), client_secret=client_secret,
                             username=username.reveal() if username else None, password=password, **common)
    return adapter.Docebo(access_token=access, **common)


def _docebo_limit_keys() -> dict[str, type]:
    keys = limit_keys_of(adapter.DoceboLimits)
    keys["min_interval"] = float  # `float | None`: None spaces calls at the bucket's leak rate
    return keys


_DOCEBO_USER = Column("user_id", "the user's id (Docebo's User Unique ID)", aliases=("User Unique ID",))


def _sandbox(request: MockRequest) -> Sandbox:
    from . import mock

    config = mock.DoceboMockConfig(
        time_scale=request.time_scale, latency=Latency(base=request.latency),
        faults=Faults.at_rate(request.fault_rate), seed=request.seed, wire=request.wire or WireOptions(),
        client_id=request.credential("UNENROLL_DOCEBO_CLIENT_ID", "mock-client-id"),
        client_secret=request.credential("UNENROLL_DOCEBO_CLIENT_SECRET", "mock-client-secret"),
        username=request.credential("UNENROLL_DOCEBO_USERNAME", "mock-admin"),
        password=request.credential("UNENROLL_DOCEBO_PASSWORD", "mock-password"),
    )
    state = mock.DoceboMockState.generate(request.option("courses", 2), request.option("plans", 2),
                                          request.option("courses_per_plan", 3), request.option("learners", 100),
                                          seed=request.seed)
    env: list[str] = []
    if "UNENROLL_DOCEBO_CLIENT_ID" not in request.environ:
        env += [f"UNENROLL_DOCEBO_CLIENT_ID={config.client_id}",
                f"UNENROLL_DOCEBO_CLIENT_SECRET={config.client_secret}"]
    courses = {course: sorted(users) for course, users in state.targets("course").items()}

    def demo_items() -> Iterator[Item]:
        row = 0
        for course, users in courses.items():
            for user in users:
                yield Item("unenroll", ("course", str(course)), str(user), meta={"row": row})
                row += 1

    return Sandbox(mock.DoceboMock(config, state).app, env, demo_items=demo_items)


MOCK = MockPlugin(
    options=(
        MockOption("courses", int, 2, "Courses."),
        MockOption("plans", int, 2, "Learning plans."),
        MockOption("courses_per_plan", int, 3, "Courses in each plan."),
        MockOption("learners", int, 100, "Users per course and plan."),
    ),
    build=_sandbox,
    hint="--courses, --plans, --courses-per-plan and --learners (users per course and plan)",
)

DOCEBO = VendorPlugin(
    name="docebo",
    title="Docebo",
    operations={
        "unenroll": InputOperation(
            "unenroll", "unenroll users from courses (up to 1,000 users a call)",
            RowShape("unenroll", (Column("course_id", "the course's id", aliases=("Course Unique ID",)), _DOCEBO_USER),
                     lambda v: (("course", v["course_id"]), v["user_id"]))),
        "unenroll_learningplan": InputOperation(
            "unenroll_learningplan", "unenroll users from learning plans (up to 1,000 users a call)",
            RowShape("unenroll", (Column("learningplan_id", "the learning plan's id",
                                         aliases=("Learning Plan Unique ID",)), _DOCEBO_USER),
                     lambda v: (("learningplan", v["learningplan_id"]), v["user_id"]))),
    },
    credential_names=DOCEBO_CREDENTIALS,
    credential_help=DOCEBO_CREDENTIAL_HELP,
    destructive_flags=DOCEBO_FLAGS,
    default_base_url=None,
    limit_keys=_docebo_limit_keys,
    build=_build_docebo,
    mock=MOCK,
)

plugin = DOCEBO

__all__ = ['Docebo', 'DoceboLimits', 'plugin']
