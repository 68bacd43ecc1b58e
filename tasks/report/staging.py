"""An output folder replaced whole: written into a staging folder beside it, then swapped in; and what every
run's folder holds: its tables as Parquet and CSV, its figures, summary.json, report.html and explorer.html."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from tasks.report.explorer import ExplorerData, render_explorer
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


def write_tables(folder: Path, tables: Iterable[tuple[str, pd.DataFrame]]) -> None:
    """Each (stem, table) as STEM.parquet and STEM.csv in `folder`."""
    for stem, table in tables:
        table.to_parquet(folder / f"{stem}.parquet", index=False)
        table.to_csv(folder / f"{stem}.csv", index=False)


def write_pages(folder: Path, title: str, summary: dict, sections: list[Section], explorer: ExplorerData) -> Path:
    """The sections' figures (figures/NAME.png), summary.json, report.html and explorer.html in `folder`;
    returns report.html's path."""
    (folder / "figures").mkdir(exist_ok=True)
    for figure in (f for s in sections for f in s.figures):
        (folder / "figures" / f"{figure.name}.png").write_bytes(figure.png)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / "report.html").write_text(render_html(title, summary, sections))
    (folder / "explorer.html").write_text(render_explorer(explorer), encoding="utf-8")
    return folder / "report.html"
