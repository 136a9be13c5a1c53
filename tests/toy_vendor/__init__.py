"""A toy vendor defined inside the tests: a plugin, a one-operation adapter and a mock.

It is registered the way any third-party vendor package is, through an ``unenroll.vendors``
entry point (see :mod:`tests.toy_vendor.register`), never by editing the project: the
command line, the mock command and the conformance suite must pick it up as they find.
"""

from __future__ import annotations

from collections.abc import Iterator

from unenroll.contract import (
    PLACEHOLDER,
    Adapter,
    BuildRequest,
    Column,
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

from . import adapter

NAME = "toy"
TOKEN = "UNENROLL_TOY_TOKEN"
MOCK_TOKEN = "toy-mock-token"


def _build(request: BuildRequest) -> Adapter:
    c = request.settings.connection
    base_url = check_url("base_url", c.base_url or "https://toy.invalid", allow_insecure_http=c.allow_insecure_http)
    token = request.credential(TOKEN)
    if token is None:
        if not request.dry_run:
            raise missing_credentials("Toy LMS", TOKEN)
        token = Secret(PLACEHOLDER)
    return adapter.ToyAdapter(session=request.session, base_url=base_url, token=token,
                              limits=limits_from(adapter.ToyLimits, request.settings.limits),
                              time_scale=c.time_scale, timeout=request.timeout(10.0))


def course_id(n: int) -> str:
    return f"c{n}"


def user_id(course: int, n: int) -> str:
    return str(1000 * (course + 1) + n)


def _sandbox(request: MockRequest) -> Sandbox:
    from . import mock

    courses, users = int(request.option("courses", 2)), int(request.option("users", 6))
    enrolled = {course_id(c): {user_id(c, u) for u in range(users)} for c in range(courses)}
    limits = adapter.ToyLimits()
    token = request.credential(TOKEN, MOCK_TOKEN)
    toy = mock.ToyMock(enrolled, token=token, max_calls=limits.max_calls, window=limits.window * request.time_scale)

    def demo_items() -> Iterator[Item]:
        for c in range(courses):
            for u in range(users + 1):  # the last one is not enrolled
                yield Item(adapter.UNENROLL, (course_id(c),), user_id(c, u), meta={"row": f"{c}/{u}"})

    env = [] if TOKEN in request.environ else [f"{TOKEN}={token}"]
    return Sandbox(toy.app, env, demo_items)


plugin = VendorPlugin(
    name=NAME,
    title="Toy LMS",
    operations={adapter.UNENROLL: InputOperation(
        adapter.UNENROLL, "unenroll users from a course (a few per call)",
        RowShape(adapter.UNENROLL, (Column("course_id", "the course"), Column("user_id", "the user")),
                 lambda v: ((v["course_id"],), v["user_id"])))},
    credential_names=(TOKEN,),
    credential_help=TOKEN,
    default_base_url="https://toy.invalid",
    limit_keys=lambda: limit_keys_of(adapter.ToyLimits),
    build=_build,
    mock=MockPlugin(options=(MockOption("courses", int, 2, "Courses."),
                             MockOption("users", int, 6, "Users enrolled in each course.")),
                    build=_sandbox, hint="--courses and --users (per course)"),
)
