"""The tiny extraction config the flow tests share: 2 layers x 4 heads, 48 tokens, several small shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = dict(source="embedded", model="tiny-random-bert", max_length=48, doc_stride=24, shard_size=60, precision="fp32",
            bert_batch=16, encoder_batch=128)
ROWS_PER_FEATURE = 2 * 4


def tiny_flags(**overrides) -> list[str]:
    """TINY (with overrides) as command-line flags."""
    return [part for key, value in {**TINY, **overrides}.items()
            for part in (f"--{key.replace('_', '-')}", str(value))]


class RunningFlow:
    """A flow running in another process, its output going to a file (a pipe nobody reads would stall it once
    full); waits are for events, with a deadline only as a safety net, and failures show the output."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.log = Path(tempfile.mkstemp(prefix="flow-", suffix=".log")[1])
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def output(self, last: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-last:]

    def wait_until(self, done: Callable[[], bool], what: str, timeout: float = 1800) -> None:
        """Returns once `done()` holds; fails if the process ends first or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.process.poll() is not None:
                raise AssertionError(f"the run ended (status {self.returncode}) before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def wait(self, timeout: float = 1800) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=120)


def run_flow(script: str, *args: str, wait: bool = True, **env: str):
    """`python flows/SCRIPT ARGS` in a new process, on the session's Prefect server, with `env` added: its
    completed process, or with `wait=False` a RunningFlow."""
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value() or "", **env}
    command = [sys.executable, str(REPO / "flows" / script), *args]
    if not wait:
        return RunningFlow(command, environment)
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=1800)
