"""``unenroll run`` end to end: the real command in a subprocess against a mock served by
``unenroll mock serve`` in another process on 127.0.0.1, with a small time scale.

Pinned here: one results line per input row (messy CSV and JSONL), exit codes, a dry run
sends nothing, no credential reaches any output or file, the change guard, destructive
options shown and recorded, and the plan's and settings' pure pieces.
"""

from __future__ import annotations

import csv
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pytest

CLI = [sys.executable, "-m", "unenroll.cli"]
COURSE = "5000000000000"
BATCH_1, BATCH_2 = "5000000000001", "5000000000002"


# -- helpers (test_cli_resume.py uses them too) -----------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any UNENROLL_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNENROLL_")}
    env.update(extra)
    return env


class Lines:
    """Lines of a subprocess's output as they come, with a deadline on every wait."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self._buffer = b""
        self.seen: list[str] = []
        self.closed = False

    def wait_for(self, wanted: Callable[[str], bool], timeout: float = 30.0) -> str | None:
        """The first new line ``wanted`` accepts; ``None`` if the stream ends first."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n", 1)
                line = raw.decode("utf-8", "replace")
                self.seen.append(line)
                if wanted(line):
                    return line
            if self.closed:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no wanted line within {timeout}s; saw {self.seen[-5:]}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                chunk = os.read(self.fd, 65536)
                if chunk:
                    self._buffer += chunk
                else:
                    self.closed = True
                    self._buffer += b"\n"

    def rest(self, timeout: float = 60.0) -> str:
        self.wait_for(lambda line: False, timeout)
        return "\n".join(self.seen)


