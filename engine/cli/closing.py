"""The closing summary of ``unenroll run``: ticket-ready facts, then what to do next.

Pure text from what the run wrote (the report's fields and the row files' counts), so it
says the same after a resume as an uninterrupted run would: the job's first start, every
run's calls, the backup the journal recorded. :func:`next_steps` turns the outcomes into
advice an admin can act on; each rule is pinned by a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from unenroll.observe.secrets import scrub

OUTCOME_ORDER = ("unenrolled", "shared", "queued", "not_enrolled", "duplicate", "rejected", "failed", "gave_up",
                 "not_sent")
RESUME = "run the same command with --resume"


@dataclass(frozen=True)
class Problem:
    """Rows that ended one way with one code: how many, and one of their messages."""

    outcome: str
    code: str
    rows: int
    message: str


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def next_steps(counts: Mapping[str, int], problems: list[Problem], *, rows: int, errors: str | None,
               stopped: str | None, interrupted: bool) -> list[str]:
    """What the admin does next, most urgent first; one line when nothing is left to do.

    - rows not sent or given up: ``--resume`` sends exactly those again (confirmed rows never);
    - failed or rejected rows: fix them in the errors file and run it as the input; when every
      row failed with one code, the cause is shared (a wrong target id, a missing permission)
      and the line says so;
    - a stop (fatal answer, circuit breaker): fix its cause first.
    """
    steps: list[str] = []
    if stopped and not interrupted:
        steps.append(f"the job stopped ({scrub(stopped)}): fix that first, then {RESUME}")
    left = counts.get("not_sent", 0)
    gave_up = counts.get("gave_up", 0)
    if interrupted or left:
        steps.append(f"{plural(left, 'row')} not sent yet: {RESUME}")
    if gave_up:
        steps.append(f"{plural(gave_up, 'row')} gave up after every retry (the vendor kept failing or throttling): "
                     f"{RESUME} later; only those rows are sent again")
    fix_in = f"fix them in {errors} and run that file as the input" if errors else "fix them and run them again"
    failed = [p for p in problems if p.outcome == "failed"]
    failed_rows = counts.get("failed", 0)
    if failed_rows and rows and len(failed) == 1 and failed_rows == rows:
        p = failed[0]
        steps.append(f"all {plural(rows, 'row')} failed with {p.code} ({p.message}): the cause is shared, e.g. a "
                     f"wrong course, batch or group id or a missing permission; check what it names, then {fix_in}")
    else:
        for p in failed[:3]:
            steps.append(f"{plural(p.rows, 'row')} failed with {p.code} ({p.message}): {fix_in}")
        if len(failed) > 3:
            rest = sum(p.rows for p in failed[3:])
            steps.append(f"{plural(rest, 'more row')} failed with other codes: see {errors or 'the results file'}")
    rejected = counts.get("rejected", 0)
    if rejected:
        example = next((p.message for p in problems if p.outcome == "rejected" and p.message), "")
        steps.append(f"{plural(rejected, 'row')} rejected before sending{f' (e.g. {example})' if example else ''}: "
                     f"{fix_in}")
    if not steps:
        steps.append("nothing: every row reached the wanted state")
    return steps


@dataclass
class Closing:
    """The facts a ticket needs about a job, across all its runs."""

    input: str
    input_sha256: str
    vendor: str
    tenant: str
    operation: str
    started_at: str
    finished_at: str
    runs: int
    calls: int
    rows: int
    counts: Mapping[str, int]
    results: str
    report: str
    errors: str | None = None
    errors_rows: int = 0
    backup: str | None = None
    backup_records: int | None = None
    next: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        shown = [f"{n:,} {k.replace('_', ' ')}" for k in OUTCOME_ORDER if (n := self.counts.get(k))]
        shown += [f"{n:,} {k}" for k, n in self.counts.items() if k not in OUTCOME_ORDER and n]
        lines = [
            "summary",
            f"  input      {self.input} (sha256 {self.input_sha256[:16]}…, {plural(self.rows, 'row')})",
            f"  vendor     {self.vendor}, {self.tenant}, {self.operation}",
            f"  when       {_when(self.started_at)} to {_when(self.finished_at)}"
            + (f" ({self.runs:,} runs)" if self.runs > 1 else ""),
            f"  outcomes   {', '.join(shown) if shown else 'none'}",
            f"  calls      {self.calls:,} in all",
            f"  results    {self.results}",
        ]
        if self.errors:
            lines.append(f"  errors     {self.errors} ({plural(self.errors_rows, 'row')} to fix or resend)")
        if self.backup:
            records = f" ({self.backup_records:,} records)" if self.backup_records is not None else ""
            lines.append(f"  backup     {self.backup}{records}")
        lines.append(f"  report     {self.report}")
        for i, step in enumerate(self.next):
            lines.append(f"  {'next' if i == 0 else '':<10} {step}")
        return lines


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return iso
