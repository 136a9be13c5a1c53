"""The ``unenroll`` command line: ``run`` a job from a file, ``mock serve`` a sandbox, ``demo``.

Only the command line looks vendors up (``unenroll.cli.plugins``, from entry points); the rest
of the engine stays vendor-neutral.

Exit codes of ``run``: 0 every item reached the wanted state (repeated rows aside), 1 some
rows were rejected, or some items failed, gave up or were not sent (also when the input
failed after items were sent), 2 bad usage, a bad input or settings file, a journal in use
or not confirmed: nothing was sent, 3 a fatal vendor error stopped the job (or the backup
failed), 130/143 stopped by SIGINT/SIGTERM (resume with ``--resume``). Every run that opened
its journal writes ``*.report.json`` and says what it sent, whichever way it ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast

import anyio
import click

from unenroll.accounts.results import results_format
from unenroll.contract.declarations import Adapter, EndpointSpec, Operation
from unenroll.observe.logs import configure_logging, get_logger
from unenroll.observe.secrets import Secret, scrub

if TYPE_CHECKING:  # imported where used, so `unenroll --help` stays quick
    from unenroll.accounts.journal import BackupState, Journal
    from unenroll.accounts.ledger import Report
    from unenroll.accounts.row_files import RowFiles
    from unenroll.contract.plugin import VendorPlugin
    from unenroll.contract.settings import Credentials, RunSettings
    from unenroll.inputs.files import InputFile
    from unenroll.job.pipeline import Job
    from unenroll.model import Item
    from unenroll.planning.plan import Plan

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="unenroll")
def main() -> None:
    """Unenroll learners in bulk, within each vendor's documented limits.

    \b
    unenroll run VENDOR FILE --dry-run   check a file and see the plan; sends nothing
    unenroll mock serve VENDOR           a local sandbox to rehearse against
    unenroll run VENDOR FILE             the real thing (see `unenroll run --help`)
    unenroll demo [VENDOR]               a self-contained demo against a vendor's bundled mock
    """


# -- run -----------------------------------------------------------------------------------


def _run_help() -> str:
    from unenroll.cli.plugins import describe_columns, vendors

    VENDORS = vendors()
    example = next(iter(VENDORS), "VENDOR")

    columns = "\n".join(f"    {name:<32}{cols}" for name, cols in describe_columns())
    credentials = "\n".join(f"    {v.name:<10}{line}" if i == 0 else f"    {'':<10}{line}"
                            for v in VENDORS.values() for i, line in enumerate(_wrap(v.credential_help, 66)))
    destructive = "\n".join(f"    {v.name:<10}{flag}\n    {'':<12}{what}" for v in VENDORS.values()
                            for flag, what in v.destructive_flags.items())
    return f"""Unenroll every row of FILE on VENDOR ({', '.join(VENDORS)}), as fast as the vendor's
documented limits allow, with one outcome per row in a results file.

FILE is CSV with a header row (UTF-8, with or without a BOM) or JSONL (one JSON object a
line; by the suffix .jsonl, or --format). Start with a dry run, which checks every row
and prints the plan (calls, the least time the limits allow, a sample request) and sends
nothing:

\b
    unenroll run {example} learners.csv --dry-run

Rehearse against a sandbox (`unenroll mock serve {example}` starts one), then run it for real,
backing up the current enrolments first:

\b
    unenroll run {example} learners.csv --backup before.jsonl

\b
Columns each row needs (--operation picks the operation; the first is the default):
{columns}
Name other headers with --column, e.g. --column COLUMN="Your header".

\b
Credentials come from the environment or --credentials-file (TOML, the same names),
never from a flag:
{credentials}

\b
Destructive options are off unless turned on with --destructive (repeatable);
they are shown in the plan and recorded in the report:
{destructive}

Settings (base_url, accounts_url, time_scale, allow_insecure_http, timeout, confirm_above,
change_threshold, [job] max_attempts and the other retry and breaker keys,
[<vendor>.limits]) come from --settings (TOML) and UNENROLL_<KEY> environment variables,
which win (UNENROLL_BASE_URL, UNENROLL_<VENDOR>_BASE_URL, ...).

Every row gets one line in the results file (default: next to FILE; .csv, .jsonl or
.xlsx): its own cells, then its outcome, the vendor's code and message, the attempts and
its row number. A journal next to the results file records progress as it happens: if
the run is stopped (Ctrl-C) or killed, run the same command with --resume; items already
confirmed are never sent again. With
--backup, nothing is changed before the backup is complete: a resumed run first finishes
the backup where it stopped (--backup may then be left out), and keeps a finished one.
A second Ctrl-C abandons the calls in flight (their items are sent again on --resume).
Above confirm_above items (1,000) the run asks before it starts; scripts pass --yes.
Where the backup's read counts what a target holds, a job that would remove more than
change_threshold (50%) of it is refused, --yes or not: raise it with --change-threshold.

Every run ends with a summary for the ticket (input and its hash, vendor, tenant, times
across runs, outcomes, files) and what to do next. The results file lists every row in
input order, its own columns first; beside it, *.errors.csv holds only the rows that need
attention, ready to fix and run as the input.

\b
Exit codes:
    0  every item reached the wanted state (repeated rows aside)
    1  some rows were rejected, or some items failed, gave up or were not sent (also: the
       input failed after items were sent)
    2  bad usage, input, settings or credentials, journal in use, or not confirmed: nothing sent
    3  a fatal vendor error stopped the job (or the backup failed)
    130/143  stopped by Ctrl-C / SIGTERM: resume with --resume
