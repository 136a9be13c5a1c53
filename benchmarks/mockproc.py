"""The mocks under test, each served in its own process.

The vendor is not in the client's event loop in real life, so it is not here either: a
mock that shares the loop answers late whenever the engine is busy (reading its input,
say), and its clock then says calls arrived later than they left. In its own process the
mock takes each arrival's time as soon as the request comes in, the client's peak RSS is
the client's alone, and the two get a core each.

    python -m benchmarks.mockproc benchmarks.zoho:zoho_mock '{"items": 60000, ...}'

builds the scenario's mock with the named builder (the same seeded state the client derives
from the same parameters), prints one JSON line ``{"url": ...}`` once it serves, and serves
until its stdin closes. A scenario hands :class:`MockProcess` its own builder function; this
module imports no scenario (the scenarios import it), so the two never import each other.

Besides the mock's own ``GET /__mock__/stats`` it answers ``GET /__bench__/record``: what
the :class:`~benchmarks.measure.ArrivalRecorder` saw, the process's CPU seconds and peak
RSS, and a summary if the scenario has one.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from unenroll.contract.mock import MockServer, WireOptions

from .measure import ArrivalRecorder, Recording, cpu_seconds, peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 300.0  # seconds for the mock to seed its state and serve

FRAGMENTED = WireOptions(fragments=4, chunked=True, gzip=True, fragment_pause=0.01)
"""The scenarios' answers, as real vendors' arrive: gzip, chunked, in four pieces at seeded
cuts, 10 ms of vendor time apart (``python -m benchmarks.run --plain-wire``: in one piece)."""


def wire(fragmented: bool, *, pause: bool = True) -> WireOptions:
    """The scenario's wire; without ``pause`` the pieces follow each other at once (for the
    overhead scenarios, which measure CPU, not waiting)."""
    if not fragmented:
        return WireOptions()
    return FRAGMENTED if pause else WireOptions(fragments=FRAGMENTED.fragments, chunked=True, gzip=True)


@dataclass
class MockApp:
    """A mock's app with its arrival recorder, as a scenario builds it."""

    app: web.Application
    recorder: ArrivalRecorder
    summary: Callable[[], dict[str, Any]] | None = None


MockBuilder = Callable[[dict[str, Any]], MockApp]
"""A scenario's mock from its JSON parameters: a function at a module's top level, so the
mock's process can import it by its ``module:function`` path."""


def builder_path(builder: MockBuilder) -> str:
    """``module:function`` naming ``builder``, for the mock's process to import."""
    name = builder.__qualname__
    if "." in name or "<" in name:  # a lambda, a method or a nested function cannot be imported by name
        raise ValueError(f"a mock builder must be a module-level function, not {name!r}")
    return f"{builder.__module__}:{name}"


def load_builder(path: str) -> MockBuilder:
    """The builder :func:`builder_path` named."""
    module, _, name = path.partition(":")
    builder: MockBuilder = getattr(importlib.import_module(module), name)
    return builder


async def serve(builder: str, params: dict[str, Any]) -> None:
    mock = load_builder(builder)(params)

    async def record(request: web.Request) -> web.Response:
        return web.json_response({
            "recording": asdict(mock.recorder.recording),
            "cpu_seconds": cpu_seconds(),
            "peak_rss_mb": peak_rss_mb(),
            "summary": mock.summary() if mock.summary is not None else None,
        })

    mock.app.router.add_get("/__bench__/record", record)
    loop = asyncio.get_running_loop()
    async with MockServer(mock.app) as server:
        print(json.dumps({"url": server.url}), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


@dataclass
class MockRecord:
    recording: Recording
    cpu_seconds: float
    peak_rss_mb: float
    summary: dict[str, Any] | None


class MockProcess:
    """``async with MockProcess(zoho_mock, params) as mock:`` the mock ``zoho_mock(params)``
    builds, in its own process at ``mock.url``; :meth:`stats` and :meth:`record` ask it what
    it saw."""

    def __init__(self, builder: MockBuilder, params: dict[str, Any]) -> None:
        self._builder, self._params = builder_path(builder), params
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> MockProcess:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.mockproc", self._builder, json.dumps(self._params),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout=START_TIMEOUT)
            if not line:
                raise RuntimeError(f"the mock {self._builder} exited before serving")
            self.url = str(json.loads(line)["url"])
        except BaseException:
            await self._stop()
            raise
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        await self._stop()

    async def _stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _get(self, path: str, **params: str) -> Any:
        assert self._session is not None
        async with self._session.get(self.url + path, params=params) as response:
            response.raise_for_status()
            return await response.json()

    async def stats(self, *, state: bool = True) -> dict[str, Any]:
        """The mock's own ``/__mock__/stats``."""
        body: dict[str, Any] = await self._get("/__mock__/stats", state="1" if state else "0")
        return body

    async def record(self) -> MockRecord:
        body = await self._get("/__bench__/record")
        return MockRecord(Recording(**body["recording"]), body["cpu_seconds"], body["peak_rss_mb"], body["summary"])


def main(argv: list[str] | None = None) -> None:
    builder, params = (argv if argv is not None else sys.argv[1:])[:2]
    asyncio.run(serve(builder, json.loads(params)))


if __name__ == "__main__":
    main()
