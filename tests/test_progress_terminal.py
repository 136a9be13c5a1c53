"""The progress display through the real command line: on a terminal (a pseudo-terminal
here) the live display draws on stderr while the plan and the summary stay on stdout;
with stderr not a terminal, stderr holds JSON events only and stdout no JSON."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

from tests.test_cli_run import CLI, MockProcess, zoho_env


def learners_file(tmp_path: Path, mock: MockProcess) -> Path:
    (batch_key, learners), = mock.stats()["state"]["batches"].items()
    course, batch = batch_key.split("/")
    source = tmp_path / "in.csv"
    source.write_text("course_id,batch_id,erecno\n" + "".join(f"{course},{batch},{e}\n" for e in sorted(learners)))
    return source


def test_a_terminal_gets_a_live_display_and_stdout_keeps_the_plan_and_summary(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "300")
    try:
        source = learners_file(tmp_path, mock)
        settings = tmp_path / "settings.toml"
        settings.write_text("[zoho.limits]\nmax_ids_per_call = 5\n")  # 60 calls: two windows and more
        env = zoho_env(mock.url, COLUMNS="160", TERM="xterm", XDG_STATE_HOME=str(tmp_path / "state"))
        controller, terminal = pty.openpty()
        proc = subprocess.Popen([*CLI, "run", "zoho", str(source), "--yes", "--settings", str(settings)], env=env,
                                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
        os.close(terminal)
        shown = bytearray()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bounded: read the terminal until the command ends
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the other end closed
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        os.close(controller)
        stdout = proc.stdout.read().decode() if proc.stdout is not None else ""
        assert proc.wait(timeout=30) == 0, shown.decode(errors="replace")[-2000:] + stdout
        screen = shown.decode(errors="replace")
        assert "sending" in screen and "ETA" in screen and "calls" in screen, screen[-2000:]
        assert "━" in screen  # rich's bar
        assert "300/300" in screen  # the final state stays on screen
        assert "\x1b[" in screen  # redrawn in place
        assert '{"' not in screen  # no JSON events on a terminal
        assert "summary" in stdout and "plan: zoho unenroll" in stdout and "\x1b[" not in stdout
    finally:
        assert mock.stop() == 0


def test_without_a_terminal_stderr_holds_json_events_and_stdout_no_json(tmp_path: Path) -> None:
    mock = MockProcess("zoho", "--time-scale", "0.01", "--courses", "1", "--batches", "1", "--learners", "40")
    try:
        source = learners_file(tmp_path, mock)
        env = zoho_env(mock.url, XDG_STATE_HOME=str(tmp_path / "state"))
        done = subprocess.run([*CLI, "run", "zoho", str(source), "--yes", "--backup", "before.jsonl",
                               "--change-threshold", "100"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        events = [json.loads(line)["event"] for line in done.stderr.splitlines() if line.strip()]  # every line JSON
        assert "run.progress" in events and "backup.progress" in events
        assert not any(line.lstrip().startswith("{") for line in done.stdout.splitlines())
        assert "summary" in done.stdout
    finally:
        assert mock.stop() == 0
