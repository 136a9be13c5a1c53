"""A faithful mock of the Docebo APIs the adapter speaks (vendor-apis.md 3, 4).

Routes: ``POST /oauth2/token`` (client-credentials or password grant; tokens expire),
``DELETE /learn/v1/enrollments`` (bulk unenroll with per-pair answers from the seeded
state, 400 over the user cap, the three flags' effects), ``GET /learn/v1/enrollments``
(paged read, ``page_size`` at most 200), and ``GET /__mock__/stats``.

Mechanisms, each a setting and time-scaled:

- :class:`LeakyBucket`, the vendor's hourly limit per IP: every API call (not the token
  endpoint) pours one unit in; the bucket leaks ``calls_per_hour`` an hour; a call that
  would overflow ``capacity`` is refused with 429 and a ``Retry-After`` saying when one
  unit will fit, and adds nothing;
- :class:`BatchGate`, the "no concurrent batch calls" rule: a batch call that arrives
  while another is in flight is recorded and answered 409 without effect; it also
  accounts the seconds with a batch call in flight (busy time), so a test can compute
  how much of the job's span the endpoint was working;
- latency (base + per user + jitter) and faults from the seed (the kit's); faults are
  drawn before any state changes, so a faulted call has no effect; ``omit_share``
  leaves that share of pairs out of an answer *and* undone (the client must re-send them);
- answers on the wire as ``wire`` says (pieces, pauses, chunked, gzip, stalls; the kit's).

What is Docebo's (here): the routes and their answers, the grants and their errors, the
``Bearer`` scheme, the leaky bucket and its 429, the batch gate and its 409, the user cap,
the three flags, ``omit_share``, the state and the stats' bucket and batch fields. What
the kit gives (``unenroll.contract.mock``, :class:`MockBase`): the scaled clock, the seeded
draws, the fault gate, the token store (issue, expiry, the ``Authorization`` check),
status counting by endpoint, the stats route (faults, tokens issued, state), serving over
HTTP or HTTPS, the wire, and the command line (:func:`run_main`).

Run it as a process: ``python -m unenroll.adapters.docebo.mock --port 8080`` (``--help``
lists the wire and HTTPS flags).
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from unenroll.contract.mock import (
    Faults,
    Latency,
    MainArguments,
    MockBase,
    TokenStore,
    WireOptions,
    run_main,
)

COURSE = "course"
LEARNING_PLAN = "learningplan"
MAX_PAGE_SIZE = 200
ENDPOINTS = ("unenroll", "read_enrollments", "token")


@dataclass
class DoceboMockConfig:
    max_users: int = 1000  # per bulk call; 400 above it
    calls_per_hour: float = 1000.0  # the bucket's leak rate
    bucket_capacity: float = 1000.0  # calls the bucket holds before it answers 429
    token_lifetime: float = 3600.0
    client_id: str = "mock-client-id"
    client_secret: str = "mock-client-secret"
    username: str = "mock-admin"
    password: str = "mock-password"
    omit_share: float = 0.0  # share of pairs left out of an answer and not done
    time_scale: float = 1.0
    latency: Latency = field(default_factory=Latency)
    faults: Faults = field(default_factory=Faults)
    wire: WireOptions = field(default_factory=WireOptions)
    seed: int = 0


Pair = tuple[str, int, int]  # (kind, course or plan id, user id)


@dataclass
class DoceboMockState:
    """Who is enrolled where, and what the flags did.

    ``courses[course_id]`` and ``plans[plan_id]`` are the enrolled user ids;
    ``plan_courses[plan_id]`` the courses a plan holds (cascade unenrolls from them);
    ``unenrolled``, ``tracks_reset`` and ``certificates_deleted`` record every pair the
    bulk call acted on, keyed ``(kind, target id, user id)``.
    """

    courses: dict[int, set[int]] = field(default_factory=dict)
    plans: dict[int, set[int]] = field(default_factory=dict)
    plan_courses: dict[int, list[int]] = field(default_factory=dict)
    completed: set[tuple[int, int]] = field(default_factory=set)  # (course, user)
    unenrolled: set[Pair] = field(default_factory=set)
    tracks_reset: set[Pair] = field(default_factory=set)
    certificates_deleted: set[Pair] = field(default_factory=set)

    @classmethod
    def generate(
        cls, courses: int, plans: int, courses_per_plan: int, users_per_target: int, seed: int = 0,
    ) -> DoceboMockState:
        """Course ids from 100, plan ids from 10, user ids from 12001. Each plan holds
        ``courses_per_plan`` courses of its own (after the standalone ones) and its users
        are enrolled in them too; users whose id ends in 0 have completed their courses."""
        rng = random.Random(seed)
        state = cls()
        population = range(12_001, 12_001 + 3 * users_per_target)
        for c in range(courses):
            state.courses[100 + c] = set(rng.sample(population, users_per_target))
        next_course = 100 + courses
        for p in range(plans):
            plan = 10 + p
            users = set(rng.sample(population, users_per_target))
            state.plans[plan] = users
            state.plan_courses[plan] = list(range(next_course, next_course + courses_per_plan))
            for course in state.plan_courses[plan]:
                state.courses[course] = set(users)
            next_course += courses_per_plan
        for course, users in state.courses.items():
            state.completed.update((course, u) for u in users if u % 10 == 0)
        return state

    def targets(self, kind: str) -> dict[int, set[int]]:
        return self.courses if kind == COURSE else self.plans

    def snapshot(self) -> dict[str, Any]:
        def pairs(values: set[Pair]) -> list[str]:
            return [f"{k}/{t}/{u}" for k, t, u in sorted(values)]

        return {
            "courses": {str(c): sorted(u) for c, u in self.courses.items()},
            "learningplans": {str(p): sorted(u) for p, u in self.plans.items()},
            "plan_courses": {str(p): c for p, c in self.plan_courses.items()},
            "unenrolled": pairs(self.unenrolled),
            "tracks_reset": pairs(self.tracks_reset),
            "certificates_deleted": pairs(self.certificates_deleted),
        }


class LeakyBucket:
    """The vendor's hourly limit as a leaky bucket.

    Invariant: the level never exceeds ``capacity``. A call that arrives when the level,
    leaked down to now, is above ``capacity - 1`` is refused and adds nothing; an accepted
    call adds one. ``max_level`` is the highest level any accepted call reached.
    """

    def __init__(self, capacity: float, leak_per_second: float) -> None:
        if capacity < 1 or leak_per_second <= 0:
            raise ValueError("capacity must be >= 1 and the leak rate > 0")
        self.capacity, self.leak_per_second = capacity, leak_per_second
        self.level = 0.0
        self._at = -math.inf
        self.calls = 0
        self.refused = 0
        self.max_level = 0.0

    def pour(self, now: float) -> float | None:
        """Count a call arriving at ``now``: ``None`` if accepted, else seconds to wait."""
        self.calls += 1
        if self._at > -math.inf:
            self.level = max(0.0, self.level - (now - self._at) * self.leak_per_second)
        self._at = now
        if self.level + 1 > self.capacity:
            self.refused += 1
            return (self.level + 1 - self.capacity) / self.leak_per_second
        self.level += 1
        self.max_level = max(self.max_level, self.level)
        return None

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls, "refused": self.refused, "max_level": round(self.max_level, 3),
                "capacity": self.capacity, "leak_per_second": self.leak_per_second}


class BatchGate:
    """At most one batch call in flight; a second one is detected, not served.

    Invariant: :meth:`enter` admits a call only when none is in flight, so ``in_flight``
    is 0 or 1; ``concurrent_calls`` counts the calls refused for arriving during one.
    ``busy_seconds`` is the total time with a call in flight, ``span`` the time from the
    first admitted call's arrival to the last one's answer.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.concurrent_calls = 0
        self.admitted = 0
        self.busy_seconds = 0.0
        self.first_start: float | None = None
        self.last_end: float | None = None

    def enter(self, now: float) -> bool:
        if self.in_flight:
            self.concurrent_calls += 1
            return False
        self.in_flight = 1
        self.admitted += 1
        if self.first_start is None:
            self.first_start = now
        return True

    def leave(self, started: float, now: float) -> None:
        self.in_flight = 0
        self.busy_seconds += now - started
        self.last_end = now

    @property
    def span(self) -> float:
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start

    def stats(self) -> dict[str, Any]:
        span = self.span
        return {
            "admitted": self.admitted, "concurrent_calls": self.concurrent_calls,
            "busy_seconds": self.busy_seconds, "span_seconds": span,
            "busy_share": self.busy_seconds / span if span > 0 else None,
        }


