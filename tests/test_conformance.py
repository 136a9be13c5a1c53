"""What every vendor plugin must do, checked on every plugin discovery finds, none named here.

The suite runs on whatever the ``unenroll.vendors`` entry points offer, plus the toy vendor
of ``tests/toy_vendor`` registered as a separate distribution would be. For each plugin:

- its documented answers (``samples/*.json`` beside its plugin, format in the folder's
  README) are read by the operation's ``read_response`` exactly as documented, and every
  operation it offers has some;
- a round trip: its mock's sandbox served on 127.0.0.1, its adapter built from the
  sandbox's own settings, ``unenroll.run`` on the sandbox's demo items; every item ends
  exactly once, and the mock's ``/__mock__/stats`` agrees: it counted the calls the job
  made, refused none for a limit, and (where it reports ``max_in_rolling_window``) never
  saw more calls in a window than the endpoint's ``max_calls``.

The stats a mock reports, as read here: ``{"endpoints": {ENDPOINT: {"calls" or "statuses",
"max_in_rolling_window"?, "lock_events"?}}}`` by the adapter's endpoint names, or a
top-level ``"calls"``; a refusal for a limit is any count named ``lock_events``,
``throttle_events``, ``throttled_429``, ``calls_past_429``, ``concurrent_calls``,
``refused``, or a ``429`` among ``statuses``.

Then the toy vendor through the real command line, in subprocesses that see it only via a
``*.dist-info`` folder on ``PYTHONPATH``: ``unenroll mock serve toy`` and ``unenroll run toy``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from importlib.resources import files
from importlib.resources.abc import Traversable
from itertools import islice
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.toy_vendor import MOCK_TOKEN, course_id, user_id
from tests.toy_vendor.register import REPO_ROOT, toy_registered, write_dist_info
from unenroll import run
from unenroll.accounts.ledger import Report
from unenroll.cli.plugins import vendors
from unenroll.contract import (
    Adapter,
    BuildRequest,
    CallResult,
    CallVerdict,
    Credentials,
    HttpResponse,
    MockRequest,
    Operation,
    Outcome,
    RunSettings,
    Secret,
    VendorPlugin,
)
from unenroll.contract.mock import MockServer
from unenroll.contract.plugin import ENTRY_POINT_GROUP
from unenroll.contract.settings import Connection
from unenroll.job.retry import RetryPolicy
from unenroll.job.settings import JobSettings
from unenroll.model import ItemOutcome

TIME_SCALE = 0.01  # a minute lasts 0.6 s
MAX_ITEMS = 3500  # enough for more calls than a 30-a-minute endpoint allows in one window, few enough to be quick
REFUSALS = frozenset({"lock_events", "throttle_events", "throttled_429", "calls_past_429", "concurrent_calls",
                      "refused"})


def _discovered() -> list[str]:
    """Every plugin name, found the way the command line finds them (the toy one registered)."""
    with tempfile.TemporaryDirectory() as folder, toy_registered(Path(folder)):
        return list(vendors())


VENDORS = _discovered()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mapping[str, VendorPlugin]]:
    with toy_registered(tmp_path_factory.mktemp("toy-dist")):
        yield vendors()


def samples_of(name: str) -> Traversable:
    """The ``samples`` folder beside the module the plugin's entry point names."""
    (point,) = [p for p in entry_points(group=ENTRY_POINT_GROUP) if p.name == name]
    return files(point.module) / "samples"


def sample_files(name: str) -> list[tuple[str, dict[str, Any]]]:
    folder = samples_of(name)
    if not folder.is_dir():
        return []
    return sorted((f.name, json.loads(f.read_text(encoding="utf-8"))) for f in folder.iterdir()
                  if f.name.endswith(".json"))


def read_sample(operation: Operation, answer: Mapping[str, Any]) -> str | list[str]:
    """What ``read_response`` makes of a documented answer, in the samples' own terms."""
    body = answer["text"].encode() if "text" in answer else json.dumps(answer["json"]).encode()
    response = HttpResponse(answer["status"], body, answer.get("headers", {}))
    result: CallResult = operation.read_response(tuple(answer["target"]), answer["subjects"], response)
    if result.verdict is not CallVerdict.ANSWERED:
        return str(result.verdict.value)
    return ["retry" if r.outcome is None else r.outcome.value for r in result.items]


async def dry_adapter(plugin: VendorPlugin) -> Adapter:
    """The plugin's adapter as a dry run builds it: no credentials, nothing sent."""
    settings = RunSettings(plugin.name, Connection(base_url=plugin.default_base_url or "https://vendor.example"))
    async with aiohttp.ClientSession() as session:
        return plugin.build(BuildRequest(settings, Credentials(), session, dry_run=True))


# -- documented samples --------------------------------------------------------------------


