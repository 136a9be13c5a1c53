"""The Zoho mock for the kill -9 test, in its own process: it logs every unenroll call's
arrival (this machine's wall clock, the SQLite quota's clock too) with its batch, and holds
the answers to one batch's calls (``POST /__test__/hold/{batch}``) for ``--hold`` seconds,
so that batch's run is surely in the middle of a call when it is killed. A held call is
served (counted in the mock's window, its learners unenrolled) before its answer waits.

    python tests/zoho_hold_mock.py --time-scale 0.01 --batches 2 --learners 80 --hold 60

prints ``serving on URL`` once it serves; ``GET URL/__test__/arrivals`` is the log, a list of
``[time, batch]``; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from unenroll.adapters.zoho.mock import ZohoMock, ZohoMockConfig, ZohoMockState
from unenroll.contract.mock import MockServer


async def serve(time_scale: float, batches: int, learners: int, hold: float) -> None:
    mock = ZohoMock(ZohoMockConfig(time_scale=time_scale), ZohoMockState.generate(1, batches, learners))
    arrivals: list[tuple[float, str]] = []
    held: set[str] = set()

    @web.middleware
    async def log_and_hold(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.endswith("/unenroll"):
            return await handler(request)
        batch = request.match_info.get("batch", "")
        arrivals.append((time.time(), batch))
        response = await handler(request)
        if batch in held:
            await asyncio.sleep(hold)
        return response

    async def hold_batch(request: web.Request) -> web.Response:
        held.add(request.match_info["batch"])
        return web.json_response(sorted(held))

    async def arrival_log(request: web.Request) -> web.Response:
        return web.json_response(arrivals)

    mock.app.middlewares.append(log_and_hold)
    mock.app.router.add_post("/__test__/hold/{batch}", hold_batch)
    mock.app.router.add_get("/__test__/arrivals", arrival_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with MockServer(mock.app) as server:
        print(f"mock zoho serving on {server.url}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--learners", type=int, default=80)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds a held batch's answers wait")
    args = parser.parse_args()
    asyncio.run(serve(args.time_scale, args.batches, args.learners, args.hold))


if __name__ == "__main__":
    main()
