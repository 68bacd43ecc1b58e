"""One run at a time owns a destination: two real extraction runs into one folder."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pyarrow as pa
from tiny import ROWS_PER_FEATURE, run_flow, tiny_flags

from tasks.config import ExtractConfig
from tasks.squad.features import tokenize
from tasks.squad.load import load_squad
from tasks.storage.location import Location
from tasks.storage.reading import read_shard


def _rows(dest: Path) -> pa.Table:
    """Every published shard of `dest`, each read and checked against its manifest."""
    location = Location.open(str(dest))
    count = location.read_json("dataset.json")["shards"]["count"]
    return pa.concat_tables(read_shard(location, i) for i in range(count))


def test_a_second_run_is_refused_or_waits_while_the_first_owns_the_destination(tmp_path, prefect_server, tokenizer):
    dest = tmp_path / "dataset"
    flags = ["--dest", str(dest), *tiny_flags()]
    first = run_flow("extract.py", *flags, wait=False)
    first.wait_until(lambda: any(dest.glob(".partial-*")), "the first run's staging folder")
    os.kill(first.pid, signal.SIGSTOP)  # the first run holds its staging, as a slow shard would
    try:
        refused = run_flow("extract.py", *flags)
        assert refused.returncode == 2, refused.stderr
        waiting = run_flow("extract.py", *flags, "--wait", wait=False)
        waiting.wait_until(lambda: "waiting for it" in waiting.output(), "the waiting run's log line")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"error: {dest} is in use by host {os.uname().nodename} pid {first.pid} (command ")
    assert "heartbeat" in refused.stderr and "wait for it or pass --wait" in refused.stderr
    assert first.wait() == 0, first.output()
    assert waiting.wait() == 0, waiting.output()
    assert "0 extracted now" in waiting.output()
    features = tokenize(load_squad("embedded").examples, tokenizer, 48, 24, 64)
    table = _rows(dest)
    keys = set(zip(*(table[c].to_pylist() for c in ("feature_id", "layer", "head"))))
    assert table.num_rows == len(keys) == len(features) * ROWS_PER_FEATURE
    assert {k[0] for k in keys} == set(range(len(features)))
    assert not list(dest.glob(".atlas-lease*")) and not list(dest.glob(".partial-*")), "lease and staging gone"


def test_waiting_for_the_destination_does_not_change_the_dataset_fingerprint():
    assert ExtractConfig(wait=True).content() == ExtractConfig().content()
