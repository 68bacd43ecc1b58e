"""An output folder replaced whole: written into a staging folder beside it, then swapped in."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def swapped_in(out: Path) -> Iterator[Path]:
    """A staging folder beside `out`: once the block ends, it replaces `out` whole (the previous one removed);
    where the block fails, `out` is left as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex}")
    staging.mkdir()
    try:
        yield staging
        previous = out.with_name(f".{out.name}.previous-{uuid.uuid4().hex}")
        if out.exists():
            out.rename(previous)
        staging.rename(out)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