class MockProcess:
    """``unenroll mock serve VENDOR --port 0 ...`` in its own process; stopped with SIGTERM."""

    def __init__(self, vendor: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([*CLI, "mock", "serve", vendor, "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=dict(env) if env is not None else clean_env())
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)
        first = self.lines.wait_for(lambda line: "serving on" in line, timeout=30)
        assert first is not None, "the mock did not start"
        self.url = first.split()[-1]

    def stats(self, state: bool = True) -> dict[str, Any]:
        query = "" if state else "?state=0"
        with urllib.request.urlopen(self.url + "/__mock__/stats" + query, timeout=10) as answer:
            result: dict[str, Any] = json.load(answer)
            return result

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def zoho_env(url: str, **extra: str) -> dict[str, str]:
    """Settings and (the mock's own) credentials for a run against a Zoho mock at ``url``."""
    settings = {
        "UNENROLL_BASE_URL": url, "UNENROLL_ACCOUNTS_URL": url, "UNENROLL_ALLOW_INSECURE_HTTP": "1",
        "UNENROLL_TIME_SCALE": "0.01", "UNENROLL_ZOHO_REFRESH_TOKEN": "mock-refresh-token",
        "UNENROLL_ZOHO_CLIENT_ID": "mock-client-id", "UNENROLL_ZOHO_CLIENT_SECRET": "mock-client-secret",
    }
    return clean_env(**{**settings, **extra})


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 60.0,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def read_results(path: Path) -> list[dict[str, Any]]:
    """The results file's rows in file order: the input's own columns, then ``outcome``,
    ``code``, ``message``, ``attempts`` and ``row`` (the last two as numbers)."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        rows = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    for row in rows:
        row["attempts"] = int(row["attempts"])
        row["row"] = int(row["row"]) if row["row"] != "" else None
    return rows


def by_row(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["row"]: r for r in rows}


@pytest.fixture
def zoho_mock() -> Iterator[MockProcess]:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "2", "--learners", "10")
    try:
        yield mock
    finally:
        assert mock.stop() == 0


def enrolled(stats: dict[str, Any], batch: str) -> set[str]:
    return set(stats["state"]["batches"][f"{COURSE}/{batch}"])


# -- the results file and exit codes -----------------------------------------------------------


def test_a_messy_csv_gets_one_result_per_row_and_loses_nothing(tmp_path: Path, zoho_mock: MockProcess) -> None:
    e = [f"70000000000{n:02d}" for n in range(1, 21)]  # batch 1 holds e[0:10], batch 2 e[10:20]
    data = (
        "\ufeffcourse_id,batch_id,erecno,name\r\n"  # line 1: header after a BOM
        f"{COURSE},{BATCH_1},{e[0]},Ann\r\n"  # 2 good
        f"{COURSE},{BATCH_1},{e[1]},Bob\r\n"  # 3 good
        f"{COURSE},{BATCH_1},{e[0]},Ann again\r\n"  # 4 duplicate of row 2
        f"{COURSE},{BATCH_1},,Nobody\r\n"  # 5 missing value
        f"{COURSE},{BATCH_1}, ,Blank\r\n"  # 6 empty id
        f"{COURSE},{BATCH_1},12a4,Typo\r\n"  # 7 bad characters
    ).encode() + (
        f"{COURSE},{BATCH_1},{e[2]}".encode() + b"\xe9,Jose\r\n"  # 8 a Latin-1 byte in the id
        b"\r\n"  # 9 blank: not a row
    ) + (
        f'"{COURSE}","{BATCH_2}","{e[10]}","Quoted, with a comma"\r\n'  # 10 good
        f"{COURSE},{BATCH_2},{e[11]}," + "x" * 70_000 + "\r\n"  # 11 huge line
        f"{COURSE},{BATCH_2}\r\n"  # 12 short row
        f"{COURSE},{BATCH_2},9000000000001,Ghost\r\n"  # 13 not enrolled
        f'{COURSE},{BATCH_2},{e[12]},"two\nlines"\r\n'  # 14-15 a quoted newline: two rows, both rejected
        f"{COURSE},{BATCH_2},{e[13]},Last"  # 16 good, no final newline
    ).encode()
    source = tmp_path / "learners.csv"
    source.write_bytes(data)
    result = run_cli(["run", "zoho", str(source)], zoho_env(zoho_mock.url), tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]  # rejected rows: a script must notice
    assert "Traceback" not in result.stderr
    assert "could not be written" not in result.stderr, result.stderr

    rows = read_results(tmp_path / "learners.results.csv")
    got = by_row(rows)
    assert [r["row"] for r in rows] == sorted(got)  # in input order
    assert sorted(got) == [2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16]
    outcomes = {row: (r["outcome"], r["message"]) for row, r in got.items()}
    assert outcomes[2][0] == outcomes[3][0] == outcomes[10][0] == outcomes[16][0] == "unenrolled"
    assert outcomes[14][0] == "rejected" and "never closed on this line" in outcomes[14][1]
    assert outcomes[15] == ("rejected", "row 15: no value in column 'batch_id'")
    assert outcomes[4][0] == "duplicate"
    assert outcomes[5] == ("rejected", "row 5: no value in column 'erecno'")
    assert outcomes[6] == ("rejected", "row 6: no value in column 'erecno'")
    assert outcomes[7] == ("rejected", "'12a4' is not a Zoho id (digits only, no leading zeros)")
    assert outcomes[8] == ("rejected", "row 8: not UTF-8 text (byte 0xe9 in column 'erecno'): save the file as UTF-8")
    assert outcomes[11] == ("rejected", "row 11: the line is longer than 65536 bytes")
    assert outcomes[12] == ("rejected", "row 12: no value in column 'erecno'")
    assert outcomes[13][0] == "not_enrolled"
    assert got[2]["attempts"] == 1 and got[2]["code"] == "200"
    # the admin's own columns first, as given (a byte that was not UTF-8 shown as U+FFFD), then the outcome
    header = (tmp_path / "learners.results.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "course_id,batch_id,erecno,name,outcome,code,message,attempts,row"
    assert (got[2]["course_id"], got[2]["batch_id"], got[2]["erecno"], got[2]["name"]) == (COURSE, BATCH_1, e[0], "Ann")
    assert got[10]["name"] == "Quoted, with a comma" and got[8]["erecno"] == e[2] + "\ufffd"

    stats = zoho_mock.stats()
    assert e[0] not in enrolled(stats, BATCH_1) and e[1] not in enrolled(stats, BATCH_1)
    assert e[2] in enrolled(stats, BATCH_1)  # its row was unreadable: never sent
    assert {e[10], e[13]}.isdisjoint(enrolled(stats, BATCH_2)) and {e[11], e[12]} <= enrolled(stats, BATCH_2)
    assert "unenrolled" in result.stdout and "rejected" in result.stdout  # the summary
    report = json.loads((tmp_path / "learners.results.csv.report.json").read_text())
    assert report["counts"] == {"unenrolled": 4, "not_enrolled": 1, "rejected": 8, "duplicate": 1}
    assert report["exit_code"] == 1


def test_jsonl_with_mapped_columns_and_a_failed_item_exits_1(tmp_path: Path, zoho_mock: MockProcess) -> None:
    lines = [
        json.dumps({"course": COURSE, "batch": BATCH_1, "employee": 7000000000004}),
        "{oops",
        json.dumps({"course": COURSE, "batch": "5000000000999", "employee": "7000000000005"}),  # no such batch
        json.dumps({"course": COURSE, "batch": BATCH_1}),
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli(["run", "zoho", str(source), "--column", "course_id=course", "--column", "batch_id=batch",
                      "--column", "erecno=employee", "--results", "out.jsonl"], zoho_env(zoho_mock.url), tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    rows = read_results(tmp_path / "out.jsonl")
    got = by_row(rows)
    assert [got[n]["outcome"] for n in (1, 2, 3, 4)] == ["unenrolled", "rejected", "failed", "rejected"]
    assert got[2]["message"].startswith("row 2: not a JSON object")
    assert got[3]["code"] == "404" and "not found" in got[3]["message"]
    assert got[4]["message"] == "row 4: no value for 'employee'"


def test_bad_usage_and_bad_files_exit_2_saying_why_and_send_nothing(tmp_path: Path, zoho_mock: MockProcess) -> None:
    good = tmp_path / "good.csv"
    good.write_text(f"course_id,batch_id,erecno\n{COURSE},{BATCH_1},7000000000001\n")
    no_column = tmp_path / "no_column.csv"
    no_column.write_text(f"course_id,batch,erecno\n{COURSE},{BATCH_1},7000000000001\n")
    env = zoho_env(zoho_mock.url)
    without_credentials = clean_env(**{k: v for k, v in env.items() if "TOKEN" not in k and "CLIENT" not in k})
    typo, partial = tmp_path / "typo.toml", tmp_path / "partial.toml"
    typo.write_text('UNENROLL_ZOHO_REFRESH_TOKN = "mock-refresh-token"\n')  # a key misspelt
    partial.write_text('UNENROLL_ZOHO_REFRESH_TOKEN = "mock-refresh-token"\n')  # the others forgotten
    for path in (typo, partial):
        path.chmod(0o600)
    cases: list[tuple[list[str], Mapping[str, str], str]] = [
        (["run", "zoho", str(no_column)], env, "no column 'batch_id'"),
        (["run", "zoho", str(good), "--operation", "enrol"], env, "no operation 'enrol'"),
        (["run", "zoho", str(good), "--column", "erecno"], env, "NAME=HEADER"),
        (["run", "zoho", str(good)], without_credentials, "UNENROLL_ZOHO_REFRESH_TOKEN"),
        (["run", "zoho", str(good)], {**env, "UNENROLL_ALLOW_INSECURE_HTTP": "0"}, "plain HTTP"),
        (["run", "zoho", str(good), "--resume"], env, "nothing to resume"),
        (["run", "zoho", str(good), "--destructive", "reset_tracks"], env, "no option reset_tracks"),
        (["run", "zoho", str(tmp_path / "missing.csv")], env, "does not exist"),
        (["run", "zoho", str(good), "--credentials-file", str(typo)], without_credentials,
         "unknown credential 'UNENROLL_ZOHO_REFRESH_TOKN' (did you mean UNENROLL_ZOHO_REFRESH_TOKEN?"),
        (["run", "zoho", str(good), "--credentials-file", str(partial)], without_credentials,
         f"found UNENROLL_ZOHO_REFRESH_TOKEN (from {partial}); not set: UNENROLL_ZOHO_CLIENT_ID, "
         "UNENROLL_ZOHO_CLIENT_SECRET"),
    ]
    running = [(args, words, subprocess.Popen([*CLI, *args], env=dict(case_env), cwd=tmp_path,
                                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
               for args, case_env, words in cases]  # side by side: each only starts and refuses
    for args, words, proc in running:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, stdout, stderr)
        assert words in stderr, (args, stderr)
        assert "Traceback" not in stderr
    stats = zoho_mock.stats(state=False)
    assert stats["tokens_issued"] == 0 and all(e["calls"] == 0 for e in stats["endpoints"].values())


# -- dry run -------------------------------------------------------------------------------------


def test_a_dry_run_checks_every_row_prints_the_plan_and_sends_nothing(tmp_path: Path,
                                                                       zoho_mock: MockProcess) -> None:
    rows = [f"{COURSE},{batch},70000000000{n:02d}" for batch, ns in ((BATCH_1, range(1, 11)), (BATCH_2, range(11, 21)))
            for n in ns]
    source = tmp_path / "in.csv"
    source.write_text("course_id,batch_id,erecno\n" + "\n".join([*rows, rows[0], f"{COURSE},{BATCH_1},x"]) + "\n")
    settings = tmp_path / "settings.toml"
    settings.write_text("[zoho.limits]\nmax_ids_per_call = 3\n")
    result = run_cli(["run", "zoho", str(source), "--dry-run", "--settings", str(settings)],
                     zoho_env(zoho_mock.url), tmp_path)
    assert result.returncode == 1, result.stderr  # one row would be rejected: the run would end 1 too
    out = result.stdout
    assert "22 rows" in out and "to send" in out
    assert [line.split() for line in out.splitlines() if line.strip().startswith(("to send", "rejected", "duplicate"))
            ] == [["to", "send", "20"], ["duplicate", "1"], ["rejected", "1"]]
    assert "endpoint unenroll: at least 8 calls" in out  # 10 + 10 ids, 3 a call: 4 + 4
    assert "30 calls per 0.6 s" in out
    assert f"POST {zoho_mock.url}/api/v1/courses/{COURSE}/batches/{BATCH_1}/unenroll?erecnosList=" in out
    assert "nothing was sent" in out
    stats = zoho_mock.stats(state=False)
    assert stats["tokens_issued"] == 0
    assert all(e["calls"] == 0 for e in stats["endpoints"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "settings.toml"]  # nothing written


# -- secrets ---------------------------------------------------------------------------------------

SECRETS = {
    "UNENROLL_ZOHO_REFRESH_TOKEN": "1000.refresh-Zq8vKx2Lm4Np6Rt",
    "UNENROLL_ZOHO_CLIENT_ID": "1000.CLIENTID-Hy7Gf3Ds9Aw1",
    "UNENROLL_ZOHO_CLIENT_SECRET": "client-secret-Pk5Tn8Vb2Xc4",
}


def test_no_credential_appears_in_any_output_log_or_file(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "2", "--learners", "10",
                       env=clean_env(**SECRETS))
    try:
        assert all(value not in "\n".join(mock.lines.seen) for value in SECRETS.values())
        source = tmp_path / "in.csv"
        source.write_text("course_id,batch_id,erecno\n" + "".join(
            f"{COURSE},{BATCH_1},70000000000{n:02d}\n" for n in range(1, 11)) + f"{COURSE},{BATCH_1},nope\n")
        env = zoho_env(mock.url, **SECRETS)
        outputs = []
        result = run_cli(["run", "zoho", str(source), "--dry-run", "-v"], env, tmp_path)
        assert result.returncode == 1, result.stderr[-2000:]  # the row 'nope' would be rejected
        outputs += [result.stdout, result.stderr]
        # the client secret from a credentials file this time; verbose JSON logs; a backup
        credentials = tmp_path / "credentials.toml"
        credentials.write_text(f'UNENROLL_ZOHO_CLIENT_SECRET = "{SECRETS["UNENROLL_ZOHO_CLIENT_SECRET"]}"\n')
        credentials.chmod(0o600)
        from_file = {k: v for k, v in env.items() if k != "UNENROLL_ZOHO_CLIENT_SECRET"}
        result = run_cli(["run", "zoho", str(source), "-v", "--json-logs", "--backup", "backup.jsonl",
                          "--change-threshold", "100", "--credentials-file", str(credentials)], from_file, tmp_path)
        assert result.returncode == 1, result.stderr[-2000:]  # the row "nope" is rejected
        assert "warning" not in result.stderr  # the file is private
        assert "backup reads: at least 1 call on zoho read_learners" in result.stdout  # the cost, shown first
        assert result.stdout.index("backup reads") < result.stdout.index("backing up") < result.stdout.index("sending")
        backup = [json.loads(line) for line in (tmp_path / "backup.jsonl").read_text().splitlines()]
        assert len(backup) == 10 and all(b["record"]["enrollmentStatus"] == "enrolled" for b in backup)
        outputs += [result.stdout, result.stderr]
        credentials.unlink()
        wrong = {**env, "UNENROLL_ZOHO_CLIENT_SECRET": "wrong-secret-Jd6Hs2Wq9Ez"}
        result = run_cli(["run", "zoho", str(source), "-v", "--results", "again.csv"], wrong, tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]  # refused credentials: nothing was sent
        assert "auth" in result.stdout
        outputs += [result.stdout, result.stderr]
        secrets = [*SECRETS.values(), "wrong-secret-Jd6Hs2Wq9Ez"]
        written = [p for p in tmp_path.iterdir() if p.name != "in.csv"]
        assert {"in.results.csv", "in.results.csv.journal", "in.results.csv.report.json", "backup.jsonl",
                "again.csv"} <= {p.name for p in written}
        blobs = [o.encode() for o in outputs] + [p.read_bytes() for p in written]
        for secret in secrets:
            assert not any(secret.encode() in blob for blob in blobs), secret
        assert len(read_results(tmp_path / "in.results.csv")) == 11
    finally:
        assert mock.stop() == 0


def test_a_dry_run_masks_keys_that_travel_in_the_request_body(tmp_path: Path) -> None:
    keys = {"UNENROLL_SMARTERU_ACCOUNT_API_KEY": "acct-key-Rm3&Qp7<Zx", "UNENROLL_SMARTERU_USER_API_KEY": "user-Vn4Kt8"}
    source = tmp_path / "in.csv"
    source.write_text("AccountUserLearningModuleRelID\n1000001\n1000002\n")
    result = run_cli(["run", "smarteru", str(source), "--dry-run"], clean_env(**keys), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "<AccountAPI>***</AccountAPI><UserAPI>***</UserAPI>" in result.stdout
    assert "to send                          2" in result.stdout
    for value in [*keys.values(), "acct-key-Rm3&amp;Qp7&lt;Zx"]:
        assert value not in result.stdout + result.stderr


# -- the change guard ------------------------------------------------------------------------------


def test_above_the_threshold_a_run_without_a_terminal_needs_yes(tmp_path: Path, zoho_mock: MockProcess) -> None:
    source = tmp_path / "in.csv"
    source.write_text("course_id,batch_id,erecno\n" + "".join(
        f"{COURSE},{BATCH_1},70000000000{n:02d}\n" for n in range(1, 6)))
    env = zoho_env(zoho_mock.url, UNENROLL_CONFIRM_ABOVE="4")
    refused = run_cli(["run", "zoho", str(source)], env, tmp_path)
    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr and f"{COURSE}/{BATCH_1}: 5" in refused.stderr
    assert zoho_mock.stats(state=False)["tokens_issued"] == 0
    assert not (tmp_path / "in.results.csv.journal").exists()  # a rerun needs no --resume
    done = run_cli(["run", "zoho", str(source), "--yes"], env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def run_on_a_terminal(args: list[str], env: Mapping[str, str], cwd: Path, answer: bytes,
                      timeout: float = 60.0) -> tuple[int, str]:
    """Run the command with a pseudo-terminal as stdin, stdout and stderr; type ``answer``
    at the confirmation prompt. The exit code and everything it printed."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([*CLI, *args], env=dict(env), cwd=cwd, stdin=terminal, stdout=terminal, stderr=terminal,
                            close_fds=True)
    os.close(terminal)
    output = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the process ended
                    break
                if not chunk:
                    break
                output += chunk
                if not answered and b"Go ahead?" in output:
                    os.write(controller, answer)
                    answered = True
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    return code, output.decode("utf-8", "replace")


def test_on_a_terminal_the_guard_asks_and_the_bar_shows_progress(tmp_path: Path, zoho_mock: MockProcess) -> None:
    source = tmp_path / "in.csv"
    source.write_text("course_id,batch_id,erecno\n" + "".join(
        f"{COURSE},{BATCH_2},70000000000{n:02d}\n" for n in range(11, 21)))
    env = zoho_env(zoho_mock.url, UNENROLL_CONFIRM_ABOVE="5")
    code, output = run_on_a_terminal(["run", "zoho", str(source)], env, tmp_path, b"n\n")
    assert code == 2 and "Go ahead?" in output and f"{COURSE}/{BATCH_2}: 10" in output
    assert "not confirmed: nothing was sent" in output
    assert zoho_mock.stats(state=False)["tokens_issued"] == 0
    code, output = run_on_a_terminal(["run", "zoho", str(source)], env, tmp_path, b"y\n")
    assert code == 0, output[-2000:]
    assert "10/10" in output and "ETA" in output  # the bar, drawn at least once at the end
    assert "unenrolled" in output and '"event"' not in output  # a summary, not JSON logs


# -- destructive options -----------------------------------------------------------------------------


def test_destructive_options_are_in_the_plan_the_summary_and_the_report(tmp_path: Path) -> None:
    mock = MockProcess("docebo", "--time-scale", "0.01", "--courses", "2", "--plans", "1", "--learners", "5")
    try:
        stats = mock.stats()
        course, users = next(iter(stats["state"]["courses"].items()))
        source = tmp_path / "in.csv"
        source.write_text("Course Unique ID,User Unique ID\n" + "".join(f"{course},{u}\n" for u in users[:3]))
        env = clean_env(UNENROLL_BASE_URL=mock.url, UNENROLL_ALLOW_INSECURE_HTTP="1", UNENROLL_TIME_SCALE="0.01",
                        UNENROLL_DOCEBO_CLIENT_ID="mock-client-id",
                        UNENROLL_DOCEBO_CLIENT_SECRET="mock-client-secret")
        result = run_cli(["run", "docebo", str(source), "--destructive", "reset_tracks"], env, tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "destructive options: reset_tracks=ON, cascade_unenroll_from_courses_in_selected_learning_plan=off, " \
               "delete_issued_certificates=off" in result.stdout
        assert "destructive options on: reset_tracks" in result.stdout  # the summary
        report = json.loads((tmp_path / "in.results.csv.report.json").read_text())
        assert report["options"] == {"reset_tracks": True,
                                     "cascade_unenroll_from_courses_in_selected_learning_plan": False,
                                     "delete_issued_certificates": False}
        assert [r["outcome"] for r in read_results(tmp_path / "in.results.csv")] == ["unenrolled"] * 3
        assert len(mock.stats()["state"]["tracks_reset"]) == 3
    finally:
        assert mock.stop() == 0


# -- pure pieces: settings, the plan, the progress line ------------------------------------------------


def test_settings_come_from_the_file_then_the_environment_and_typos_are_errors(tmp_path: Path) -> None:
    from unenroll.cli.config import load_settings
    from unenroll.contract.settings import ConfigError

    path = tmp_path / "settings.toml"
    path.write_text('time_scale = 0.5\nbase_url = "https://top"\n[job]\nmax_attempts = 3\nbase_delay = 2\n'
                    '[zoho]\nbase_url = "https://people.zoho.eu"\n[zoho.limits]\nmax_ids_per_call = 50\n')
    keys = {"max_ids_per_call": int, "margin": float}
    settings = load_settings("zoho", path, {"UNENROLL_TIME_SCALE": "0.25"}, vendors=["zoho"], limit_keys=keys)
    assert settings.connection.base_url == "https://people.zoho.eu"
    assert settings.connection.time_scale == 0.25 and settings.sources["time_scale"] == "UNENROLL_TIME_SCALE"
    assert settings.limits == {"max_ids_per_call": 50}
    assert settings.job.retry.max_attempts == 3 and settings.job.retry.base_delay == 0.5  # scaled by 0.25
    for text, words in [("tme_scale = 1\n", "unknown setting 'tme_scale'"),
                        ('[zoho]\nrefresh_token = "x"\n', "credentials do not belong"),
                        ("[zoho.limits]\nmax_ids_per_call = 1.5\n", "expected a whole number, got 1.5"),
                        ("time_scale = 0\n", "above 0"),
                        ("[job]\nmax_attempts = 0\n", "max_attempts")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=words):
            load_settings("zoho", path, {}, vendors=["zoho"], limit_keys=keys)
    with pytest.raises(ConfigError, match="UNENROLL_ALLOW_INSECURE_HTTP"):
        load_settings("zoho", None, {"UNENROLL_ALLOW_INSECURE_HTTP": "maybe"}, vendors=["zoho"], limit_keys=keys)


# -- SmarterU: what the backup read settles -----------------------------------------------------------


def test_rerunning_a_finished_smarteru_job_ends_what_the_backup_read_shows_done_not_failed(tmp_path: Path) -> None:
    mock = MockProcess("smarteru", "--time-scale", "0.01", "--enrolled", "20", "--queue-delay", "1")
    try:
        rehearse = mock.lines.wait_for(lambda line: line.startswith("rehearse with: "), timeout=30)
        assert rehearse is not None
        env = clean_env(**dict(pair.split("=", 1) for pair in rehearse.removeprefix("rehearse with: ").split()))
        ids: list[str] = mock.stats()["state"]["enrolled"]
        source = tmp_path / "in.csv"
        source.write_text("AccountUserLearningModuleRelID\n" + "\n".join([*ids, "9999999"]) + "\n")
        first = run_cli(["run", "smarteru", str(source), "--backup", "b1.jsonl"], env, tmp_path)
        assert first.returncode == 1, first.stderr[-2000:]  # 9999999 does not exist: ULM:02, failed
        deadline = time.monotonic() + 30
        while sorted(mock.stats()["state"]["unenrolled"]) != sorted(ids):  # the queue is worked off (10 ms)
            assert time.monotonic() < deadline, "the mock's queue was not processed"
            time.sleep(0.05)
        again = run_cli(["run", "smarteru", str(source), "--backup", "b2.jsonl", "--results", "again.csv"], env,
                        tmp_path)
        assert again.returncode == 1, again.stderr[-2000:]
        rows = {r["AccountUserLearningModuleRelID"]: r for r in read_results(tmp_path / "again.csv")}
        assert {rows[i]["outcome"] for i in ids} == {"not_enrolled"}  # the read shows them unenrolled
        assert "ULM:02" in rows[ids[0]]["message"]  # the vendor's refusal is quoted
        assert (rows["9999999"]["outcome"], rows["9999999"]["code"]) == ("failed", "ULM:02")  # the read cannot tell
    finally:
        assert mock.stop() == 0


# -- the files admins really have, through the command line -------------------------------------


def test_a_report_export_runs_without_flags_semicolons_report_headers_and_a_workbook_named_csv(
        tmp_path: Path, zoho_mock: MockProcess) -> None:
    import openpyxl

    env = zoho_env(zoho_mock.url)
    semicolons = tmp_path / "export.csv"
    semicolons.write_text("Course ID;Batch ID;Employee ID\n100;200;7000000000001\n100;200;7.000000000983E+12\n")
    done = run_cli(["run", "zoho", str(semicolons), "--dry-run"], env, tmp_path)
    stdout, stderr = done.stdout, done.stderr
    assert done.returncode == 1, stderr  # a dry run with a rejected row says so, like the run would
    assert "columns: course_id <- 'Course ID', batch_id <- 'Batch ID', erecno <- 'Employee ID'" in stdout
    assert "format the column as Text" in stdout and "to send                          1" in stdout

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["course_id", "batch_id", "erecno"])
    sheet.append(["100", "200", 7000000000002])
    disguised = tmp_path / "from-excel.csv"
    book.save(disguised)
    done = run_cli(["run", "zoho", str(disguised), "--dry-run", "--delimiter", ";"], env, tmp_path)
    stdout, stderr = done.stdout, done.stderr
    assert done.returncode == 0, stderr
    assert "Traceback" not in stderr and "workbook" in stdout.lower(), stdout
    assert "to send                          1" in stdout, stdout


def test_results_cells_a_spreadsheet_would_run_are_text_and_an_unknown_results_format_is_refused(
        tmp_path: Path, zoho_mock: MockProcess) -> None:
    from unenroll.accounts.results import spreadsheet_safe

    assert [spreadsheet_safe(v) for v in ("=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "ok", 3)] == [
        "'=HYPERLINK(1)", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "ok", 3]
    source = tmp_path / "in.csv"
    source.write_text(f"course_id,batch_id,erecno\n{COURSE},{BATCH_1},=1+2\n")
    done = run_cli(["run", "zoho", str(source), "--yes"], zoho_env(zoho_mock.url), tmp_path)
    assert done.returncode == 1, done.stderr
    row = (tmp_path / "in.results.csv").read_text().splitlines()[1]
    assert ",'=1+2," in row and ",=1+2," not in row  # the rejected id is shown, never run
    done = run_cli(["run", "zoho", str(source), "--results", str(tmp_path / "out.txt")], zoho_env(zoho_mock.url),
                   tmp_path)
    assert done.returncode == 2 and ".csv, .jsonl or .xlsx" in done.stderr and "Traceback" not in done.stderr


def test_results_as_a_workbook_hold_the_rows_in_input_order_with_cells_as_text(
        tmp_path: Path, zoho_mock: MockProcess) -> None:
    from openpyxl import load_workbook

    source = tmp_path / "in.csv"
    source.write_text(f"Name,course_id,batch_id,erecno\n=cmd|' /C calc'!A0,{COURSE},{BATCH_1},7000000000002\n"
                      f"Ann,{COURSE},{BATCH_1},7000000000001\nBob,{COURSE},{BATCH_1},12a\n")
    done = run_cli(["run", "zoho", str(source), "--results", "out.xlsx"], zoho_env(zoho_mock.url), tmp_path)
    assert done.returncode == 1, done.stderr
    book = load_workbook(tmp_path / "out.xlsx", read_only=True)
    rows = [list(r) for r in book.active.iter_rows(values_only=True)]
    assert rows[0] == ["Name", "course_id", "batch_id", "erecno", "outcome", "code", "message", "attempts", "row"]
    assert [r[0] for r in rows[1:]] == ["'=cmd|' /C calc'!A0", "Ann", "Bob"]  # text, never a formula
    assert [(r[4], r[8]) for r in rows[1:]] == [("unenrolled", 2), ("unenrolled", 3), ("rejected", 4)]
    errors = (tmp_path / "out.errors.csv").read_text().splitlines()
    assert len(errors) == 2 and errors[1].startswith("Bob,") and ",rejected," in errors[1]
