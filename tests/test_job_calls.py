"""One call path and one budget for jobs and backups: a backup's reads go through the job's
call path (``unenroll.job.calls``) and spend the job's budget (``JobSettings``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from unenroll import EndpointSpec, Item, JobSettings, Operation, Outcome, RetryPolicy, run
from unenroll.contract.declarations import EnrolmentReader, ReadPage
from unenroll.model import CallResult, ItemResult
from unenroll.planning.backup import BackupError, run_backup
from unenroll.wire.auth import NoAuth
from unenroll.wire.http import HttpRequest, HttpResponse, InProcessTransport

FAST = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)
BUSY = HttpResponse(429, b"<html>slow down</html>", {})  # a 429 its reader cannot read


class BusyVendor:
    """Answers 429 (an HTML page) to the first ``busy`` calls on each path, then in full."""

    vendor = "busy"

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls: dict[str, int] = {"/read": 0, "/unenroll": 0}
        self.transport = InProcessTransport(self._handle)
        self.auth = NoAuth()
        self.endpoints = {"api": EndpointSpec("api", max_in_flight=1, lock_period=0.001)}
        self.operations = {"unenroll": Operation("unenroll", "api", Outcome.UNENROLLED, 10, self._build, self._read)}
        self.readers = {"unenroll": EnrolmentReader("api", self._build_read, self._read_page, lambda t, n: 1,
                                                    max_subjects=10)}

    def _build(self, target: tuple[str, ...], subjects: Sequence[str]) -> HttpRequest:
        return HttpRequest("POST", "/unenroll", json=list(subjects))

    def _build_read(self, target: tuple[str, ...], subjects: Sequence[str], page: int) -> HttpRequest:
        return HttpRequest("POST", "/read", json=list(subjects))

    async def _handle(self, request: HttpRequest, headers: Mapping[str, str]) -> HttpResponse:
        self.calls[request.path] += 1
        if self.calls[request.path] <= self.busy:
            return BUSY
        return HttpResponse(200, json.dumps({s: {"status": "Enrolled"} for s in request.json}).encode(), {})

    def _read_page(self, target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> ReadPage:
        return ReadPage(json.loads(response.body), more=False)  # raises on the HTML page

    def _read(self, target: tuple[str, ...], subjects: Sequence[str], response: HttpResponse) -> CallResult:
        json.loads(response.body)  # raises on the HTML page
        return CallResult.answered([ItemResult.final(Outcome.UNENROLLED, "ok") for _ in subjects])


ITEMS = [Item("unenroll", ("c",), "7")]


async def test_a_backup_page_and_a_job_item_meet_the_same_max_throttles(tmp_path: Path) -> None:
    settings = JobSettings(retry=FAST, max_throttles=3, linger=0.0)
    backup_vendor = BusyVendor(busy=100)
    with pytest.raises(BackupError, match="throttled 3 times"):
        await run_backup(backup_vendor, ITEMS, tmp_path / "b.jsonl", settings=settings)
    job_vendor = BusyVendor(busy=100)
    report = await run(job_vendor, ITEMS, settings=settings)
    assert report.counts == {Outcome.GAVE_UP.value: 1}
    assert backup_vendor.calls["/read"] == job_vendor.calls["/unenroll"] == 3


async def test_an_unreadable_429_pauses_a_backup_read_and_spends_no_attempt(tmp_path: Path) -> None:
    vendor = BusyVendor(busy=4)  # more 429s than the retry policy has attempts
    result = await run_backup(vendor, ITEMS, tmp_path / "b.jsonl", settings=JobSettings(retry=FAST, max_throttles=10))
    assert (result.found, result.calls) == (1, 5)
