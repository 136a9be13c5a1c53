"""The change threshold: a job that would remove more than a share of what a target holds
is refused, even with --yes, unless the share is raised; what a target holds is counted by
the backup's whole-target read, which reads on only as far as the judgement needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli_run import MockProcess, clean_env, run_cli, zoho_env
from unenroll.planning.threshold import MIN_ENROLMENTS_JUDGED, Breach, enough_to_judge, judge, read_key

T1, T2, T3 = ("c", "b1"), ("c", "b2"), ("c", "b3")


def test_a_target_is_over_only_when_its_whole_count_says_so() -> None:
    planned = {("unenroll", T1): 6, ("unenroll", T2): 6, ("unenroll", T3): 3}
    need = enough_to_judge(planned, 50.0)
    assert need == {read_key("unenroll", T1): 12, read_key("unenroll", T2): 12,
                    read_key("unenroll", T3): MIN_ENROLMENTS_JUDGED}
    listed = {read_key("unenroll", T1): (11, True),  # 6 of 11: over
              read_key("unenroll", T2): (25, False),  # read stopped early, already big enough: within
              read_key("unenroll", T3): (4, True)}  # 3 of 4: a small target, not judged
    assert judge(planned, listed, 50.0) == [Breach("unenroll", T1, 6, 11)]
    assert judge(planned, listed, 60.0) == []  # raised: 6 of 11 is 55%


def test_a_count_that_stopped_short_is_not_taken_as_small_or_large() -> None:
    planned = {("unenroll", T1): 8}
    (breach,) = judge(planned, {read_key("unenroll", T1): (12, False)}, 50.0)
    assert breach.enrolled is None and "did not count" in breach.describe()
    assert judge(planned, {}, 50.0) == []  # no whole-target read: not judged (the plan says so)


def zoho_file(tmp_path: Path, mock: MockProcess, how_many: int) -> tuple[Path, str, list[str]]:
    (batch_key, learners), = mock.stats()["state"]["batches"].items()
    course, batch = batch_key.split("/")
    chosen = sorted(learners)[:how_many]
    source = tmp_path / f"remove{how_many}.csv"
    source.write_text("course_id,batch_id,erecno\n" + "".join(f"{course},{batch},{e}\n" for e in chosen))
    return source, batch_key, chosen


def test_removing_most_of_a_batch_is_refused_even_with_yes_until_the_share_is_raised(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "30")
    try:
        env = zoho_env(mock.url, XDG_STATE_HOME=str(tmp_path / "state"))
        source, batch_key, chosen = zoho_file(tmp_path, mock, 20)  # 20 of 30: 67%
        args = ["run", "zoho", str(source), "--yes", "--backup", "before.jsonl"]
        dry = run_cli([*args, "--dry-run"], env, tmp_path)
        assert "change threshold: at most 50% of what each target holds" in dry.stdout, dry.stdout
        refused = run_cli(args, env, tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"unenroll {batch_key}: 20 of its 30 enrolments (67%)" in refused.stderr, refused.stderr
        assert "--change-threshold" in refused.stderr and "Traceback" not in refused.stderr
        assert len(mock.stats()["state"]["batches"][batch_key]) == 30  # nothing was changed
        report = json.loads((tmp_path / "remove20.results.csv.report.json").read_text())
        assert report["exit_code"] == 2 and report["stopped"].startswith("refused by the change threshold")
        assert "--resume --change-threshold" in report["next"][0] and "next: " in refused.stdout

        raised = run_cli([*args, "--resume", "--change-threshold", "70"], env, tmp_path)
        assert raised.returncode == 0, raised.stdout + raised.stderr
        assert "completed by an earlier run" in raised.stdout  # the backup was not read again
        assert set(mock.stats()["state"]["batches"][batch_key]).isdisjoint(chosen)
    finally:
        assert mock.stop() == 0


@pytest.mark.parametrize(("remove", "pages"), [(3, 1), (20, 2)])
def test_a_small_share_of_a_large_batch_goes_ahead_and_the_read_stops_when_it_knows_enough(
        tmp_path: Path, remove: int, pages: int) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "60")
    try:
        env = zoho_env(mock.url, XDG_STATE_HOME=str(tmp_path / "state"))
        source, batch_key, _ = zoho_file(tmp_path, mock, remove)  # the first page of 25 lists them all
        done = run_cli(["run", "zoho", str(source), "--yes", "--backup", "before.jsonl"], env, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        # 3 to remove needs a batch of 10: the first page (25) shows it; 20 needs 40: a second page (50)
        assert mock.stats(state=False)["endpoints"]["read_learners"]["calls"] == pages
        assert len(mock.stats()["state"]["batches"][batch_key]) == 60 - remove
    finally:
        assert mock.stop() == 0


def test_without_a_count_the_plan_says_the_threshold_is_not_judged(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "12")
    try:
        source, _, _ = zoho_file(tmp_path, mock, 12)
        dry = run_cli(["run", "zoho", str(source), "--dry-run"], zoho_env(mock.url), tmp_path)
        assert "change threshold: 50% of a target, judged with --backup only" in dry.stdout, dry.stdout
        bad = run_cli(["run", "zoho", str(source), "--dry-run", "--change-threshold", "0"], zoho_env(mock.url),
                      tmp_path)
        assert bad.returncode == 2 and "--change-threshold" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        assert mock.stop() == 0


def test_docebo_counts_each_course_in_one_call_and_refuses_most_of_one_even_with_yes(tmp_path: Path) -> None:
    mock = MockProcess("docebo", "--time-scale", "0.01", "--courses", "2", "--plans", "1", "--learners", "40")
    try:
        courses = mock.stats()["state"]["courses"]
        (big_cut, users_a), (small_cut, users_b) = sorted(courses.items())[:2]
        source = tmp_path / "in.csv"
        rows = [(big_cut, u) for u in users_a[:30]] + [(small_cut, u) for u in users_b[:5]]  # 75% and 12.5%
        source.write_text("Course Unique ID,User Unique ID\n" + "".join(f"{c},{u}\n" for c, u in rows))
        env = clean_env(UNENROLL_BASE_URL=mock.url, UNENROLL_ALLOW_INSECURE_HTTP="1", UNENROLL_TIME_SCALE="0.01",
                        UNENROLL_DOCEBO_CLIENT_ID="mock-client-id", UNENROLL_DOCEBO_CLIENT_SECRET="mock-client-secret",
                        XDG_STATE_HOME=str(tmp_path / "state"))
        dry = run_cli(["run", "docebo", str(source), "--dry-run"], env, tmp_path)
        assert "counted when the run starts, one read call per target" in dry.stdout, dry.stdout
        assert mock.stats(state=False)["endpoints"]["read_enrollments"]["statuses"] == {}  # a dry run reads nothing
        refused = run_cli(["run", "docebo", str(source), "--yes"], env, tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"unenroll course/{big_cut}: 30 of its 40 enrolments (75%)" in refused.stderr, refused.stderr
        assert f"course/{small_cut}" not in refused.stderr  # 5 of 40 is within
        assert mock.stats(state=False)["endpoints"]["read_enrollments"]["statuses"] == {"200": 2}  # one per course
        assert all(len(users) == 40 for users in mock.stats()["state"]["courses"].values())  # nothing changed

        went = run_cli(["run", "docebo", str(source), "--yes", "--resume", "--change-threshold", "80"], env, tmp_path)
        assert went.returncode == 0, went.stdout + went.stderr
        left = mock.stats()["state"]["courses"]
        assert (len(left[big_cut]), len(left[small_cut])) == (10, 35)
    finally:
        assert mock.stop() == 0
