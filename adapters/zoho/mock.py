"""A faithful mock of the Zoho People LMS APIs the adapter speaks (vendor-apis.md 1, 4).

Routes: the token endpoint, unenroll from a batch (POST), remove one learner (DELETE),
share a course (PUT), read a batch's learners (GET, 25 a page), and
``GET /__mock__/stats``. Per-API threshold (rolling or fixed window) with the 5 minute
lock answering code 7209; caps (422 over the id cap, 414 over the URL cap); 404 for an
unknown course or batch; 400 for a malformed erecno; tokens that expire; seeded latency
and faults; answers on the wire as ``wire`` says (pieces, pauses, chunked, gzip, stalls);
every duration multiplied by ``time_scale``.

What is Zoho's (here): the routes and their answers (bodies, codes 7209/401/404/414/422/400),
the per-API threshold and lock, the id and URL caps, the token endpoint's grant check and
the ``Zoho-oauthtoken`` scheme, the state (batches, learners, shares), the stats' per-API
counters and statuses. What the kit gives (``unenroll.contract.mock``, :class:`MockBase`):
the scaled clock, the seeded draws, the fault gate (latency and faults drawn before any
state changes), the token store (issue, expiry, the ``Authorization`` check), status
counting, the stats route (faults, tokens issued, state), serving over HTTP or HTTPS,
the wire, and the command line (:func:`run_main`).

Run it as a process: ``python -m unenroll.adapters.zoho.mock --port 8080`` (``--help``
lists the wire and HTTPS flags).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from unenroll.contract.mock import (
    Faults,
    Latency,
    MainArguments,
    MockBase,
    ThresholdCounter,
    TokenStore,
    WindowKind,
    WireOptions,
    run_main,
)

LOCKED_BODY = {
    "code": "7209",
    "message": "API access blocked since threshold limit exceeded. Please try after some time",
}
PAGE_SIZE = 25


@dataclass
class ZohoMockConfig:
    threshold: int = 30
    window: float = 60.0
    lock_period: float = 300.0
    window_kind: WindowKind = "rolling"
    extend_lock_on_call: bool = False
    max_ids: int = 100
    max_url_bytes: int = 8192
    token_lifetime: float = 3600.0
    token_latency: float = 0.0  # seconds (before time scale) the token endpoint takes
    client_id: str = "mock-client-id"
    client_secret: str = "mock-client-secret"
    refresh_token: str = "mock-refresh-token"
    time_scale: float = 1.0
    latency: Latency = field(default_factory=Latency)
    faults: Faults = field(default_factory=Faults)
    wire: WireOptions = field(default_factory=WireOptions)
    seed: int = 0
    # erecnos that make the whole call fail with 400, as a malformed one would (poison)
    refused_erecnos: frozenset[str] = frozenset()


@dataclass
class ZohoMockState:
    """Who is enrolled where. ``batches[(course, batch)] = {erecno: learnerId}``."""

    batches: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    unenrolled: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    employees: set[str] = field(default_factory=set)
    shares: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def generate(cls, courses: int, batches_per_course: int, learners_per_batch: int, seed: int = 0) -> ZohoMockState:
        """Ids that look like Zoho's: course ``5000000000001..``, erecno ``7000000000001..``."""
        state = cls()
        erecno = 7_000_000_000_000
        for c in range(courses):
            course = str(5_000_000_000_000 + c * 1000)
            for b in range(batches_per_course):
                batch = str(int(course) + b + 1)
                learners = {}
                for _ in range(learners_per_batch):
                    erecno += 1
                    learners[str(erecno)] = str(erecno + 1_000_000_000_000)
                state.batches[(course, batch)] = learners
                state.employees.update(learners)
        return state

    def courses(self) -> set[str]:
        return {c for c, _ in self.batches} | set(self.shares)

    def snapshot(self) -> dict[str, Any]:
        return {
            "batches": {f"{c}/{b}": sorted(v) for (c, b), v in self.batches.items()},
            "unenrolled": {f"{c}/{b}": sorted(v) for (c, b), v in self.unenrolled.items()},
            "shares": {c: sorted(v) for c, v in self.shares.items()},
        }


