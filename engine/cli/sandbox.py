"""``unenroll mock serve VENDOR`` and ``unenroll demo [VENDOR]``: a vendor's mock as a sandbox.

Both learn the vendors from their plugins: one subcommand per plugin that has a mock, with
the mock's own seeded-state options (:class:`~unenroll.contract.MockOption`) as flags. The
demo runs a real job, through the vendor's own plugin, against its mock started in-process.
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import click

from unenroll.accounts.ledger import Report
from unenroll.accounts.results import ResultsWriter
from unenroll.cli.plugins import demo_vendor, vendors
from unenroll.contract.plugin import BuildRequest, MockRequest, Sandbox, VendorPlugin
from unenroll.contract.settings import Connection, Credentials, RunSettings
from unenroll.job.retry import RetryPolicy
from unenroll.job.settings import JobSettings
from unenroll.job.stream import run
from unenroll.observe.secrets import Secret

URL_PLACEHOLDER = "{url}"  # a sandbox's settings line may name the URL it will be served on


def _mock_plugins() -> dict[str, VendorPlugin]:
    return {name: plugin for name, plugin in vendors().items() if plugin.mock is not None}


def _vendor_params(plugin: VendorPlugin, defaults: Mapping[str, Any] | None = None) -> list[click.Parameter]:
    assert plugin.mock is not None
    return [click.Option([f"--{o.name.replace('_', '-')}", o.name], type=o.kind,
                         default=(defaults or {}).get(o.name, o.default), show_default=True, help=o.help)
            for o in plugin.mock.options]


class _PerVendor(click.Group):
    """A group whose subcommands are the vendors with a mock, made on demand from their plugins."""

    def __init__(self, *args: Any, make: Callable[[VendorPlugin], click.Command], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make = make

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_mock_plugins())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        plugin = _mock_plugins().get(cmd_name)
        return self._make(plugin) if plugin is not None else None


# -- mock serve ------------------------------------------------------------------------------


def _serve_command(plugin: VendorPlugin) -> click.Command:
    assert plugin.mock is not None
    params: list[click.Parameter] = [
        click.Option(["--host"], default="127.0.0.1", show_default=True),
        click.Option(["--port"], default=0, show_default=True, type=click.IntRange(0, 65535), help="0: any free port."),
        click.Option(["--time-scale"], default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Multiply every window, lock and latency by this (0.01: a minute lasts 0.6 s)."),
        click.Option(["--seed"], default=0, show_default=True, help="Seeds the state, latency and faults."),
        click.Option(["--fault-rate"], default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help="Share of calls answered with a 5xx, a dropped connection or a truncated body."),
        click.Option(["--latency"], default=0.0, show_default=True, type=click.FloatRange(min=0),
                     help="Seconds each answer takes (before the time scale)."),
        click.Option(["--fragmented"], is_flag=True,
                     help="Write every answer gzip-encoded, chunked and in pieces with pauses, as a real network "
                          "delivers them."),
        click.Option(["--tls-self-signed", "tls_ca_file"], type=click.Path(dir_okay=False, path_type=Path),
                     metavar="CA_FILE",
                     help="Serve HTTPS with a throwaway test certificate; its authority's certificate is written "
                          "to CA_FILE (the run trusts it via SSL_CERT_FILE)."),
        *_vendor_params(plugin),
    ]

    def callback(host: str, port: int, time_scale: float, seed: int, fault_rate: float, latency: float,
                 fragmented: bool, tls_ca_file: Path | None, **options: Any) -> None:
        import os

        from unenroll.contract.mock import HOSTILE_WIRE, LoopbackTLS

        request = MockRequest(time_scale=time_scale, seed=seed, fault_rate=fault_rate, latency=latency,
                              wire=HOSTILE_WIRE if fragmented else None, options=options, environ=dict(os.environ))
        assert plugin.mock is not None
        sandbox = plugin.mock.build(request)
        tls: ssl.SSLContext | None = None
        if tls_ca_file is not None:
            try:
                loopback = LoopbackTLS.generate()
                tls_ca_file.write_bytes(loopback.ca_pem)
            except (OSError, RuntimeError) as exc:
                raise click.UsageError(f"cannot serve HTTPS: {exc}") from None
            tls = loopback.server
        try:
            anyio.run(_serve, plugin.name, sandbox, host, port, time_scale, tls, tls_ca_file)
        except OSError as exc:  # the port is taken, or the host is not ours
            click.echo(f"unenroll: cannot serve on {host}:{port}: {exc.strerror or exc}", err=True)
            raise SystemExit(2) from None

    return click.Command(
        plugin.name, params=params, callback=callback,
        help=f"Serve {plugin.title}'s mock API until SIGTERM or Ctrl-C ({plugin.mock.hint}).\n\n"
             "Prints the URL it serves on first (flushed), then the settings a run needs to use it. The mock "
             "accepts the credentials set in the environment if there are any, else its own. "
             "GET <url>/__mock__/stats shows its calls and state.")


async def _serve(vendor: str, sandbox: Sandbox, host: str, port: int, time_scale: float,
                 tls: ssl.SSLContext | None, ca_file: Path | None) -> None:
    from unenroll.contract.mock import MockServer

    # the signal handlers are in place before the URL is printed: whoever reads it may stop us at once
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with MockServer(sandbox.app, host, port, ssl_context=tls) as server:
            click.echo(f"mock {vendor} serving on {server.url}")
            settings = [f"UNENROLL_BASE_URL={server.url}", f"UNENROLL_TIME_SCALE={time_scale:g}"]
            settings.insert(1, f"SSL_CERT_FILE={ca_file}" if ca_file is not None else "UNENROLL_ALLOW_INSECURE_HTTP=1")
            lines = [line.replace(URL_PLACEHOLDER, server.url) for line in sandbox.env]
            click.echo("rehearse with: " + " ".join([*settings, *lines]))
            click.echo(f"stats: {server.url}/__mock__/stats (Ctrl-C or SIGTERM stops it)")
            sys.stdout.flush()
            started = time.monotonic()
            async for _ in signals:
                break
    click.echo(f"mock {vendor} stopped after {time.monotonic() - started:.0f} s")


mock_serve = _PerVendor("serve", make=_serve_command,
                        help="Serve a vendor's mock API on this machine (a sandbox to rehearse against).")


# -- demo ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoSettings:
    time_scale: float = 0.01  # a minute lasts 0.6 s, so the demo shows several windows quickly
    fault_rate: float = 0.05
    seed: int = 42
    latency: float = 0.4  # seconds per answer, before the time scale
    results: Path | None = None


def _credentials(plugin: VendorPlugin, env: Sequence[str]) -> Credentials:
    """The sandbox's own credentials, from its settings lines."""
    values = {}
    for line in env:
        name, _, value = line.partition("=")
        if name in plugin.credential_names:
            values[name] = Secret(value)
    return Credentials(values=values, sources={name: "the sandbox" for name in values})


