"""One signal ends a command-line run promptly and cleanly, and no run leaves its temporary Prefect server behind
(issue 20, items 3 and 13). The runs are real processes in their own process group (as a terminal starts them)
without PREFECT_API_URL, so that each starts its temporary server, run from a folder other than the repository."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from tiny import REPO, RunningFlow, assert_same_rows, dataset_tables, run_flow, tiny_flags

from tasks.interrupt import MESSAGE
from tasks.prefect_server import TELEMETRY_OFF

# Generous: the run has a shard to unwind and its server to stop (before, Ctrl-C took minutes).
ENDS_WITHIN = 60


def _start(tmp_path: Path, *command: str) -> RunningFlow:
    """`python COMMAND` from `tmp_path`, in its own process group, with neither PREFECT_API_URL nor the telemetry
    settings that conftest.py sets for the tests: as a user's terminal runs it."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL" and k not in TELEMETRY_OFF}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return RunningFlow([sys.executable, *command], env, cwd=tmp_path, start_new_session=True)


@contextmanager
def _family(run: RunningFlow) -> Iterator[list[psutil.Process]]:
    """The run's process and every process it has started by now (its temporary Prefect server among them);
    whatever of them is left when the block ends is killed, so that a failing test leaves nothing running."""
    parent = psutil.Process(run.pid)
    family = [parent, *parent.children(recursive=True)]
    try:
        yield family
    finally:
        for process in psutil.wait_procs(family, timeout=0)[1]:
            process.kill()
        if run.returncode is None:
            run.kill()


def _shard_1_in_staging(dest: Path):
    return lambda: bool(list(dest.glob(".partial-*/shard-000001.parquet")))


def _assert_ended_cleanly(run: RunningFlow, family: list[psutil.Process], status: int, dest: Path) -> None:
    """Ended within ENDS_WITHIN with `status`, one line and no traceback, no process left, no staging left."""
    assert run.wait(timeout=ENDS_WITHIN) == status, run.output()
    output = run.output(last=None)
    assert "Traceback" not in output, output[-3000:]
    assert output.splitlines()[-1] == MESSAGE, output[-3000:]
    alive = psutil.wait_procs(family, timeout=10)[1]
    assert not alive, f"left running: {alive}"
    assert not list(dest.glob("*partial*")), "staging left in the destination"


def test_ctrl_c_in_a_terminal_ends_the_run_at_once_and_a_rerun_resumes_exactly(tmp_path, reference):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the temporary server used to get it
    too and die first, and the flow retried the dead API for minutes."""
    dest = tmp_path / "dataset"
    run = _start(tmp_path, str(REPO / "flows" / "extract.py"), "--dest", str(dest), *tiny_flags())
    run.wait_until(_shard_1_in_staging(dest), "shard 1 being written", timeout=600)
    with _family(run) as family:
        assert len(family) > 1, "the run started its temporary server"
        os.killpg(run.pid, signal.SIGINT)
        _assert_ended_cleanly(run, family, 128 + signal.SIGINT, dest)
    rerun = run_flow("extract.py", "--dest", str(dest), *tiny_flags())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_rows(dataset_tables(str(dest)), reference)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_pid_of_atlas_full_ends_it_at_once(tmp_path, number):
    """SIGTERM to `atlas full` mid-extraction did not end it; SIGINT to the pid alone printed a traceback."""
    dest = tmp_path / "dataset"
    run = _start(tmp_path, "-m", "flows.cli", "full", "--dest", str(dest), "--out", str(tmp_path / "clusters"),
                 *tiny_flags())
    run.wait_until(_shard_1_in_staging(dest), "shard 1 being written", timeout=600)
    with _family(run) as family:
        run.process.send_signal(number)
        _assert_ended_cleanly(run, family, 128 + number, dest)


def test_a_run_killed_with_sigkill_leaves_no_server_running(tmp_path):
    dest = tmp_path / "dataset"
    run = _start(tmp_path, str(REPO / "flows" / "extract.py"), "--dest", str(dest), *tiny_flags())
    run.wait_until(lambda: bool(list(dest.glob(".partial-*"))), "a shard being written", timeout=600)
    with _family(run) as family:
        assert len(family) > 1, "the run started its temporary server"
        run.kill()
        alive = psutil.wait_procs(family, timeout=30)[1]
        assert not alive, f"left running after the run was killed: {alive}"


def test_a_run_outside_the_repository_sends_no_telemetry_and_logs_no_error(tmp_path):
    """pyproject.toml turns telemetry off only for runs from the repository root: elsewhere, offline, the
    temporary server logged an error with a traceback in every run. Also, the logs still queued when the flow
    ends reach the server before it stops (sent after, they fail with 'Error logging to API' for a minute)."""
    run = _start(tmp_path, str(REPO / "flows" / "extract.py"), "--dest", str(tmp_path / "dataset"), "--shards", "0",
                 *tiny_flags())
    assert run.wait(timeout=600) == 0, run.output()
    output = run.output(last=None)
    assert "telemetry" not in output.lower(), output[-3000:]
    assert not re.search("Traceback|ERROR|Error", output), output[-3000:]