def _error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"name": name, "message": message, "code": 0, "status": status}, status=status)


def _as_ids(value: Any) -> list[int] | None:
    if not isinstance(value, list):
        return None
    ids = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | str) or not str(v).isdigit():
            return None
        ids.append(int(v))
    return ids


class DoceboMock(MockBase):
    """The mock's app and its state. ``app`` is an :class:`aiohttp.web.Application`."""

    def __init__(self, config: DoceboMockConfig | None = None, state: DoceboMockState | None = None) -> None:
        self.config = c = config or DoceboMockConfig()
        self.state = state or DoceboMockState()
        super().__init__(time_scale=c.time_scale, seed=c.seed, latency=c.latency, faults=c.faults, wire=c.wire,
                         endpoints=ENDPOINTS)
        self.bucket = LeakyBucket(c.bucket_capacity, c.calls_per_hour / 3600.0 / c.time_scale)
        self.gate = BatchGate()
        self.tokens = TokenStore("Bearer", self.clock.seconds(c.token_lifetime), nbytes=20)
        self.omitted_pairs = 0
        self.app[MOCK_KEY] = self
        r = self.app.router
        r.add_post("/oauth2/token", self.token)
        r.add_delete("/learn/v1/enrollments", self.unenroll)
        r.add_get("/learn/v1/enrollments", self.read_enrollments)

    # -- plumbing ------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        c = self.config
        grant = form.get("grant_type")
        client_ok = form.get("client_id") == c.client_id and form.get("client_secret") == c.client_secret
        if grant not in ("client_credentials", "password") or not client_ok:
            return self.answer("token", web.json_response(
                {"error": "invalid_client", "error_description": "The client credentials are invalid"}, status=401))
        if grant == "password" and (form.get("username") != c.username or form.get("password") != c.password):
            return self.answer("token", web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid username and password combination"},
                status=400))
        token = self.issue_token()
        return self.answer("token", web.json_response(
            {"access_token": token, "expires_in": int(c.token_lifetime), "token_type": "Bearer", "scope": "api"}))

    def _throttle(self, endpoint: str) -> web.StreamResponse | None:
        wait = self.bucket.pour(self.now())
        if wait is None:
            return None
        # whole seconds as HTTP says, unless time is scaled below a second's resolution
        retry_after = str(math.ceil(wait)) if self.config.time_scale >= 1 else f"{math.ceil(wait * 1e4) / 1e4:.4f}"
        response = _error(429, "Too Many Requests", "Rate limit exceeded: 1000 API calls per hour")
        response.headers["Retry-After"] = retry_after
        return self.answer(endpoint, response)

    def _unauthorised(self, request: web.Request) -> web.Response | None:
        if not self.authorised(request):
            return web.json_response(
                {"error": "invalid_token", "error_description": "The access token provided is invalid or expired"},
                status=401)
        return None

    @contextmanager
    def _in_flight(self) -> Iterator[bool]:
        """Admit a batch call (True) or detect a concurrent one (False); time it while in."""
        started = self.now()
        admitted = self.gate.enter(started)
        try:
            yield admitted
        finally:
            if admitted:
                self.gate.leave(started, self.now())

    # -- the APIs ------------------------------------------------------------------------

    async def unenroll(self, request: web.Request) -> web.StreamResponse:
        endpoint = "unenroll"
        if (throttled := self._throttle(endpoint)) is not None:
            return throttled
        with self._in_flight() as admitted:
            if not admitted:
                return self.answer(endpoint, _error(409, "Conflict", "Another bulk operation is in progress"))
            if (refused := self._unauthorised(request)) is not None:
                return self.answer(endpoint, refused)
            try:
                body = await request.json()
            except ValueError:
                body = None
            parsed = self._parse_unenroll(body)
            if isinstance(parsed, web.Response):
                return self.answer(endpoint, parsed)
            users, targets, flags = parsed
            sample = {"data": {"unenrolled": [], "errors": []}, "version": "1.0.0", "_links": []}
            if (fault := await self.fault_gate(request, len(users), sample)) is not None:
                return self.answer(endpoint, fault)
            done, errors = self._apply(users, targets, flags)
            return self.answer(endpoint, web.json_response(
                {"data": {"unenrolled": done, "errors": errors}, "version": "1.0.0", "_links": []}))

    def _parse_unenroll(self, body: Any) -> tuple[list[int], list[tuple[str, int]], dict[str, bool]] | web.Response:
        if not isinstance(body, dict):
            return _error(400, "Bad Request", "The request body is not valid JSON")
        users = _as_ids(body.get("user_ids"))
        courses = _as_ids(body.get("course_ids", []))
        plans = _as_ids(body.get("learningplan_ids", []))
        if not users or courses is None or plans is None or not (courses or plans):
            return _error(400, "Bad Request", "user_ids and course_ids or learningplan_ids are required")
        users = list(dict.fromkeys(users))
        if len(users) > self.config.max_users:
            return _error(400, "Bad Request", f"Maximum {self.config.max_users} users allowed per call")
        flags = {}
        for name in ("reset_tracks", "cascade_unenroll_from_courses_in_selected_learning_plan",
                     "delete_issued_certificates"):
            value = body.get(name, False)
            if not isinstance(value, bool):
                return _error(400, "Bad Request", f"{name} must be a boolean")
            flags[name] = value
        targets = [(COURSE, c) for c in dict.fromkeys(courses)] + [(LEARNING_PLAN, p) for p in dict.fromkeys(plans)]
        return users, targets, flags

    def _apply(
        self, users: list[int], targets: list[tuple[str, int]], flags: dict[str, bool],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every (target, user) pair: done, refused, or (``omit_share``) silently skipped."""
        state = self.state
        done: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        key_of = {COURSE: "course_id", LEARNING_PLAN: "learningplan_id"}
        cascade = flags["cascade_unenroll_from_courses_in_selected_learning_plan"]

        def act(kind: str, target: int, user: int) -> None:
            state.unenrolled.add((kind, target, user))
            if flags["reset_tracks"]:
                state.tracks_reset.add((kind, target, user))
            if flags["delete_issued_certificates"]:
                state.certificates_deleted.add((kind, target, user))

        for kind, target in targets:
            enrolled = state.targets(kind).get(target)
            noun = "course" if kind == COURSE else "learning plan"
            for user in users:
                pair = {"user_id": user, key_of[kind]: target}
                if self.config.omit_share and self.rng.random() < self.config.omit_share:
                    self.omitted_pairs += 1
                    continue
                if enrolled is None:
                    errors.append({**pair, "message": f"The {noun} was not found"})
                elif user not in enrolled:
                    errors.append({**pair, "message": f"User is not enrolled in the {noun}"})
                else:
                    enrolled.discard(user)
                    act(kind, target, user)
                    done.append(pair)
                    if kind == LEARNING_PLAN and cascade:
                        for course in state.plan_courses.get(target, []):
                            in_course = state.courses.get(course)
                            if in_course is not None and user in in_course:
                                in_course.discard(user)
                                act(COURSE, course, user)
                                done.append({"user_id": user, "course_id": course})
        return done, errors

    async def read_enrollments(self, request: web.Request) -> web.StreamResponse:
        """Course enrolments, filtered by ``user_id[]`` and ``course_id[]``, 1-based pages; with
        ``learningplan_id[]``, the enrolments in those learning plans instead."""
        endpoint = "read_enrollments"
        if (throttled := self._throttle(endpoint)) is not None:
            return throttled
        if (refused := self._unauthorised(request)) is not None:
            return self.answer(endpoint, refused)
        query = request.query
        try:
            page = int(query.get("page", "1"))
            page_size = int(query.get("page_size", "10"))
            users = {int(v) for v in query.getall("user_id[]", [])}
            courses = {int(v) for v in query.getall("course_id[]", [])}
            plans = {int(v) for v in query.getall("learningplan_id[]", [])}
        except ValueError:
            return self.answer(endpoint, _error(400, "Bad Request", "Invalid parameter value"))
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            return self.answer(endpoint, _error(400, "Bad Request", f"page_size must be 1 to {MAX_PAGE_SIZE}"))
        sample = {"data": {"items": [], "has_more_data": False, "current_page": page}}
        if (fault := await self.fault_gate(request, page_size, sample)) is not None:
            return self.answer(endpoint, fault)
        kind, key, wanted = (LEARNING_PLAN, "learningplan_id", plans) if plans else (COURSE, "course_id", courses)
        rows = sorted(
            (target, user) for target, enrolled in self.state.targets(kind).items() if not wanted or target in wanted
            for user in enrolled if not users or user in users
        )
        start = (page - 1) * page_size
        completed = self.state.completed if kind == COURSE else set()
        items = [
            {"user_id": user, key: target,
             "status": "completed" if (target, user) in completed else "enrolled",
             "completion_date": "2024-01-01 00:00:00" if (target, user) in completed else None}
            for target, user in rows[start : start + page_size]
        ]
        return self.answer(endpoint, web.json_response(
            {"data": {"items": items, "count": len(items), "has_more_data": start + page_size < len(rows),
                      "current_page": page, "current_page_size": page_size,
                      "total_page_count": -(-len(rows) // page_size), "total_count": len(rows)},
             "version": "1.0.0", "_links": []}))

    def stats_fields(self) -> dict[str, Any]:
        return {
            "endpoints": {name: {"statuses": self.statuses_of(name)} for name in ENDPOINTS},
            "bucket": self.bucket.stats(),
            "batch": self.gate.stats(),
            "omitted_pairs": self.omitted_pairs,
        }

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()


MOCK_KEY = web.AppKey("docebo_mock", DoceboMock)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--courses", type=int, default=4)
    parser.add_argument("--plans", type=int, default=2)
    parser.add_argument("--courses-per-plan", type=int, default=3)
    parser.add_argument("--users", type=int, default=1500, help="users enrolled in each course and plan")
    parser.add_argument("--bucket-capacity", type=float, default=1000.0)


def _build(args: MainArguments) -> DoceboMock:
    o = args.options
    return DoceboMock(
        DoceboMockConfig(time_scale=args.time_scale, bucket_capacity=o.bucket_capacity, wire=args.wire,
                         seed=args.seed),
        DoceboMockState.generate(o.courses, o.plans, o.courses_per_plan, o.users, seed=args.seed),
    )


def main(argv: list[str] | None = None) -> None:
    run_main(argv, description="Serve the Docebo mock on loopback.", default_port=8080,
             add_options=_options, build=_build)


if __name__ == "__main__":
    main()