"""


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def _vendor_names() -> list[str]:
    from unenroll.cli.plugins import vendor_names

    return vendor_names()


class _RunCommand(click.Command):
    """``run``'s help names the vendors' columns and credentials, read from the registry
    only when help is asked for."""

    def get_help(self, ctx: click.Context) -> str:
        self.help = _run_help()
        return super().get_help(ctx)


def _destructive_choices() -> list[str]:
    from unenroll.cli.plugins import all_destructive_flags

    return list(all_destructive_flags())


@dataclass(frozen=True, slots=True)
class RunOptions:
    vendor: str
    input_path: Path
    operation: str | None
    columns: tuple[str, ...]
    input_format: str | None
    results: Path | None
    journal: Path | None
    resume: bool
    dry_run: bool
    backup: Path | None
    yes: bool
    settings: Path | None
    credentials_file: Path | None
    destructive: tuple[str, ...]
    json_logs: bool
    verbose: bool
    quota: str | None = None
    delimiter: str | None = None
    change_threshold: float | None = None


@main.command("run", cls=_RunCommand, short_help="Unenroll every row of a CSV or JSONL file.")
@click.argument("vendor", metavar="VENDOR", type=click.Choice(_vendor_names()))
@click.argument("input_path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--operation", "-o", metavar="NAME",
              help="What to do with each row (default: unenroll); see \"Columns each row needs\" above.")
@click.option("--column", "columns", multiple=True, metavar="NAME=HEADER",
              help="Read column NAME from the header HEADER (repeatable).")
@click.option("--format", "input_format", type=click.Choice(["csv", "jsonl", "xlsx"]),
              help="The input's format, if its suffix and content do not say (.csv, .jsonl, .xlsx).")
@click.option("--delimiter", metavar="CHAR",
              help="The CSV's separator: , ; tab or | [default: told from the header line].")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path),
              help="The results file, .csv or .jsonl [default: FILE's name + .results + FILE's suffix].")
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path),
              help="The journal that makes the run resumable [default: the results file + .journal].")
@click.option("--resume", is_flag=True, help="Finish the job recorded in the journal (after a stop or a crash).")
@click.option("--dry-run", is_flag=True, help="Check every row and print the plan; send nothing, write nothing.")
@click.option("--backup", type=click.Path(dir_okay=False, path_type=Path),
              help="Before changing anything, read the targeted enrolments and write them here (JSONL).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation above confirm_above items.")
@click.option("--change-threshold", type=click.FloatRange(0, 100, min_open=True), metavar="PERCENT",
              help="The most this job may remove of what one target holds, where the backup's read counts it "
                   "[default: change_threshold, 50]; --yes does not switch it off.")
@click.option("--settings", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Settings file (TOML).")
@click.option("--credentials-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Credentials file (TOML, the environment variables' names); the environment wins.")
@click.option("--destructive", multiple=True, metavar="OPTION", type=click.Choice(_destructive_choices()),
              help="Turn on a destructive vendor option (repeatable); see \"Destructive options\" above.")
@click.option("--json-logs", is_flag=True, help="Log JSON lines to stderr (the default when it is not a terminal).")
@click.option("--verbose", "-v", is_flag=True, help="Log every call.")
@click.option("--quota", metavar="WHERE", envvar="UNENROLL_QUOTA",
              help="Where the tenant's calls are counted, for every run that shares it: a SQLite file [default: "
                   "$XDG_STATE_HOME/unenroll/quota.db, every run on this machine], redis://HOST:PORT/DB (every "
                   "host), or memory (this run only).")
def run_command(vendor: str, input_path: Path, operation: str | None, columns: tuple[str, ...],
                input_format: str | None, results: Path | None, journal: Path | None, resume: bool, dry_run: bool,
                backup: Path | None, yes: bool, settings: Path | None, credentials_file: Path | None,
                destructive: tuple[str, ...], json_logs: bool, verbose: bool, quota: str | None,
                delimiter: str | None, change_threshold: float | None) -> None:
    options = RunOptions(vendor, input_path, operation, columns, input_format, results, journal, resume, dry_run,
                         backup, yes, settings, credentials_file, destructive, json_logs, verbose, quota, delimiter,
                         change_threshold)
    raise SystemExit(execute_run(options))


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"unenroll: {scrub(message)}", err=True)
    raise SystemExit(code)


def default_results_path(input_path: Path, fmt: str) -> Path:
    suffix = ".csv" if fmt in ("csv", "xlsx") else ".jsonl"
    return input_path.with_name(f"{input_path.stem}.results{suffix}")


def job_fingerprint(input_sha256: str, vendor: str, operation: str, columns: dict[str, str],
                    options: dict[str, bool], base_url: str | None) -> str:
    """What makes a journal this job's: the input's bytes, vendor, operation, column
    mapping, destructive options, and the vendor instance (a sandbox's journal must not
    skip items on production)."""
    identity = json.dumps({"input": input_sha256, "vendor": vendor, "operation": operation,
                           "columns": sorted(columns.items()), "options": sorted(options.items()),
                           "base_url": base_url}, sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()


def execute_run(o: RunOptions) -> int:
    """``unenroll run``: check everything that can be checked before a call, then plan,
    confirm, back up, run, report. Returns the exit code."""
    from unenroll.cli.plugins import vendors

    VENDORS = vendors()
    from unenroll.cli.config import load_credentials, load_settings, quota_choice
    from unenroll.contract.settings import ConfigError
    from unenroll.inputs.files import InputError, InputFile, parse_column_mapping

    json_logs = o.json_logs or not sys.stderr.isatty()
    level = "debug" if o.verbose else ("info" if json_logs else "warning")
    configure_logging(json=json_logs, level=level)
    entry = VENDORS[o.vendor]
    operation_name = o.operation or next(iter(entry.operations))
    operation = entry.operations.get(operation_name)
    if operation is None:
        _fail(f"{entry.title} has no operation {operation_name!r} (it has: {', '.join(entry.operations)})")
    unknown = [f for f in o.destructive if f not in entry.destructive_flags]
    if unknown:
        _fail(f"{entry.title} has no option {', '.join(unknown)}")
    try:
        settings = load_settings(o.vendor, o.settings, os.environ, vendors=list(VENDORS),
                                 limit_keys=entry.limit_keys())
        credentials = load_credentials(entry.credential_names, o.credentials_file, os.environ,
                                       known=[n for v in VENDORS.values() for n in v.credential_names])
        quota = quota_choice(o.quota, os.environ)
        mapping = parse_column_mapping(o.columns, operation.shape)
        input_file = InputFile(o.input_path, operation.shape, mapping, fmt=o.input_format,  # type: ignore[arg-type]
                               delimiter=o.delimiter)
    except (ConfigError, InputError) as exc:
        _fail(str(exc))
    if o.change_threshold is not None:  # raised (or lowered) explicitly for this run
        settings = replace(settings, change_threshold=o.change_threshold)
    for warning in credentials.warnings:
        click.echo(f"unenroll: warning: {warning}", err=True)
    results = o.results or default_results_path(o.input_path, input_file.format)
    try:
        results_format(results)
    except ValueError as exc:
        _fail(str(exc))
    journal_path = o.journal or results.with_name(results.name + ".journal")
    if not o.dry_run:
        if not o.resume and journal_path.exists() and journal_path.stat().st_size > 0:
            _fail(f"the journal {journal_path} already exists: finish that job with --resume, or choose another "
                  "--journal (or --results)")
        if o.resume and not journal_path.exists():
            _fail(f"the journal {journal_path} does not exist: there is nothing to resume (run without --resume)")
    if o.backup is not None and not o.resume and o.backup.exists():  # a resumed job's own backup: see _Run
        _fail(f"the backup file {o.backup} already exists: choose another path (an earlier backup is never "
              "overwritten)")
    for path, what in ((results, "results file"), (journal_path, "journal"), (o.backup, "backup file")):
        if path is not None and not o.dry_run and not path.resolve().parent.is_dir():
            _fail(f"the {what}'s folder {path.parent} does not exist")
    if results.resolve() == o.input_path.resolve():
        _fail("the results file would overwrite the input: choose another --results")
    run = _Run(o, entry, settings, credentials, input_file, operation.shape.operation, operation_name, results,
               journal_path, quota)
    try:
        return anyio.run(run.main)
    except KeyboardInterrupt:  # outside the signal handlers' watch: say what is true
        if run.exit_code is not None:
            return run.exit_code  # the report was written
        if run.stage == "plan":
            click.echo("\nunenroll: interrupted before anything was sent", err=True)
        else:
            click.echo(f"\nunenroll: interrupted; NO report was written; the journal {run.journal_path} has what was "
                       "done: run the same command with --resume", err=True)
        return EXIT_SIGNAL[signal.SIGINT]
    except Exception as exc:  # a defect of ours: one scrubbed line for the admin, never a traceback
        click.echo(f"unenroll: stopped by an unexpected error ({scrub(f'{type(exc).__name__}: {exc}')}); "
                   f"the journal {run.journal_path} has what was done: run the same command with --resume "
                   "(report this error to the maintainers)", err=True)
        return EXIT_FATAL


class _Run:
    """One ``unenroll run``: the steps after the command line was checked.

    Every way out after the journal is open writes the report (``*.report.json``) and says
    what this run sent: the signal handlers stay in place until the report is written, so
    a Ctrl-C can never skip it. A first Ctrl-C (or SIGTERM) stops the job, letting calls in
    flight finish; a second abandons those calls (their items end ``not_sent``, and
    ``--resume`` sends them again) and the report is still written; only a third quits at
    once, saying that no report was written.
    """

    def __init__(self, o: RunOptions, entry: VendorPlugin, settings: RunSettings, credentials: Credentials,
                 input_file: InputFile, engine_operation: str, operation_name: str, results: Path,
                 journal_path: Path, quota: tuple[str, str | None] = ("memory", None)) -> None:
        self.o = o
        self.quota = quota
        self.entry = entry
        self.settings = settings
        self.credentials = credentials
        self.input_file = input_file
        self.engine_operation = engine_operation
        self.operation_name = operation_name
        self.results = results
        self.journal_path = journal_path
        self.report_path = results.with_name(results.name + ".report.json")
        self.signal_received: int | None = None
        self.signals_seen = 0
        self.log = get_logger(vendor=o.vendor)
        self.job: Job | None = None
        self.journal: Journal | None = None
        self.journal_forgotten = False
        self.session: Any = None
        self.work: anyio.CancelScope | None = None  # the backup and the job: the first signal cancels it
        self.stage = "plan"  # plan, backup, job, report, done
        self.exit_code: int | None = None  # set once the report is written
        self.backup_path: Path | None = None
        self.started_at = datetime.now(UTC)
        self.quota_limiters: list[Any] = []  # the shared quota's limiters (SharedWindowLimiter), once open
        self.quota_store: Any = None  # the shared quota's store (QuotaStore), once open: learned limits live there
        self.learned: dict[str, Any] = {}  # endpoint -> the WindowEstimate recalled for it
        self.learned_now: dict[str, str] = {}  # endpoint -> the limit it ran at, in words (for the report)
        self.threshold_counts: dict[str, int] = {}  # whole-target read -> what it must list (change threshold)

    def _credentials_found(self) -> str:
        """Which credentials were found, and where (never their values), for a refusal."""
        found = self.credentials.sources
        if not found:
            return ""
        missing = [n for n in self.entry.credential_names if n not in found]
        have = ", ".join(f"{name} (from {where})" for name, where in found.items())
        return f"; found {have}" + (f"; not set: {', '.join(missing)}" if missing else "")

    def _secrets(self) -> list[Secret]:
        return list(self.credentials.values.values())

    async def main(self) -> int:
        import aiohttp

        from unenroll.contract.plugin import BuildRequest
        from unenroll.contract.settings import ConfigError

        async with aiohttp.ClientSession() as session:
            self.session = session
            try:
                adapter = self.entry.build(BuildRequest(self.settings, self.credentials, session,
                                                        frozenset(self.o.destructive), self.o.dry_run))
            except ConfigError as exc:
                _fail(str(exc) + self._credentials_found())
            async with self._shared_quota(adapter) as adapter:
                return await self._with_adapter(adapter, _OperationsView(adapter, [self.engine_operation]))

    @asynccontextmanager
    async def _shared_quota(self, adapter: Adapter) -> AsyncIterator[Adapter]:
        """``adapter`` whose windowed endpoints count their calls in the shared quota (``--quota``),
        with their limiters' writers running; as it is for ``--quota memory``. A dry run only
        reads the quota (what others spend now, said before the plan) and writes no file."""
        from unenroll.cli.quota import open_quota_store, shared_endpoints
        from unenroll.contract.settings import ConfigError
        from unenroll.limits.budget import DAY
        from unenroll.limits.memory_quota import MemoryQuotaStore

        kind, where = self.quota
        daily_calls = self.settings.daily_calls
        no_file = kind == "sqlite" and not await anyio.Path(where or "").exists()
        nothing_to_read = self.o.dry_run and (kind == "memory" or no_file)
        if (kind == "memory" and daily_calls is None) or nothing_to_read:  # a dry run writes no quota file
            yield adapter
            return
        base_url = self.settings.connection.base_url or self.entry.default_base_url or ""
        timeout = self.settings.connection.timeout
        try:
            store = MemoryQuotaStore() if kind == "memory" else await open_quota_store(kind, where)
        except ConfigError as exc:
            _fail(str(exc))
        try:
            endpoints, limiters = shared_endpoints(adapter.vendor, base_url, adapter.endpoints, store,
                                                   call_timeout=timeout if timeout is not None else 120.0,
                                                   daily_calls=daily_calls,
                                                   day=DAY * self.settings.connection.time_scale)
            self.quota_limiters = limiters
            self.quota_store = store
            async with AsyncExitStack() as stack:
                for limiter in limiters:
                    if not self.o.dry_run:  # a dry run only reads the quota: it starts no writer
                        await stack.enter_async_context(limiter)
                    spent = (await limiter.usage()).describe(limiter.rules)
                    if spent:  # the others' calls are this run's wait: say so before it starts
                        click.echo(f"quota {limiter.key.group}: {spent}")
                yield adapter if self.o.dry_run else _EndpointsView(adapter, endpoints)
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    def _backup_target(self, journal: Journal | None) -> tuple[Path | None, BackupState | None]:
        """Where this job's backup goes and what the journal knows of it. A resumed job keeps
        the backup it began (``--backup`` may be left out); a job that already sent changes
        without a backup cannot start one (it would not show the enrolments before them)."""
        o = self.o
        state = journal.backup_state() if journal is not None else None
        if state is None:
            if o.backup is not None and journal is not None and journal.any_sent():
                _fail("this job started without --backup and has already sent changes: a backup now would not show "
                      "the enrolments before them; resume without --backup")
            if o.backup is not None and o.resume and o.backup.exists():
                _fail(f"the backup file {o.backup} already exists: choose another path (an earlier backup is never "
                      "overwritten)")
            return o.backup, None
        recorded = Path(state.path)
        if o.backup is not None and o.backup.resolve() != recorded:
            _fail(f"this job's backup is {recorded}: resume with --backup {recorded}, or without --backup")
        return recorded, state

    async def _with_adapter(self, vendor_adapter: Adapter, adapter: Adapter) -> int:
        """``adapter`` shows the job's operation only; backups read through ``vendor_adapter``."""
        from unenroll.accounts.journal import Journal, JournalError
        from unenroll.inputs.files import InputError, file_sha256
        from unenroll.planning import backup as backup_api
        from unenroll.planning.plan import describe, make_plan

        o = self.o
        base_url = self.settings.connection.base_url or self.entry.default_base_url or ""
        input_sha256 = file_sha256(o.input_path)
        options = {k: v for op in adapter.operations.values() for k, v in (op.destructive_options or {}).items()}
        fingerprint = job_fingerprint(input_sha256, o.vendor, self.operation_name, self.input_file.columns,
                                      options, base_url)
        # plan: one pass over the input, nothing sent (a resumed plan counts what the journal confirms)
        try:
            plan_journal = Journal.open(self.journal_path, fingerprint, resume=True) if o.resume else None
        except JournalError as exc:
            _fail(_journal_problem(exc))
        try:
            backup_path, backup_state = self._backup_target(plan_journal)
            to_back_up = backup_path is not None and not (backup_state is not None and backup_state.complete)
            plan = make_plan(adapter, self.input_file.items(), journal=plan_journal, keep_items=to_back_up,
                             operations_used=[self.engine_operation])
        except InputError as exc:
            _fail(str(exc))
        finally:
            if plan_journal is not None:
                plan_journal.close()
        self.backup_path = backup_path
        plan.daily_calls = self.settings.daily_calls
        plan.day *= self.settings.connection.time_scale
        self.learned = await self._recall_learned(adapter)
        for endpoint, estimate in self.learned.items():
            if endpoint in plan.limits:
                plan.limits[endpoint] += f"; {estimate.describe(self.settings.connection.time_scale)}"
        click.echo(describe(plan, source=str(o.input_path), base_url=base_url, secrets=self._secrets()))
        click.echo("columns: " + ", ".join(f"{column} <- {header!r}"
                                           for column, header in self.input_file.column_mapping.items()))
        for notice in self.input_file.notices:  # known once the file was read for the plan
            click.echo(f"note: {notice}")
        click.echo(self._threshold_line(vendor_adapter, backup_path))
        if backup_state is not None and backup_state.complete:
            click.echo(f"backup: completed by an earlier run ({backup_state.records:,} records in {backup_path})")
        elif to_back_up:
            try:
                backup_plan = backup_api.plan_backup(vendor_adapter, dict(plan.per_target))
            except backup_api.BackupError as exc:
                _fail(f"--backup: {exc}")
            click.echo(backup_plan.describe())
            if backup_state is not None:
                click.echo(f"backup: an earlier run began it; it goes on where it stopped ({backup_path})")
        if o.dry_run:
            click.echo("dry run: nothing was sent and nothing was written")
            # `--dry-run && run` must stop where the run would end 1: rows it would reject
            return EXIT_SOME_FAILED if plan.counts.get("rejected") else EXIT_OK
        self._confirm(plan)
        try:
            journal = Journal.open(self.journal_path, fingerprint, resume=o.resume)
        except JournalError as exc:
            _fail(_journal_problem(exc))
        with journal:
            self.journal = journal
            journal.record_run({"started_at": self.started_at.isoformat(), "resumed": o.resume})
            async with anyio.create_task_group() as watcher:
                watcher.start_soon(self._watch_signals)
                try:
                    code = await self._run_and_report(vendor_adapter, adapter, plan, journal, to_back_up,
                                                      input_sha256, fingerprint)
                finally:
                    watcher.cancel_scope.cancel()
        self.stage = "done"
        return code

    async def _run_and_report(self, vendor_adapter: Adapter, adapter: Adapter, plan: Plan, journal: Journal,
                              to_back_up: bool, input_sha256: str, fingerprint: str) -> int:
        """The backup (if it is not complete yet), then the job, then the report: whatever
        stops them, the report is written."""
        report: Report | None = None
        backup_failure: str | None = None
        with anyio.CancelScope() as self.work:
            if to_back_up and self.backup_path is not None:
                from unenroll.planning.threshold import enough_to_judge

                self.stage = "backup"
                self.threshold_counts = enough_to_judge(plan.per_target, self.settings.change_threshold)
                backup_failure = await self._backup(vendor_adapter, plan.items or [], self.backup_path, journal)
            if backup_failure is None:
                state = journal.backup_state()
                if self.backup_path is not None and (state is None or not state.complete):
                    backup_failure = "the backup is not complete: nothing may be changed before it is"
                elif (refusal := await self._over_threshold(vendor_adapter, plan, journal)) is not None:
                    return self._finish_before_job(refusal, input_sha256, fingerprint, refused=True)
                else:
                    self.stage = "job"
                    report = await self._job(self._reconciled(vendor_adapter, adapter), plan, journal)
        self.stage = "report"
        if self.job is None:  # stopped, or failed, before the job began
            return self._finish_before_job(backup_failure, input_sha256, fingerprint)
        return self._finish(report or self.job.report, input_sha256, fingerprint)

    # -- the change guards ---------------------------------------------------------------

    def _threshold_line(self, vendor_adapter: Adapter, backup_path: Path | None) -> str:
        """The plan's word on the change threshold: where it is judged, and how to raise it."""
        from unenroll.planning.backup import readers_of

        percent = f"{self.settings.change_threshold:g}%"
        reader = readers_of(vendor_adapter).get(self.engine_operation)
        if self.settings.change_threshold >= 100:
            return "change threshold: off (100%)"
        if reader is not None and reader.build_count is not None and (reader.max_subjects is not None
                                                                        or backup_path is None):
            return (f"change threshold: at most {percent} of what each target holds, even with --yes "
                    "(--change-threshold raises it); counted when the run starts, one read call per target")
        if reader is None or reader.max_subjects is not None:
            return (f"change threshold: {percent} of a target, not judged: {self.entry.title}'s read API does not "
                    "count what a target holds")
        if backup_path is None:
            return f"change threshold: {percent} of a target, judged with --backup only (its read counts each target)"
        return (f"change threshold: at most {percent} of what each target holds, counted by the backup's read, "
                "even with --yes (--change-threshold raises it)")

    async def _over_threshold(self, adapter: Adapter, plan: Plan, journal: Journal) -> str | None:
        """Why the job may not start: targets over the change threshold (``None``: within it).
        Counted by the backup's whole-target reads, else one counting read per target where
        the vendor has one; a count that cannot be read refuses the job (never a guess)."""
        from unenroll.planning.backup import BackupError, count_targets, countable
        from unenroll.planning.threshold import judge, read_key

        if self.settings.change_threshold >= 100:
            return None
        listed = dict(journal.backup_listed())
        to_count = [key for key, n in plan.per_target.items()
                    if n and read_key(*key) not in listed and countable(adapter, key[0]) is not None]
        if to_count:
            click.echo(f"counting what {len(to_count):,} target{'s' if len(to_count) != 1 else ''} hold for the "
                       f"change threshold ({len(to_count):,} read call{'s' if len(to_count) != 1 else ''}) ...")
            sys.stdout.flush()
            try:
                counts = await count_targets(adapter, to_count, self.settings.job)
            except BackupError as exc:
                click.echo(f"unenroll: refused: what the targets hold could not be counted ({exc}); nothing was "
                           "changed; to go on without the change threshold, run the same command with --resume "
                           "--change-threshold 100", err=True)
                return f"change threshold: the count could not be read ({exc})"
            listed.update({read_key(*key): (count, True) for key, count in counts.items()})
        breaches = judge(plan.per_target, listed, self.settings.change_threshold)
        if not breaches:
            return None
        percent = f"{self.settings.change_threshold:g}%"
        lines = [f"unenroll: refused: this job would remove more than change_threshold={percent} of what "
                 f"{'a target holds' if len(breaches) == 1 else f'{len(breaches):,} targets hold'}:"]
        lines += [f"  {b.describe()}" for b in breaches[:20]]
        if len(breaches) > 20:
            lines.append(f"  ... and {len(breaches) - 20:,} more")
        lines.append("nothing was changed; if that is meant, raise it for this job: run the same command with "
                     "--resume --change-threshold 100 (or the share you mean)")
        click.echo("\n".join(lines), err=True)
        worst = breaches[0]
        return f"change threshold: {worst.describe()} is more than {percent}"

    # -- the change guard ----------------------------------------------------------------

    def _confirm(self, plan: Plan) -> None:
        limit = self.settings.confirm_above
        if plan.to_send <= limit or self.o.yes:
            return
        lines = [f"This run changes {plan.to_send:,} items on {self.entry.title} (more than confirm_above={limit:,}):"]
        for (operation, target), n in plan.per_target.most_common(50):
            lines.append(f"  {operation} {'/'.join(target)}: {n:,}")
        if len(plan.per_target) > 50:
            lines.append(f"  ... and {len(plan.per_target) - 50:,} more targets")
        if plan.options:
            lines.append("destructive options: " + ", ".join(f"{k}={'ON' if v else 'off'}"
                                                              for k, v in plan.options.items()))
        click.echo("\n".join(lines), err=True)
        if not sys.stdin.isatty():
            _fail(f"not confirmed: {plan.to_send:,} items is more than confirm_above={limit:,} and there is no "
                  "terminal to ask; pass --yes to confirm (nothing was sent)")
        try:
            confirmed = click.confirm("Go ahead?", default=False, err=True)
        except click.Abort:  # Ctrl-C or end of input at the prompt
            confirmed = False
        if not confirmed:
            _fail("not confirmed: nothing was sent")

    # -- signals -------------------------------------------------------------------------

    async def _watch_signals(self) -> None:
        """In place from the journal's opening until the report is written (see the class)."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for received in signals:
                self.signals_seen += 1
                if self.stage == "report" and self.signals_seen < 3:
                    click.echo("\nunenroll: the job is over; writing its report (a third Ctrl-C quits without it)",
                               err=True)
                elif self.signals_seen == 1:
                    self.signal_received = int(received)
                    click.echo("\nunenroll: stopping: calls in flight finish, the rest is recorded as not sent "
                               "(press Ctrl-C again to abandon the calls in flight)", err=True)
                    if self.work is not None:
                        self.work.cancel()
                elif self.signals_seen == 2:
                    click.echo("unenroll: abandoning the calls in flight: their items end not_sent and --resume "
                               "sends them again; writing the report", err=True)
                    await self._abandon_calls()
                else:
                    click.echo(f"unenroll: quitting at once: NO report was written; the journal {self.journal_path} "
                               "has what was done: run the same command with --resume", err=True)
                    os._exit(EXIT_SIGNAL.get(signal.Signals(received), 130))

    async def _abandon_calls(self) -> None:
        """Close every connection: a call in flight ends at once as a transport failure
        (never as an answer), and no new one can start."""
        connector = getattr(self.session, "connector", None)
        if connector is not None:
            with anyio.CancelScope(shield=True):
                await connector.close(abort_ssl=True)

    # -- backup --------------------------------------------------------------------------

    async def _backup(self, adapter: Adapter, items: list[Item], path: Path, journal: Journal) -> str | None:
        """Run (or go on with) the job's backup; why it failed, if it did."""
        from unenroll.accounts.ledger import EndpointStats
        from unenroll.observe.progress import Progress, observe
        from unenroll.planning.backup import BackupError, plan_backup, readers_of, run_backup

        click.echo(f"backing up {len(items):,} enrolments to {path} ...")
        sys.stdout.flush()
        targets: Counter[tuple[str, tuple[str, ...]]] = Counter()
        for item in {(i.operation, i.target, i.subject): i for i in items}.values():
            targets[(item.operation, item.target)] += 1
        read_endpoints = {reader.endpoint for reader in readers_of(adapter).values()}
        specs = {name: spec for name, spec in adapter.endpoints.items() if name in read_endpoints}
        limiters = observe(specs)
        stats = {name: EndpointStats() for name in specs}
        try:
            planned = plan_backup(adapter, dict(targets)).calls
        except BackupError:
            planned = {}
        progress = Progress(sum(targets.values()), planned, specs, limiters)
        progress.calls_of = lambda: {name: s.calls for name, s in stats.items()}
        try:
            async with self._showing(progress, "backup", "backup.progress"):
                result = await run_backup(adapter, items, path, retry=self.settings.job.retry,
                                          max_throttles=self.settings.job.max_throttles, seed=self.settings.job.seed,
                                          journal=journal, max_pause=self.settings.job.max_pause,
                                          enough=self.threshold_counts, limiters=dict(limiters), stats=stats,
                                          on_records=lambda records, found: progress.set_ended(records, found))
        except BackupError as exc:
            self._forget_fresh_journal(journal)
            return scrub(str(exc))
        except anyio.get_cancelled_exc_class():
            self._forget_fresh_journal(journal)
            raise
        kept = f", {result.kept:,} of them read by an earlier run" if result.kept else ""
        click.echo(f"backup: {result.records:,} records ({result.found:,} enrolments found{kept}) in {result.path}, "
                   f"{result.calls:,} calls")
        return None

    def _forget_fresh_journal(self, journal: Journal) -> None:
        """A fresh job whose backup read nothing leaves no journal behind (a rerun must not
        need --resume); once a page is on disk, the journal keeps it for --resume."""
        state = journal.backup_state()
        if not self.o.resume and (state is None or state.offset == 0):
            journal.close()
            self.journal_forgotten = True
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.journal_path) + suffix).unlink(missing_ok=True)

    def _reconciled(self, vendor_adapter: Adapter, adapter: Adapter) -> Adapter:
        """``adapter`` whose refusals the backup's read settles end as the read says
        (``backup.reconcile_refusals``); as it is without a backup file."""
        from unenroll.planning.backup import reconcile_refusals, settled_by_backup

        if self.backup_path is None or not self.backup_path.exists():
            return adapter
        try:
            settled = settled_by_backup(vendor_adapter, self.backup_path)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # the file was edited since: read nothing from it
            click.echo(f"unenroll: warning: the backup {self.backup_path} cannot be read back ({exc}); refusals are "
                       "not checked against it", err=True)
            return adapter
        if not settled:
            return adapter
        return _OperationsView(adapter, list(adapter.operations),
                               {name: reconcile_refusals(op, settled) for name, op in adapter.operations.items()})

    # -- learned limits ------------------------------------------------------------------

    def _learned_key(self, endpoint: str) -> Any:
        from unenroll.cli.quota import tenant_of
        from unenroll.limits.quota import QuotaKey

        base_url = self.settings.connection.base_url or self.entry.default_base_url or ""
        return QuotaKey(self.o.vendor, tenant_of(base_url), endpoint)

    async def _recall_learned(self, adapter: Adapter) -> dict[str, Any]:
        """The limits earlier runs learned for this tenant's undocumented endpoints."""
        from unenroll.limits.learned import LearnedWindowLimiter, WindowEstimate

        learned: dict[str, Any] = {}
        if self.quota_store is None:
            return learned
        for name, spec in adapter.endpoints.items():
            if spec.max_calls is not None or spec.limiter_factory is None:
                continue
            if not isinstance(spec.make_limiter(), LearnedWindowLimiter):
                continue
            try:
                fact = await self.quota_store.recall(self._learned_key(name), LEARNED_LIMIT)
            except Exception:  # an unreadable store: learn again
                fact = None
            if fact is not None and (estimate := WindowEstimate.from_fact(fact)) is not None:
                learned[name] = estimate
        return learned

    async def _remember_learned(self, limiters: Mapping[str, Any]) -> None:
        """Keep what this run learned, so the next run (or another process) starts at it."""
        from unenroll.limits.learned import LearnedWindowLimiter

        for name, observed in limiters.items():
            inner = _innermost(observed)
            if not isinstance(inner, LearnedWindowLimiter) or inner.estimate is None:
                continue
            estimate = inner.estimate
            self.learned_now[name] = estimate.describe(self.settings.connection.time_scale)
            if self.quota_store is None:
                continue
            with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                try:
                    await self.quota_store.remember(self._learned_key(name), LEARNED_LIMIT, estimate.as_fact())
                except Exception:
                    continue
                click.echo(f"limit of {name}: {estimate.describe(self.settings.connection.time_scale)} "
                           "(kept for the next run against this tenant)")

    # -- the job -------------------------------------------------------------------------

    async def _job(self, adapter: Adapter, plan: Plan, journal: Journal) -> Report:
        from unenroll.job.pipeline import Job
        from unenroll.limits.learned import LearnedWindowLimiter
        from unenroll.observe.progress import DailyBudget, Progress, observe

        specs = {name: adapter.endpoints[name] for name in plan.calls}
        limiters = observe(specs)
        for name, observed in limiters.items():  # start at what earlier runs learned: no probing again
            inner = _innermost(observed)
            if isinstance(inner, LearnedWindowLimiter) and name in self.learned:
                inner.adopt(self.learned[name])
        daily = None
        if plan.daily_calls is not None:
            daily = DailyBudget(plan.daily_calls, plan.day,
                                frozenset(name for name, spec in specs.items() if spec.in_daily_budget))
        progress = Progress(plan.rows, plan.calls, specs, limiters, daily=daily)
        # each outcome goes to the journal as it happens; the results file is written from it
        # at the end, in input order (``_write_row_files``)
        job = self.job = Job(adapter, self.input_file.items(), settings=self.settings.job,
                             sinks=[progress], limiters=dict(limiters), journal=journal)
        progress.report = job.report
        click.echo(f"sending: {plan.to_send:,} items to {self.entry.title} (journal: {self.journal_path}; the "
                   f"results file is written when the run ends: {self.results})")
        sys.stdout.flush()
        async with self._showing(progress, "sending", "run.progress"):
            try:
                report = await job.run()
            finally:
                await self._remember_learned(limiters)
        return report

    @asynccontextmanager
    async def _showing(self, progress: Any, title: str, event: str) -> AsyncIterator[None]:
        """``progress`` shown while the body runs: a live display on a terminal (logs print
        above it), ``event`` log lines (JSON) otherwise; and what other runs spend of the quota."""
        from unenroll.observe.progress import LiveDisplay, LogProgress, QuotaWatch

        renderer: LiveDisplay | LogProgress
        if sys.stderr.isatty() and not self.o.json_logs:
            renderer = LiveDisplay(progress, title)
            configure_logging(json=False, level="debug" if self.o.verbose else "warning",
                              stream=cast(TextIO, renderer.log_stream()))
        else:
            renderer = LogProgress(progress, self.log, event=event)
        async with anyio.create_task_group() as tg:
            tg.start_soon(renderer.run)
            if self.quota_limiters:
                tg.start_soon(QuotaWatch(progress, self.quota_limiters).run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    # -- the end -------------------------------------------------------------------------

    def _sent_this_run(self) -> tuple[int, int]:
        """(items, calls) this run sent (an item sent twice counts once)."""
        journal = self.journal
        if journal is None or self.journal_forgotten:
            return 0, 0
        return journal.items_sent_this_run, journal.calls_this_run

    def _exit_code(self, report: Report | None) -> int:
        if self.signal_received is not None:
            return EXIT_SIGNAL.get(signal.Signals(self.signal_received), 130)
        if report is None:
            return EXIT_FATAL
        if report.stopped:
            nothing_sent = self._sent_this_run()[1] == 0 and report.calls == 0
            if report.stopped.startswith("the input failed"):
                return EXIT_USAGE if nothing_sent else EXIT_SOME_FAILED  # 2 promises that nothing was sent
            if report.stopped.startswith("auth:") and nothing_sent:
                return EXIT_USAGE  # the credentials were refused before anything was sent
            return EXIT_FATAL
        if any(report.counts.get(k) for k in ("failed", "gave_up", "not_sent", "rejected")) or \
                not report.input_complete:
            return EXIT_SOME_FAILED  # rejected rows too: a script must not read them as success
        return EXIT_OK

    def _across_runs(self, code: int) -> dict[str, Any]:
        """The report's fields that span runs (from the journal), and this run's entry in it."""
        journal = self.journal
        items, calls = self._sent_this_run()
        fields: dict[str, Any] = {
            "started_at": self.started_at.isoformat(),
            "this_run_started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "sent_this_run": {"items": items, "calls": calls},
            "backup": None if self.backup_path is None else str(self.backup_path),
            "totals": {"runs": 1, "calls": calls, "backup_calls": 0},
        }
        breaker = self.settings.job.breaker
        fields["breaker"] = breaker.describe() if breaker is not None else None
        if self.learned_now:  # the limits learned (or recalled) for undocumented endpoints, and where from
            fields["learned_limits"] = self.learned_now
        if journal is None or self.journal_forgotten:
            return fields
        state = journal.backup_state()
        journal.record_run({"started_at": self.started_at.isoformat(), "resumed": self.o.resume,
                            "finished_at": fields["finished_at"], "exit_code": code, "calls": calls,
                            "items_sent": items}, replace_last=True)
        runs = journal.runs()
        fields["started_at"] = str(runs[0].get("started_at") or journal.started_at) if runs else fields["started_at"]
        fields["totals"] = {"runs": len(journal.runs()), "calls": journal.calls_total,
                            "backup_calls": state.calls if state is not None else 0}
        if state is not None:
            fields["backup"] = state.path
            fields["backup_complete"] = state.complete
            fields["backup_records"] = state.records if state.complete else None
            fields["backup_sha256"] = state.sha256
        return fields

    def _write_row_files(self) -> RowFiles | None:
        """The results and errors files, in input order, from the journal (``accounts/row_files.py``);
        ``None`` (said on stderr) if they cannot be written: the journal keeps every outcome."""
        from unenroll.accounts.row_files import write_row_files
        from unenroll.inputs.files import InputError

        if self.journal is None or self.journal_forgotten:
            return None
        try:
            files = write_row_files(self.input_file, self.journal.outcomes_by_row(), self.results)
            for note in files.notes:
                click.echo(f"unenroll: warning: {scrub(note)}", err=True)
            return files
        except (OSError, InputError, ValueError) as exc:
            click.echo(f"unenroll: the results file could not be written ({scrub(str(exc))}); the journal "
                       f"{self.journal_path} keeps every outcome: run the same command with --resume to write it",
                       err=True)
            return None

    def _write_report(self, record: dict[str, Any]) -> None:
        tmp = self.report_path.with_name(self.report_path.name + ".tmp")
        tmp.write_text(scrub(json.dumps(record, indent=2)) + "\n", encoding="utf-8")
        tmp.replace(self.report_path)
        self.exit_code = record["exit_code"]
        self.log.info("run.finished", **{k: v for k, v in record.items() if k != "endpoints"})

    def _finish_before_job(self, backup_failure: str | None, input_sha256: str, fingerprint: str,
                           refused: bool = False) -> int:
        """The backup failed or was stopped, or the change threshold refused the job: nothing
        was changed. The report says so."""
        code = self._exit_code(None)  # the signal's code, or 3: the backup failed
        if refused:
            stopped = f"refused by the {backup_failure}"
            code = EXIT_USAGE
        elif backup_failure is not None and self.signal_received is None:
            stopped = f"backup failed: {backup_failure}"
            click.echo(f"unenroll: backup failed, nothing was changed: {backup_failure}", err=True)
        else:
            stopped = "stopped during the backup"
            click.echo("unenroll: stopped during the backup: nothing was changed", err=True)
        if refused:
            steps = ["if removing that much is meant, run the same command with --resume --change-threshold and "
                     "the share you mean (100 turns the guard off); otherwise check the input's targets"]
        elif self.journal_forgotten:
            steps = ["fix what the backup's failure names, then run the same command again"]
        else:
            first = "fix what the failure names, then " if stopped.startswith("backup failed") else ""
            steps = [f"{first}run the same command with --resume: the backup goes on where it stopped (journal: "
                     f"{self.journal_path})"]
        record = {"vendor": self.o.vendor, "total": 0, "counts": {}, "calls": 0, "stopped": stopped,
                  "operation": self.operation_name, "input": str(self.o.input_path), "input_sha256": input_sha256,
                  "journal": None if self.journal_forgotten else str(self.journal_path),
                  "job_fingerprint": fingerprint, "resumed": self.o.resume, **self._across_runs(code),
                  "exit_code": code, "next": steps}
        self._write_report(record)
        for i, step in enumerate(steps):
            click.echo(f"{'next:' if i == 0 else '':<6}{step}")
        click.echo(f"report: {self.report_path}")
        return code

    def _finish(self, report: Report, input_sha256: str, fingerprint: str) -> int:
        from unenroll.cli.closing import Closing, Problem, next_steps
        from unenroll.cli.quota import tenant_of

        code = self._exit_code(report)
        files = self._write_row_files()
        record = {
            **report.as_dict(),
            "operation": self.operation_name,
            "input": str(self.o.input_path),
            "input_sha256": input_sha256,
            "journal": str(self.journal_path),
            "job_fingerprint": fingerprint,
            "resumed": self.o.resume,
            "results": str(self.results) if files is not None else None,
            "errors": str(files.errors) if files is not None and files.errors_rows else None,
            "errors_rows": files.errors_rows if files is not None else None,
            "rows": dict(files.counts) if files is not None else None,
            **self._across_runs(code),
            "exit_code": code,
        }
        counts = dict(files.counts) if files is not None else dict(report.counts)
        problems = sorted((Problem(outcome, c, n, message) for (outcome, c), (n, message)
                           in (files.problems.items() if files is not None else [])), key=lambda p: -p.rows)
        rows = sum(counts.values())
        errors = record["errors"]
        steps = next_steps(counts, problems, rows=rows, errors=errors, stopped=report.stopped,
                           interrupted=code in EXIT_SIGNAL.values())
        record["next"] = steps
        self._write_report(record)
        click.echo(report.summary())
        items, calls = self._sent_this_run()
        click.echo(f"this run sent {items:,} items in {calls:,} calls")
        if report.stopped and report.stopped.startswith("circuit breaker:"):
            click.echo(f"unenroll: stopped by the {scrub(report.stopped)}: fix that, then run the same command with "
                       "--resume", err=True)
        if report.stopped and report.stopped.startswith("the input failed") and calls:
            click.echo(f"unenroll: {scrub(report.stopped)}; {items:,} items had been sent in {calls:,} calls: each "
                       f"one's outcome is in {self.results}", err=True)
        base_url = self.settings.connection.base_url or self.entry.default_base_url or ""
        closing = Closing(
            input=str(self.o.input_path), input_sha256=input_sha256, vendor=self.entry.title,
            tenant=tenant_of(base_url), operation=self.operation_name, started_at=record["started_at"],
            finished_at=record["finished_at"], runs=record["totals"]["runs"],
            calls=record["totals"]["calls"] + record["totals"]["backup_calls"], rows=rows, counts=counts,
            results=str(self.results) if files is not None else f"not written (the journal {self.journal_path} "
                                                                 "has every outcome)",
            report=str(self.report_path), errors=errors, errors_rows=files.errors_rows if files is not None else 0,
            backup=record.get("backup"), backup_records=record.get("backup_records"), next=steps)
        click.echo(scrub("\n".join(closing.lines())))
        return code


def _journal_problem(exc: Exception) -> str:
    message = str(exc)
    if "belongs to another job" in message:
        message += ("; for the command line a job is its input file's bytes, the vendor, the operation, the column "
                    "mapping, the destructive options and the base URL: resume with the same ones")
    return message


class _OperationsView:
    """An adapter seen through the operations a job uses (``replaced``: some of them
    replaced): the engine then plans, runs and reports only their endpoints. Everything
    else is the adapter's own."""

    def __init__(self, adapter: Adapter, operations: Sequence[str],
                 replaced: Mapping[str, Operation] | None = None) -> None:
        self.vendor = adapter.vendor
        self.operations = {name: (replaced or {}).get(name) or adapter.operations[name] for name in operations}
        used = {op.endpoint for op in self.operations.values()}
        self.endpoints = {name: spec for name, spec in adapter.endpoints.items() if name in used}
        self.transport = adapter.transport
        self.auth = adapter.auth


class _EndpointsView:
    """An adapter whose endpoints' specs are replaced (their limiters shared through the quota);
    everything else is the adapter's own, readers included."""

    def __init__(self, adapter: Adapter, endpoints: Mapping[str, EndpointSpec]) -> None:
        self._adapter = adapter
        self.vendor = adapter.vendor
        self.operations = adapter.operations
        self.endpoints = endpoints
        self.transport = adapter.transport
        self.auth = adapter.auth

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


# -- mock serve ----------------------------------------------------------------------------


@main.group()
def mock() -> None:
    """Mock vendor servers to rehearse against (a sandbox on this machine)."""


def _add_sandbox_commands() -> None:
    from unenroll.cli.sandbox import demo, mock_serve

    mock.add_command(mock_serve)
    main.add_command(demo)


_add_sandbox_commands()


if __name__ == "__main__":
    main(prog_name="unenroll")


LEARNED_LIMIT = "learned_limit"  # the name a learned limit is kept under in the quota store


def _innermost(limiter: Any) -> Any:
    """The limiter inside the wrappers (watching, budget) that hold one as ``inner``."""
    while hasattr(limiter, "inner"):
        limiter = limiter.inner
    return limiter
