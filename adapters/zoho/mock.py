"""A faithful mock of the Zoho People LMS APIs the adapter speaks (vendor-apis.md 1, 4).

Routes: the token endpoint, unenroll from a batch (POST), remove one learner (DELETE),
share a course (PUT), read a batch's learners (GET, 25 a page), and
``GET /__mock__/stats``. Per-API threshold (rolling or fixed window) with the 5 minute
lock answering code 7209; caps (422 over the id cap, 414 over the URL cap); 404 for an
unknown course or batch; 400 for a malformed erecno; tokens that expire; seeded latency
and faults; answers on the wire as ``wire`` says (pieces, pauses, chunked, gzip, stalls);
every duration multiplied by ``time_scale``.

Run it as a process: ``python -m unenroll.adapters.zoho.mock --port 8080`` (``--help``
lists the wire and HTTPS flags).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from unenroll.contract.mock import (
    FaultLog,
    Faults,
    Latency,
    MockServer,
    ThresholdCounter,
    WindowKind,
    WireOptions,
    add_wire_arguments,
    answer_fault,
    mock_app,
    wire_from_arguments,
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


class ZohoMock:
    """The mock's app and its state. ``app`` is an :class:`aiohttp.web.Application`."""

    ENDPOINTS = ("unenroll", "remove_learner", "share_course", "read_learners")

    def __init__(self, config: ZohoMockConfig | None = None, state: ZohoMockState | None = None) -> None:
        self.config = config or ZohoMockConfig()
        self.state = state or ZohoMockState()
        c = self.config
        scale = c.time_scale
        self.counters = {
            name: ThresholdCounter(c.threshold, c.window * scale, c.lock_period * scale, c.window_kind,
                                   c.extend_lock_on_call)
            for name in self.ENDPOINTS
        }
        self.rng = random.Random(c.seed)
        self.fault_log = FaultLog()
        self.statuses: dict[str, Counter[int]] = {name: Counter() for name in self.ENDPOINTS}
        self.tokens: dict[str, float] = {}  # token -> expiry (loop time)
        self.tokens_issued = 0
        self.app = mock_app(c.wire, c.time_scale, c.seed)
        r = self.app.router
        r.add_post("/oauth/v2/token", self.token)
        r.add_post("/api/v1/courses/{course}/batches/{batch}/unenroll", self.unenroll)
        r.add_delete("/api/v1/courses/{course}/batches/{batch}/learners/{learner}", self.remove_learner)
        r.add_put("/api/v1/courses/{course}/share", self.share_course)
        r.add_get("/api/v1/courses/{course}/batches/{batch}/learners", self.read_learners)
        r.add_get("/__mock__/stats", self.stats)

    def serve(self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> MockServer:
        """Serve on loopback; HTTPS with ``ssl_context`` (a server context, e.g. ``LoopbackTLS.server``)."""
        return MockServer(self.app, host, port, ssl_context)

    # -- plumbing ------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post()) | dict(request.query)
        c = self.config
        if (form.get("grant_type") != "refresh_token" or form.get("refresh_token") != c.refresh_token
                or form.get("client_id") != c.client_id or form.get("client_secret") != c.client_secret):
            return web.json_response({"error": "invalid_client"}, status=400)
        if c.token_latency:
            await asyncio.sleep(c.token_latency * c.time_scale)
        token = "1000." + secrets.token_hex(16)
        self.tokens[token] = self._now() + c.token_lifetime * c.time_scale
        self.tokens_issued += 1
        return web.json_response({"access_token": token, "expires_in": int(c.token_lifetime), "token_type": "Bearer"})

    async def _gate(
        self, endpoint: str, request: web.Request, items: int, sample: dict[str, Any]
    ) -> web.StreamResponse | None:
        """Threshold, auth, faults, latency: an answer that ends the call, or None to serve it."""
        now = self._now()
        if not self.counters[endpoint].hit(now):
            return self._answer(endpoint, web.json_response(LOCKED_BODY, status=400))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Zoho-oauthtoken ")
        if not auth.startswith("Zoho-oauthtoken ") or self.tokens.get(token, -1.0) < now:
            expired = {"code": "401", "message": "Invalid OAuth token"}
            return self._answer(endpoint, web.json_response(expired, status=401))
        c = self.config
        delay = c.latency.draw(items, self.rng, c.time_scale)
        fault = c.faults.draw(self.rng)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None:
            self.fault_log.injected[fault] += 1
            return self._answer(endpoint, await answer_fault(fault, request, self.rng, c.faults, sample))
        return None

    def _answer(self, endpoint: str, response: web.StreamResponse) -> web.StreamResponse:
        self.statuses[endpoint][response.status] += 1
        return response

    def _error(self, endpoint: str, status: int, message: str) -> web.StreamResponse:
        return self._answer(endpoint, web.json_response({"code": str(status), "message": message}, status=status))

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
        return self._answer(endpoint, web.json_response({"code": "200", "message": "success", "learners": answer}))

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
        return self._answer(endpoint, web.json_response(sample))

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
        return self._answer(endpoint, web.json_response({"sharedUsers": users, "code": "200", "message": "success"}))

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
        return self._answer(endpoint, web.json_response({"code": "200", "message": "success", "learners": records}))

    async def stats(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "endpoints": {
                name: {**counter.stats(), "statuses": {str(k): v for k, v in self.statuses[name].items()}}
                for name, counter in self.counters.items()
            },
            "faults": dict(self.fault_log.injected),
            "tokens_issued": self.tokens_issued,
        }
        if request.query.get("state", "1") != "0":
            body["state"] = self.state.snapshot()
        return web.json_response(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Zoho People LMS mock on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--courses", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--learners", type=int, default=100)
    add_wire_arguments(parser)
    args = parser.parse_args(argv)
    wire, ssl_context = wire_from_arguments(parser, args)
    mock = ZohoMock(ZohoMockConfig(time_scale=args.time_scale, wire=wire),
                    ZohoMockState.generate(args.courses, args.batches, args.learners))
    web.run_app(mock.app, host=args.host, port=args.port, ssl_context=ssl_context,
                handler_args={"max_line_size": 65536})


if __name__ == "__main__":
    main()
