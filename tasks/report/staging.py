"""An output folder replaced whole, where that loses nothing: written into a staging folder beside it, then
swapped in; and what every run's folder holds: its tables as Parquet and CSV, its figures, summary.json,
report.html and explorer.html."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from tasks.report.destination import output_folder, record_outputs
from tasks.report.explorer import ExplorerData, render_explorer
from tasks.report.html import render_html
from tasks.report.sections import Section


@contextmanager
def swapped_in(out: Path) -> Iterator[Path]:
    """A staging folder beside the folder `out` resolves to: once the block ends, it replaces that folder whole
    (the previous one removed) and outputs.json lists what it holds. Where the block fails, or the folder may not
    be replaced (see `output_folder`: checked before the block and again before the swap), the folder is left
    as it was."""
    target = output_folder(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex}")
    staging.mkdir()
    try:
        yield staging
        record_outputs(staging)
        output_folder(out)
        previous = target.with_name(f".{target.name}.previous-{uuid.uuid4().hex}")
        if target.exists():
            target.rename(previous)
        staging.rename(target)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_tables(folder: Path, tables: Iterable[tuple[str, pd.DataFrame]]) -> None:
    """Each (stem, table) as STEM.parquet and STEM.csv in `folder`."""
    for stem, table in tables:
        table.to_parquet(folder / f"{stem}.parquet", index=False)
        table.to_csv(folder / f"{stem}.csv", index=False)


def write_pages(folder: Path, title: str, summary: dict, sections: list[Section],
                explorer: ExplorerData | None = None) -> Path:
    """The sections' figures (figures/NAME.png), summary.json, report.html and, where given, explorer.html in
    `folder`; returns report.html's path."""
    (folder / "figures").mkdir(exist_ok=True)
    for figure in (f for s in sections for f in s.figures):
        (folder / "figures" / f"{figure.name}.png").write_bytes(figure.png)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / "report.html").write_text(render_html(title, summary, sections))
    if explorer is not None:
        (folder / "explorer.html").write_text(render_explorer(explorer), encoding="utf-8")
    return folder / "report.html"
