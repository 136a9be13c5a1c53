"""The results and errors files at the end of a run: time, and memory as the input grows.

For each size: an input CSV of N rows (a few own columns), a journal holding N outcomes
recorded in a shuffled completion order (1 in 50 failed), then the one pass that writes
the results file in input order and the errors file (``accounts/row_files.py``). The
memory column is the Python heap's peak during that pass (tracemalloc), which should not
grow with N: the input and the journal are both streamed.

    .venv/bin/python -m benchmarks.row_files [--sizes 10000,100000,1000000] [--format csv|xlsx]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from unenroll.accounts.journal import Journal
from unenroll.accounts.row_files import write_row_files
from unenroll.inputs.files import InputFile
from unenroll.inputs.shapes import Column, RowShape
from unenroll.model import Item, ItemOutcome, Outcome

SHAPE = RowShape("unenroll", (Column("course_id"), Column("user_id")), lambda v: ((v["course_id"],), v["user_id"]))


def measure(rows: int, fmt: str, folder: Path) -> tuple[float, float, float, int]:
    """(seconds to record, seconds to write, peak heap MB while writing, error rows): the
    writing is timed in one pass and its heap traced in a second (tracing slows it)."""
    source = folder / f"in{rows}.csv"
    with source.open("w", encoding="utf-8") as f:
        f.write("Name,Email,course_id,user_id\n")
        for n in range(rows):
            f.write(f"Learner {n},l{n}@example.com,c{n % 20},{1000 + n}\n")
    order = list(range(rows))
    random.Random(7).shuffle(order)  # completion order
    started = time.perf_counter()
    journal = Journal.open(folder / f"j{rows}", "bench")
    for index in order:
        failed = index % 50 == 0
        item = Item("unenroll", (f"c{index % 20}",), str(1000 + index), {"row": index + 2})
        journal(ItemOutcome(index, item, Outcome.FAILED if failed else Outcome.UNENROLLED,
                            "404" if failed else "200", "not found" if failed else None, 1))
    journal.flush()
    recorded = time.perf_counter() - started
    results = folder / f"in{rows}.results.{fmt}"
    started = time.perf_counter()
    files = write_row_files(InputFile(source, SHAPE), journal.outcomes_by_row(), results)
    written = time.perf_counter() - started
    tracemalloc.start()
    write_row_files(InputFile(source, SHAPE), journal.outcomes_by_row(), results)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    journal.close()
    assert sum(files.counts.values()) == rows
    return recorded, written, peak / 1e6, files.errors_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--format", choices=["csv", "jsonl", "xlsx"], default="csv")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"| rows | journal recorded in | {args.format} results + errors written in | rows/s | "
          "peak heap while writing | error rows |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="unenroll-rowfiles-") as tmp:
        for rows in sizes:
            recorded, written, peak_mb, errors = measure(rows, args.format, Path(tmp))
            print(f"| {rows:,} | {recorded:.1f} s | {written:.1f} s | {rows / written:,.0f} | {peak_mb:.1f} MB | "
                  f"{errors:,} |", flush=True)


if __name__ == "__main__":
    main()
