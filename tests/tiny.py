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

import pandas as pd
import pyarrow as pa

from tasks.storage.location import Location
from tasks.storage.reading import read_shard

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

    def __init__(self, command: list[str], env: dict[str, str], **options) -> None:
        """`options`: more subprocess.Popen arguments (cwd, start_new_session, ...)."""
        self.log = Path(tempfile.mkstemp(prefix="flow-", suffix=".log")[1])
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                            **options)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def output(self, last: int | None = 3000) -> str:
        """The end of the run's output (stdout and stderr), the whole of it with `last=None`."""
        text = self.log.read_text(errors="replace")
        return text if last is None else text[-last:]

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


def dataset_tables(url: str, **options) -> dict[int, pa.Table]:
    """Every shard of a dataset, each verified against its manifest."""
    dataset = Location.open(url, options)
    count = dataset.read_json("dataset.json")["shards"]["count"]
    return {i: read_shard(dataset, i) for i in range(count)}


def assert_same_rows(tables: dict[int, pa.Table], reference: dict[int, pa.Table]) -> None:
    """The shards hold exactly the reference's rows, none twice."""
    assert sorted(tables) == sorted(reference)
    for index, table in tables.items():
        assert table.equals(reference[index]), f"shard {index} differs from the fault-free run"
    keys = pd.concat([t.select(["feature_id", "layer", "head"]).to_pandas() for t in tables.values()])
    assert not keys.duplicated().any()
