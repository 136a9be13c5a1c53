"""The toy vendor's mock: in-memory state, its documented limit enforced in a rolling
window, and ``GET /__mock__/stats`` in the shape the conformance suite reads.

Stats: ``{"endpoints": {"unenroll": {"calls", "max_in_rolling_window", "lock_events",
"statuses"}}, "state": {course: [enrolled users]}}`` (``?state=0`` leaves the state out).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

UNENROLL = "unenroll"


class ToyMock:
    """Enrolments by course; a call past ``max_calls`` in any rolling ``window`` gets a 429
    (and is still counted as an arrival: ``max_in_rolling_window`` counts every call)."""

    def __init__(self, enrolled: Mapping[str, set[str]], *, token: str, max_calls: int, window: float) -> None:
        self.enrolled = {course: set(users) for course, users in enrolled.items()}
        self.token, self.max_calls, self.window = token, max_calls, window
        self.calls = 0
        self.max_in_rolling_window = 0
        self.lock_events = 0
        self.statuses: Counter[int] = Counter()
        self._recent: deque[float] = deque()
        self.app = web.Application()
        self.app.router.add_post("/courses/{course}/unenroll", self.unenroll)
        self.app.router.add_get("/__mock__/stats", self.stats)

    def _answer(self, response: web.Response) -> web.Response:
        self.statuses[response.status] += 1
        return response

    async def unenroll(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.calls += 1
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        self._recent.append(now)
        self.max_in_rolling_window = max(self.max_in_rolling_window, len(self._recent))
        if len(self._recent) > self.max_calls:
            self.lock_events += 1
            return self._answer(web.json_response({"error": "too many calls"}, status=429,
                                                  headers={"Retry-After": f"{self.window:.3f}"}))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._answer(web.json_response({"error": "token refused"}, status=401))
        course = self.enrolled.get(request.match_info["course"])
        if course is None:
            return self._answer(web.json_response({"error": "no such course"}, status=404))
        body = await request.json()
        users = [str(u) for u in body["users"]]
        done = [u for u in users if u in course]
        course.difference_update(done)
        absent = [u for u in users if u not in done]
        return self._answer(web.json_response({"unenrolled": done, "not_enrolled": absent}))

    async def stats(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"endpoints": {UNENROLL: {
            "calls": self.calls, "max_in_rolling_window": self.max_in_rolling_window,
            "lock_events": self.lock_events, "statuses": {str(k): v for k, v in self.statuses.items()},
        }}}
        if request.query.get("state", "1") != "0":
            body["state"] = {course: sorted(users) for course, users in self.enrolled.items()}
        return web.json_response(body)