async def run_demo(plugin: VendorPlugin, options: Mapping[str, Any],
                   settings: DemoSettings) -> tuple[Report, dict[str, Any], dict[str, int | None]]:
    """Start the vendor's mock on 127.0.0.1, run the demo job through the vendor's plugin,
    return the report, the mock's stats and each endpoint's documented calls per window."""
    from unenroll.contract.mock import MockServer

    assert plugin.mock is not None
    sandbox = plugin.mock.build(MockRequest(time_scale=settings.time_scale, seed=settings.seed,
                                            fault_rate=settings.fault_rate, latency=settings.latency,
                                            options=options))
    if sandbox.demo_items is None:
        raise click.UsageError(f"{plugin.title}'s mock has no demo data")
    job = JobSettings(retry=RetryPolicy(), seed=settings.seed).scaled(settings.time_scale)
    async with MockServer(sandbox.app) as server, aiohttp.ClientSession() as session:
        run_settings = RunSettings(plugin.name, Connection(base_url=server.url, allow_insecure_http=True,
                                                           time_scale=settings.time_scale), job=job)
        adapter = plugin.build(BuildRequest(run_settings, _credentials(plugin, sandbox.env), session))
        items = sandbox.demo_items()
        if settings.results is not None:
            with ResultsWriter(settings.results) as results:
                report = await run(adapter, items, settings=job, sinks=[results])
        else:
            report = await run(adapter, items, settings=job)
        async with session.get(server.url + "/__mock__/stats", params={"state": "0"}) as response:
            stats: dict[str, Any] = await response.json()
    return report, stats, {name: spec.max_calls for name, spec in adapter.endpoints.items()}


