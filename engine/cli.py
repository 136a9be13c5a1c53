"""The ``unenroll`` command line."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import click

from .logs import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="unenroll")
def main() -> None:
    """Unenroll learners in bulk, within each vendor's documented limits."""


@main.command()
@click.option("--learners", default=6000, show_default=True, help="Learners enrolled in the mock.")
@click.option("--batches", default=6, show_default=True, help="Batches they are spread over.")
@click.option("--time-scale", default=0.01, show_default=True,
              help="Multiply every window, lock and latency by this (0.01: a minute lasts 0.6 s).")
@click.option("--fault-rate", default=0.05, show_default=True, help="Share of calls the mock answers with a fault.")
@click.option("--seed", default=42, show_default=True)
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every outcome here (.jsonl or .csv).")
@click.option("--json-logs", is_flag=True, help="Log JSON lines to stderr.")
@click.option("--verbose", "-v", is_flag=True, help="Log every chunk.")
def demo(learners: int, batches: int, time_scale: float, fault_rate: float, seed: int,
         results: Path | None, json_logs: bool, verbose: bool) -> None:
    """Run a real job against the bundled Zoho People mock (in-process, no credentials)."""
    from .demo import DemoSettings, run_demo

    if learners < 1 or batches < 1 or not 0 < time_scale <= 1 or not 0 <= fault_rate < 1:
        raise click.BadParameter("learners and batches must be >= 1, 0 < time-scale <= 1, 0 <= fault-rate < 1")
    configure_logging(json=json_logs, level="debug" if verbose else "warning")
    settings = DemoSettings(learners, batches, time_scale, fault_rate, seed, results)
    click.echo(f"Starting the Zoho People mock on 127.0.0.1 (time scale {time_scale}: "
               f"a 60 s window lasts {60 * time_scale:g} s) and unenrolling about {learners} learners...")
    report, stats = anyio.run(run_demo, settings)
    click.echo(report.summary())
    endpoint = stats["endpoints"]["unenroll"]
    click.echo(f"mock's view: {endpoint['calls']} calls, at most {endpoint['max_in_rolling_window']} in any "
               f"rolling window (limit 30), {endpoint['lock_events']} lock-outs, faults injected "
               f"{json.dumps(stats['faults'])}")
    if results is not None:
        click.echo(f"every outcome written to {results}")
    raise SystemExit(0 if report.stopped is None else 3)