@pytest.mark.parametrize("name", VENDORS)
async def test_documented_answers_are_read_as_documented(name: str, installed: Mapping[str, VendorPlugin]) -> None:
    adapter = await dry_adapter(installed[name])
    samples = sample_files(name)
    assert samples, f"{name}: no documented answers in {samples_of(name)} (see a vendor's samples/README.md)"
    wrong = []
    for file_name, sample in samples:
        operation = adapter.operations.get(sample["operation"])
        assert operation is not None, f"{name} {file_name}: the adapter has no operation {sample['operation']!r}"
        for answer in sample["answers"]:
            got = read_sample(operation, answer)
            if got != answer["expect"]:
                wrong.append(f"{file_name}: {answer['about']}: read {got}, documented {answer['expect']}")
    assert not wrong, f"{name}: " + "; ".join(wrong)


@pytest.mark.parametrize("name", VENDORS)
def test_every_operation_offered_has_a_documented_answer_read_item_by_item(
        name: str, installed: Mapping[str, VendorPlugin]) -> None:
    covered = {sample["operation"] for _, sample in sample_files(name)
               if any(isinstance(answer["expect"], list) for answer in sample["answers"])}
    offered = {op.shape.operation for op in installed[name].operations.values()}
    assert offered <= covered, f"{name}: no documented answer for {sorted(offered - covered)}"


# -- the mock round trip -------------------------------------------------------------------


@dataclass(frozen=True)
class RoundTrip:
    items: list[Any]
    outcomes: list[ItemOutcome]
    report: Report
    stats: dict[str, Any]
    max_calls: dict[str, int | None]


def sandbox_credentials(plugin: VendorPlugin, env: list[str]) -> Credentials:
    """The credentials among the sandbox's ``NAME=value`` settings lines."""
    values = {}
    for line in env:
        key, _, value = line.partition("=")
        if key in plugin.credential_names:
            values[key] = Secret(value)
    return Credentials(values=values)


async def round_trip(plugin: VendorPlugin) -> RoundTrip:
    assert plugin.mock is not None, f"{plugin.name}: the plugin ships no mock"
    sandbox = plugin.mock.build(MockRequest(time_scale=TIME_SCALE, seed=7, options=plugin.mock.demo_options))
    assert sandbox.demo_items is not None, f"{plugin.name}: the mock's sandbox has no demo items"
    items = list(islice(sandbox.demo_items(), MAX_ITEMS))
    job = JobSettings(retry=RetryPolicy(), seed=7).scaled(TIME_SCALE)
    outcomes: list[ItemOutcome] = []
    async with MockServer(sandbox.app) as server, aiohttp.ClientSession() as session:
        settings = RunSettings(plugin.name, Connection(base_url=server.url, allow_insecure_http=True,
                                                       time_scale=TIME_SCALE), job=job)
        adapter = plugin.build(BuildRequest(settings, sandbox_credentials(plugin, sandbox.env), session))
        with anyio.fail_after(60):  # a hang fails the test instead of holding the suite
            report = await run(adapter, items, settings=job, sinks=[outcomes.append])
        async with session.get(server.url + "/__mock__/stats", params={"state": "0"}) as answer:
            stats = await answer.json()
    return RoundTrip(items, outcomes, report, stats,
                     {name: spec.max_calls for name, spec in adapter.endpoints.items()})


@pytest.fixture(scope="module", params=VENDORS)
def trip(request: pytest.FixtureRequest, installed: Mapping[str, VendorPlugin]) -> RoundTrip:
    return anyio.run(round_trip, installed[request.param])


def mock_calls(stats: Mapping[str, Any], endpoints: Mapping[str, Any]) -> int | None:
    """The calls the mock counted on the adapter's endpoints (its token route aside)."""
    per_endpoint = stats.get("endpoints")
    if not isinstance(per_endpoint, Mapping):
        total = stats.get("calls")
        return total if isinstance(total, int) else None
    counted = 0
    for name in endpoints:
        endpoint = per_endpoint.get(name, {})
        counted += endpoint["calls"] if "calls" in endpoint else sum(endpoint.get("statuses", {}).values())
    return counted


def refusals(stats: Any, where: str = "") -> list[str]:
    """Every count of calls refused for a limit that is not 0, by where it is in the stats."""
    found = []
    if isinstance(stats, Mapping):
        for key, value in stats.items():
            here = f"{where}.{key}" if where else str(key)
            if key in ("state", "faults"):
                continue
            if key in REFUSALS and isinstance(value, int | float) and value:
                found.append(f"{here}={value}")
            elif key == "statuses" and isinstance(value, Mapping) and value.get("429"):
                found.append(f"{here}.429={value['429']}")
            else:
                found += refusals(value, here)
    return found


def test_every_item_ends_exactly_once(trip: RoundTrip) -> None:
    assert trip.items, "the sandbox's demo has no items"
    assert sorted(o.index for o in trip.outcomes) == list(range(len(trip.items)))
    assert all(o.item == trip.items[o.index] for o in trip.outcomes)
    assert trip.report.total == len(trip.items) == sum(trip.report.counts.values())


def test_a_fault_free_mock_within_limits_lets_every_item_finish(trip: RoundTrip) -> None:
    unfinished = [o for o in trip.outcomes if o.outcome in (Outcome.GAVE_UP, Outcome.NOT_SENT)]
    assert trip.report.stopped is None, trip.report.stopped
    assert not unfinished, f"{len(unfinished)} items unfinished, e.g. {unfinished[0]}"


