"""A comparison's outputs written into a staging folder beside the output folder, then swapped in whole."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.compare.summary import CompareSummary
from tasks.compare.tables import Comparison
from tasks.report.explorer import ExplorerData, render_explorer
from tasks.report.html import render_html
from tasks.report.sections import Section
from tasks.report.staging import swapped_in


def write_compare_outputs(out: Path, comparison: Comparison, summary: CompareSummary, sections: list[Section],
                          explorer: ExplorerData) -> Path:
    """compare and layers tables (Parquet, CSV), figures, summary.json, report.html, explorer.html; returns
    report.html."""
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
        (staging / "explorer.html").write_text(render_explorer(explorer), encoding="utf-8")
    return out / "report.html"