def mock_view(stats: Mapping[str, Any], limits: Mapping[str, int | None]) -> str:
    """One line per endpoint the mock counted: calls, the most in any window against the
    documented limit, lock-outs; then the faults it injected."""
    lines = []
    for name, endpoint in stats.get("endpoints", {}).items():
        if not isinstance(endpoint, Mapping) or not endpoint.get("calls"):
            continue
        limit = limits.get(name)
        most = endpoint.get("max_in_rolling_window")
        window = f", at most {most} in any rolling window (limit {limit})" if most is not None and limit else ""
        locks = endpoint.get("lock_events")
        lockouts = f", {locks} lock-outs" if locks is not None else ""
        lines.append(f"mock's view of {name}: {endpoint['calls']} calls{window}{lockouts}")
    lines.append(f"faults injected: {json.dumps(stats.get('faults', {}))}")
    return "\n".join(lines)


def _demo_command(plugin: VendorPlugin) -> click.Command:
    assert plugin.mock is not None

    def callback(**options: Any) -> None:
        ctx = click.get_current_context()
        _run_demo_command(plugin, options, ctx.find_object(DemoSettings) or DemoSettings())

    return click.Command(plugin.name, params=_vendor_params(plugin, plugin.mock.demo_options), callback=callback,
                         help=f"Run a real job against {plugin.title}'s mock, in-process (no credentials).")


def _run_demo_command(plugin: VendorPlugin, options: Mapping[str, Any], settings: DemoSettings) -> None:
    from unenroll.observe.logs import configure_logging

    assert plugin.mock is not None
    ctx = click.get_current_context()
    configure_logging(json=ctx.meta.get("demo.json_logs", False),
                      level="debug" if ctx.meta.get("demo.verbose") else "warning")
    click.echo(f"Starting the {plugin.title} mock on 127.0.0.1 (time scale {settings.time_scale}: "
               f"a 60 s window lasts {60 * settings.time_scale:g} s) and running its demo job...")
    report, stats, limits = anyio.run(run_demo, plugin, options, settings)
    click.echo(report.summary())
    click.echo(mock_view(stats, limits))
    if settings.results is not None:
        click.echo(f"every outcome written to {settings.results}")
    raise SystemExit(0 if report.stopped is None else 3)


def _demo_group_callback(time_scale: float, fault_rate: float, seed: int, results: Path | None, json_logs: bool,
                         verbose: bool) -> None:
    ctx = click.get_current_context()
    if not 0 < time_scale <= 1 or not 0 <= fault_rate < 1:
        raise click.BadParameter("0 < time-scale <= 1 and 0 <= fault-rate < 1")
    ctx.obj = DemoSettings(time_scale=time_scale, fault_rate=fault_rate, seed=seed, results=results)
    ctx.meta["demo.json_logs"], ctx.meta["demo.verbose"] = json_logs, verbose
    if ctx.invoked_subcommand is None:  # `unenroll demo`: the default vendor, at its demo size
        plugin = _mock_plugins()[demo_vendor()]
        assert plugin.mock is not None
        defaults = {o.name: plugin.mock.demo_options.get(o.name, o.default) for o in plugin.mock.options}
        _run_demo_command(plugin, defaults, ctx.obj)


demo = _PerVendor(
    "demo", make=_demo_command, invoke_without_command=True, callback=_demo_group_callback,
    params=[
        click.Option(["--time-scale"], default=0.01, show_default=True, type=float,
                     help="Multiply every window, lock and latency by this (0.01: a minute lasts 0.6 s)."),
        click.Option(["--fault-rate"], default=0.05, show_default=True, type=float,
                     help="Share of calls the mock answers with a fault."),
        click.Option(["--seed"], default=42, show_default=True, type=int),
        click.Option(["--results"], type=click.Path(dir_okay=False, path_type=Path),
                     help="Write every outcome here (.jsonl or .csv)."),
        click.Option(["--json-logs"], is_flag=True, help="Log JSON lines to stderr."),
        click.Option(["--verbose", "-v"], is_flag=True, help="Log every chunk."),
    ],
    help="Run a real job against a vendor's bundled mock, in-process: no credentials needed.\n\n"
         "`unenroll demo` runs the default vendor's demo; `unenroll demo VENDOR --help` shows a vendor's own "
         "options (the size of its seeded state).",
)
