"""A comparison's outputs written into a staging folder beside the output folder, then swapped in whole."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.compare.summary import CompareSummary
from tasks.compare.tables import Comparison
from tasks.report.html import render_html
from tasks.report.sections import Section


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


def write_compare_outputs(out: Path, comparison: Comparison, summary: CompareSummary, sections: list[Section]
                          ) -> Path:
    """compare and layers tables (Parquet, CSV), figures, summary.json, report.html; returns report.html."""
    out = Path(out)
    with swapped_in(out) as staging:
        for stem, table in (("compare", comparison.heads), ("layers", comparison.layers)):
            table.to_parquet(staging / f"{stem}.parquet", index=False)
            table.to_csv(staging / f"{stem}.csv", index=False)
        (staging / "figures").mkdir()
        for figure in (f for s in sections for f in s.figures):
            (staging / "figures" / f"{figure.name}.png").write_bytes(figure.png)
        (staging / "summary.json").write_text(json.dumps(summary.to_json(), indent=2))
        (staging / "report.html").write_text(render_html("What changed in the heads", summary.to_json(), sections))
    return out / "report.html"
