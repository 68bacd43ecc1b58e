"""The tiny extraction config the flow tests share: 2 layers x 4 heads, 48 tokens, several small shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = dict(model="tiny-random-bert", max_length=48, doc_stride=24, shard_size=60, precision="fp32",
            bert_batch=16, encoder_batch=128)
ROWS_PER_FEATURE = 2 * 4


def tiny_flags(**overrides) -> list[str]:
    """TINY (with overrides) as command-line flags."""
    return [part for key, value in {**TINY, **overrides}.items()
            for part in (f"--{key.replace('_', '-')}", str(value))]


def run_flow(script: str, *args: str, wait: bool = True, **env: str):
    """`python flows/SCRIPT ARGS` in a new process, on the session's Prefect server, with `env` added."""
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value() or "", **env}
    command = [sys.executable, str(REPO / "flows" / script), *args]
    if not wait:
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
