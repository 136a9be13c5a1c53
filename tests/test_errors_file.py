"""The errors file: just the rows that need attention, with the admin's own columns and
why, readable as an input file as it is: fix it, run it, done."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.test_cli_run import MockProcess, read_results, run_cli, zoho_env
from unenroll.accounts.row_files import ERRORS_COLUMNS as EXTRA_COLUMNS


def test_the_errors_file_holds_the_rows_to_fix_and_runs_as_an_input_once_fixed(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "6")
    try:
        (batch_key, learners), = mock.stats()["state"]["batches"].items()
        course, batch = batch_key.split("/")
        good, typo = sorted(learners)[:4], sorted(learners)[4:]
        source = tmp_path / "export.csv"
        lines = ["Name,Email,Course ID,Batch ID,Employee ID"]
        lines += [f"Learner {e},{e}@example.com,{course},{batch},{e}" for e in good]
        lines += [f"Typo {e},{e}@example.com,{course},5000000000999,{e}" for e in typo]  # no such batch
        lines += [f"=cmd|' /C calc'!A0,evil@example.com,{course},{batch},abc"]
        source.write_text("\n".join(lines) + "\n")
        env = zoho_env(mock.url, XDG_STATE_HOME=str(tmp_path / "state"))
        done = run_cli(["run", "zoho", str(source), "--yes"], env, tmp_path)
        assert done.returncode == 1, done.stdout + done.stderr
        errors = tmp_path / "export.results.errors.csv"
        assert f"errors     {errors} (3 rows to fix or resend)" in done.stdout, done.stdout
        assert f"fix them in {errors} and run that file as the input" in done.stdout, done.stdout
        with errors.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["Name", "Email", "Course ID", "Batch ID", "Employee ID", *EXTRA_COLUMNS]
        assert [r[0] for r in rows[1:]] == [f"Typo {e}" for e in typo] + ["'=cmd|' /C calc'!A0"]  # input order, safe
        assert [r[5] for r in rows[1:]] == ["failed", "failed", "rejected"]
        assert "not found" in rows[1][7].lower() and "abc" in rows[3][7]

        # the admin fixes the batch id, drops the row that is not a learner, and runs the file as it is
        fixed = [rows[0], *[[*r[:3], batch, *r[4:]] for r in rows[1:3]]]
        with errors.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(fixed)
        again = run_cli(["run", "zoho", str(errors), "--yes"], env, tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert {r["outcome"] for r in read_results(tmp_path / "export.results.errors.results.csv")} == {"unenrolled"}
        assert not (tmp_path / "export.results.errors.results.errors.csv").exists()  # nothing left to fix
        assert not any(mock.stats()["state"]["batches"].values())
    finally:
        assert mock.stop() == 0
