"""A comparison's outputs written into a staging folder beside the output folder, then swapped in whole."""

from __future__ import annotations

from pathlib import Path

from tasks.compare.summary import CompareSummary
from tasks.compare.tables import Comparison
from tasks.report import ExplorerData, Section, swapped_in, write_pages, write_tables


def write_compare_outputs(out: Path, comparison: Comparison, summary: CompareSummary, sections: list[Section],
                          explorer: ExplorerData) -> Path:
    """compare and layers tables (Parquet, CSV), figures, summary.json, report.html, explorer.html; returns
    report.html."""
    out = Path(out)
    with swapped_in(out) as staging:
        write_tables(staging, [("compare", comparison.heads), ("layers", comparison.layers)])
        write_pages(staging, "What changed in the heads", summary.to_json(), sections, explorer)
    return out / "report.html"