def test_the_mock_counted_every_call_the_job_made(trip: RoundTrip) -> None:
    assert trip.report.calls > 0
    assert mock_calls(trip.stats, trip.max_calls) == trip.report.calls, trip.stats


def test_the_mock_refused_no_call_for_a_limit(trip: RoundTrip) -> None:
    assert trip.report.throttled == 0
    assert refusals(trip.stats) == []


def test_no_window_ever_held_more_calls_than_the_endpoint_allows(trip: RoundTrip) -> None:
    per_endpoint = trip.stats.get("endpoints", {})
    over = {name: per_endpoint[name]["max_in_rolling_window"] for name, limit in trip.max_calls.items()
            if limit is not None and isinstance(per_endpoint.get(name), Mapping)
            and per_endpoint[name].get("max_in_rolling_window", 0) > limit}
    assert over == {}, f"calls in one window above max_calls {trip.max_calls}"


# -- the toy vendor through the command line -------------------------------------------------

CLI = [sys.executable, "-m", "unenroll.cli"]


@pytest.fixture
def toy_env(tmp_path: Path) -> dict[str, str]:
    """A subprocess environment that has the toy vendor installed and no UNENROLL_* settings."""
    dist = write_dist_info(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNENROLL_")}
    env["PYTHONPATH"] = os.pathsep.join([str(dist), str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


class Output:
    """A subprocess's output lines as they come (read from its pipe unbuffered), each wait bounded."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd, self.buffer, self.args = proc.stdout.fileno(), b"", proc.args

    def line(self, starts: str, timeout: float = 30.0) -> str:
        """The next line starting with ``starts``."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n", 1)
                if (line := raw.decode("utf-8", "replace").strip()).startswith(starts):
                    return line
            remaining = deadline - time.monotonic()
            ready = select.select([self.fd], [], [], remaining)[0] if remaining > 0 else []
            chunk = os.read(self.fd, 65536) if ready else b""
            if not chunk:
                raise AssertionError(f"no line starting {starts!r} from {self.args!r}")
            self.buffer += chunk


def test_the_command_line_serves_and_runs_a_vendor_it_was_never_told_of(tmp_path: Path,
                                                                          toy_env: dict[str, str]) -> None:
    mock = subprocess.Popen([*CLI, "mock", "serve", "toy", "--port", "0", "--time-scale", "0.01", "--users", "4"],
                            env=toy_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        output = Output(mock)
        url = output.line("mock toy serving on").split()[-1]
        settings = output.line("rehearse with:").removeprefix("rehearse with:").split()
        assert f"UNENROLL_TOY_TOKEN={MOCK_TOKEN}" in settings
        rows = [(course_id(0), user_id(0, 0)), (course_id(0), user_id(0, 1)), (course_id(1), user_id(1, 3)),
                (course_id(1), user_id(1, 9)), (course_id(0), "not-a-number")]
        (tmp_path / "input.csv").write_text("course_id,user_id\n" + "".join(f"{c},{u}\n" for c, u in rows),
                                            encoding="utf-8")
        run_env = {**toy_env, **dict(s.split("=", 1) for s in settings)}
        done = subprocess.run([*CLI, "run", "toy", "input.csv", "--results", "out.jsonl", "--yes"], env=run_env,
                              cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr  # 1: a row was rejected
        results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [(r["user_id"], r["outcome"]) for r in results] == [  # in input order, the input's own columns
            (user_id(0, 0), "unenrolled"), (user_id(0, 1), "unenrolled"), (user_id(1, 3), "unenrolled"),
            (user_id(1, 9), "not_enrolled"), ("not-a-number", "rejected")]
        with urllib.request.urlopen(url + "/__mock__/stats", timeout=10) as answer:
            state = json.load(answer)["state"]
        assert state == {course_id(0): [user_id(0, 2), user_id(0, 3)],
                         course_id(1): [user_id(1, 0), user_id(1, 1), user_id(1, 2)]}
    finally:
        mock.send_signal(signal.SIGTERM)
        assert mock.wait(timeout=15) == 0


def test_the_command_line_lists_a_vendor_it_was_never_told_of(toy_env: dict[str, str]) -> None:
    helps = [subprocess.run([*CLI, *args, "--help"], env=toy_env, capture_output=True, text=True, timeout=60)
             for args in (["mock", "serve"], ["mock", "serve", "toy"], ["run"])]
    assert all(h.returncode == 0 for h in helps), [h.stderr for h in helps]
    mock_help, toy_help, run_help = (h.stdout for h in helps)
    assert "toy" in mock_help.split()
    assert "--users" in toy_help and "--courses" in toy_help  # the toy mock's own options, as flags
    assert "toy" in run_help and "UNENROLL_TOY_TOKEN" in run_help


def test_the_demo_runs_a_vendor_it_was_never_told_of(toy_env: dict[str, str]) -> None:
    done = subprocess.run([*CLI, "demo", "--fault-rate", "0", "toy", "--users", "3"], env=toy_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Toy LMS" in done.stdout
    assert "mock's view of unenroll: 4 calls" in done.stdout  # 2 courses of 4 rows, 3 rows a call