class ZohoMock(MockBase):
    """The mock's app and its state. ``app`` is an :class:`aiohttp.web.Application`."""

    ENDPOINTS = ("unenroll", "remove_learner", "share_course", "read_learners")

    def __init__(self, config: ZohoMockConfig | None = None, state: ZohoMockState | None = None) -> None:
        self.config = c = config or ZohoMockConfig()
        self.state = state or ZohoMockState()
        super().__init__(time_scale=c.time_scale, seed=c.seed, latency=c.latency, faults=c.faults, wire=c.wire,
                         endpoints=self.ENDPOINTS)
        seconds = self.clock.seconds
        self.counters = {
            name: ThresholdCounter(c.threshold, seconds(c.window), seconds(c.lock_period), c.window_kind,
                                   c.extend_lock_on_call)
            for name in self.ENDPOINTS
        }
        self.tokens = TokenStore("Zoho-oauthtoken", seconds(c.token_lifetime), prefix="1000.", nbytes=16)
        r = self.app.router
        r.add_post("/oauth/v2/token", self.token)
        r.add_post("/api/v1/courses/{course}/batches/{batch}/unenroll", self.unenroll)
        r.add_delete("/api/v1/courses/{course}/batches/{batch}/learners/{learner}", self.remove_learner)
        r.add_put("/api/v1/courses/{course}/share", self.share_course)
        r.add_get("/api/v1/courses/{course}/batches/{batch}/learners", self.read_learners)

    # -- plumbing ------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post()) | dict(request.query)
        c = self.config
        if (form.get("grant_type") != "refresh_token" or form.get("refresh_token") != c.refresh_token
                or form.get("client_id") != c.client_id or form.get("client_secret") != c.client_secret):
            return web.json_response({"error": "invalid_client"}, status=400)
        if c.token_latency:
            await self.clock.sleep(c.token_latency)
        token = self.issue_token()
        return web.json_response({"access_token": token, "expires_in": int(c.token_lifetime), "token_type": "Bearer"})

    async def _gate(
        self, endpoint: str, request: web.Request, items: int, sample: dict[str, Any]
    ) -> web.StreamResponse | None:
        """Threshold, auth, faults, latency: an answer that ends the call, or None to serve it."""
        if not self.counters[endpoint].hit(self.now()):
            return self.answer(endpoint, web.json_response(LOCKED_BODY, status=400))
        if not self.authorised(request):
            expired = {"code": "401", "message": "Invalid OAuth token"}
            return self.answer(endpoint, web.json_response(expired, status=401))
        if (fault := await self.fault_gate(request, items, sample)) is not None:
            return self.answer(endpoint, fault)
        return None

    def _error(self, endpoint: str, status: int, message: str) -> web.StreamResponse:
        return self.answer(endpoint, web.json_response({"code": str(status), "message": message}, status=status))

    def _parse_erecnos(self, raw: str | None) -> list[str] | None:
        try:
            value = json.loads(raw or "")
        except ValueError:
            return None
        if not isinstance(value, list) or not value:
            return None
        return [str(v) for v in value]

    def _check_list(self, endpoint: str, erecnos: list[str] | None) -> web.StreamResponse | None:
        if erecnos is None:
            return self._error(endpoint, 400, "Invalid parameter value/input parameter missing: erecnosList")
        if len(erecnos) > self.config.max_ids:
            return self._error(endpoint, 422, "Maximum limit exceeded")
        if not all(e.isascii() and e.isdigit() for e in erecnos) or self.config.refused_erecnos.intersection(erecnos):
            return self._error(endpoint, 400, "Invalid parameter value for erecnosList")
        return None

    # -- the APIs ------------------------------------------------------------------------

    async def unenroll(self, request: web.Request) -> web.StreamResponse:
        endpoint = "unenroll"
        course, batch = request.match_info["course"], request.match_info["batch"]
        erecnos = self._parse_erecnos(request.query.get("erecnosList"))
        sample = {"code": "200", "message": "success", "learners": []}
        if (early := await self._gate(endpoint, request, len(erecnos or ()), sample)) is not None:
            return early
        if len(str(request.url)) > self.config.max_url_bytes:
            return self._error(endpoint, 414, "Request-URI Too Long")
        if (bad := self._check_list(endpoint, erecnos)) is not None:
            return bad
        assert erecnos is not None
        learners = self.state.batches.get((course, batch))
        if learners is None:
            return self._error(endpoint, 404, "Course or batch not found")
        done = self.state.unenrolled.setdefault((course, batch), set())
        answer = []
        for erecno in dict.fromkeys(erecnos):
            learner_id = learners.pop(erecno, None)
            if learner_id is not None:
                done.add(erecno)
                answer.append({"erecno": erecno, "learnerId": learner_id, "enrollmentStatus": "unenrolled",
                               "batchId": batch, "courseId": course})
        return self.answer(endpoint, web.json_response({"code": "200", "message": "success", "learners": answer}))

    async def remove_learner(self, request: web.Request) -> web.StreamResponse:
        endpoint = "remove_learner"
        course, batch, learner = (request.match_info[k] for k in ("course", "batch", "learner"))
        sample = {"code": "200", "learnerId": learner, "message": "success"}
        if (early := await self._gate(endpoint, request, 1, sample)) is not None:
            return early
        learners = self.state.batches.get((course, batch))
        if learners is None:
            return self._error(endpoint, 404, "Course or batch not found")
        erecno = next((e for e, lid in learners.items() if lid == learner), None)
        if erecno is None:
            return self._error(endpoint, 404, "Learner not found in this batch")
        del learners[erecno]
        self.state.unenrolled.setdefault((course, batch), set()).add(erecno)
        return self.answer(endpoint, web.json_response(sample))

    async def share_course(self, request: web.Request) -> web.StreamResponse:
        endpoint = "share_course"
        course = request.match_info["course"]
        form = await request.post()
        raw = form.get("erecnosList")
        erecnos = self._parse_erecnos(raw if isinstance(raw, str) else None)
        sample = {"code": "200", "message": "success", "sharedUsers": []}
        if (early := await self._gate(endpoint, request, len(erecnos or ()), sample)) is not None:
            return early
        if (bad := self._check_list(endpoint, erecnos)) is not None:
            return bad
        assert erecnos is not None
        if course not in self.state.courses():
            return self._error(endpoint, 404, "Course not found")
        shared = self.state.shares.setdefault(course, set())
        users = []
        for erecno in dict.fromkeys(erecnos):
            if erecno in self.state.employees:
                shared.add(erecno)
                users.append({"erecno": erecno, "displayName": f"Employee {erecno[-4:]}",
                              "employeeId": erecno[-4:], "emailId": f"e{erecno}@example.com",
                              "displayPictureURL": ""})
        return self.answer(endpoint, web.json_response({"sharedUsers": users, "code": "200", "message": "success"}))

    async def read_learners(self, request: web.Request) -> web.StreamResponse:
        endpoint = "read_learners"
        course, batch = request.match_info["course"], request.match_info["batch"]
        if (early := await self._gate(endpoint, request, PAGE_SIZE, {"code": "200", "learners": []})) is not None:
            return early
        learners = self.state.batches.get((course, batch))
        if learners is None:
            return self._error(endpoint, 404, "Course or batch not found")
        try:
            start = max(0, int(request.query.get("startIndex", "0")))
        except ValueError:
            return self._error(endpoint, 400, "Invalid parameter value: startIndex")
        page = sorted(learners.items())[start : start + PAGE_SIZE]
        records = [{"erecno": e, "learnerId": lid, "enrollmentStatus": "enrolled", "completionStatus": "in_progress"}
                   for e, lid in page]
        return self.answer(endpoint, web.json_response({"code": "200", "message": "success", "learners": records}))

    def stats_fields(self) -> dict[str, Any]:
        return {"endpoints": {name: {**counter.stats(), "statuses": self.statuses_of(name)}
                              for name, counter in self.counters.items()}}

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--courses", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--learners", type=int, default=100)


def _build(args: MainArguments) -> ZohoMock:
    o = args.options
    return ZohoMock(ZohoMockConfig(time_scale=args.time_scale, wire=args.wire, seed=args.seed),
                    ZohoMockState.generate(o.courses, o.batches, o.learners))


def main(argv: list[str] | None = None) -> None:
    run_main(argv, description="Serve the Zoho People LMS mock on loopback.", default_port=8080,
             add_options=_options, build=_build)


if __name__ == "__main__":
    main()
