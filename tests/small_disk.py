"""A real filesystem that fills up: a small tmpfs mounted in a new user and mount namespace (`unshare -rm`), for
the one shell script that runs there. The mount is gone when the script ends, so the script copies out what a
test inspects. Where the machine does not allow such namespaces, the test is skipped, saying why."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


@functools.cache
def _unavailable() -> str | None:
    """Why a small tmpfs cannot be mounted here, or None where it can."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {folder}"],
                              capture_output=True, text=True)
    return None if done.returncode == 0 else f"unshare -rm with a tmpfs mount fails: {done.stderr.strip()}"


def on_small_disk(disk: Path, size: str, script: str, env: dict[str, str] | None = None, timeout: float = 1800
                  ) -> subprocess.CompletedProcess:
    """Runs the shell `script` with a tmpfs of `size` (e.g. '1m') mounted at the folder `disk`; skips the test
    where that cannot be done."""
    reason = _unavailable()
    if reason is not None:
        pytest.skip(f"needs a small real filesystem (a tmpfs in a user and mount namespace): {reason}")
    disk.mkdir(parents=True, exist_ok=True)
    mount = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(disk))}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && {script}"], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
