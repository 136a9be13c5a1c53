"""The closing summary: the facts a ticket needs, and next steps an admin can act on."""

from __future__ import annotations

from unenroll.cli.closing import Closing, Problem, next_steps


def steps(counts: dict[str, int], problems: list[Problem] | None = None, *, stopped: str | None = None,
          interrupted: bool = False, errors: str | None = "in.results.errors.csv") -> list[str]:
    return next_steps(counts, problems or [], rows=sum(counts.values()), errors=errors, stopped=stopped,
                      interrupted=interrupted)


def test_nothing_left_to_do_is_said_once() -> None:
    assert steps({"unenrolled": 5, "not_enrolled": 2, "duplicate": 1}) == [
        "nothing: every row reached the wanted state"]


def test_rows_given_up_or_not_sent_are_resumed() -> None:
    said = steps({"unenrolled": 1398, "gave_up": 602})
    assert said == ["602 rows gave up after every retry (the vendor kept failing or throttling): run the same "
                    "command with --resume later; only those rows are sent again"]
    said = steps({"unenrolled": 10, "not_sent": 90}, interrupted=True)
    assert said == ["90 rows not sent yet: run the same command with --resume"]


def test_every_row_failing_one_way_points_at_a_shared_cause() -> None:
    (said,) = steps({"failed": 2000}, [Problem("failed", "404", 2000, "Course or batch not found")])
    assert said.startswith("all 2,000 rows failed with 404 (Course or batch not found): the cause is shared")
    assert "batch" in said and "in.results.errors.csv" in said


def test_failures_and_rejections_point_at_the_errors_file_most_common_first() -> None:
    problems = [Problem("failed", "404", 7, "not found"), Problem("failed", "403", 2, "no permission"),
                Problem("rejected", "invalid", 3, "'12a' is not a Zoho id")]
    said = steps({"unenrolled": 88, "failed": 9, "rejected": 3}, problems)
    assert said == [
        "7 rows failed with 404 (not found): fix them in in.results.errors.csv and run that file as the input",
        "2 rows failed with 403 (no permission): fix them in in.results.errors.csv and run that file as the input",
        "3 rows rejected before sending (e.g. '12a' is not a Zoho id): fix them in in.results.errors.csv and run "
        "that file as the input"]


def test_a_stop_comes_first_and_then_what_it_left() -> None:
    said = steps({"failed": 200, "not_sent": 1800}, [Problem("failed", "403", 200, "forbidden")],
                 stopped="circuit breaker: the first 200 items all failed with 403")
    assert said[0].startswith("the job stopped (circuit breaker: the first 200 items all failed with 403): fix that "
                              "first, then run the same command with --resume")
    assert said[1] == "1,800 rows not sent yet: run the same command with --resume"


def test_the_summary_names_what_a_ticket_needs() -> None:
    closing = Closing(input="learners.csv", input_sha256="ab" * 32, vendor="Zoho People LMS",
                      tenant="https://people.zoho.com", operation="unenroll",
                      started_at="2026-12-04T01:00:00+00:00", finished_at="2026-12-04T03:30:00+00:00", runs=2,
                      calls=41, rows=2000, counts={"unenrolled": 1990, "failed": 10}, results="l.results.csv",
                      report="l.results.csv.report.json", errors="l.results.errors.csv", errors_rows=10,
                      backup="before.jsonl", backup_records=2400, next=["10 rows failed ...", "second"])
    text = "\n".join(closing.lines())
    for fact in ("learners.csv (sha256 abababababababab…, 2,000 rows)", "Zoho People LMS, https://people.zoho.com",
                 "2026-12-04 01:00:00 UTC to 2026-12-04 03:30:00 UTC (2 runs)", "1,990 unenrolled, 10 failed",
                 "41 in all", "l.results.csv", "l.results.errors.csv (10 rows to fix or resend)",
                 "before.jsonl (2,400 records)", "l.results.csv.report.json", "next       10 rows failed ..."):
        assert fact in text, (fact, text)
    assert text.splitlines()[-1].strip() == "second"
