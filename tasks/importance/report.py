"""A head-importance run's outputs: importance and pruning tables (Parquet and CSV), summary.json and
report.html, written into a staging folder and swapped in whole."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tasks.importance.pruning import IMPORTANCE_ORDER
from tasks.report import Chart, Section, plot_heads_importance, png_bytes, swapped_in, write_pages, write_tables
from tasks.research import Finding

TOP_HEADS = 10  # heads listed in the report, costliest first


def plot_pruning(pruning: pd.DataFrame) -> Chart:
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    for order, curve in pruning.groupby("order", sort=False):
        chosen = order == IMPORTANCE_ORDER
        ax.plot(100 * curve["fraction"], curve["f1"], marker="o" if chosen else ".", linewidth=2 if chosen else 1,
                color="tab:red" if chosen else "tab:gray", alpha=1 if chosen else 0.6,
                label="least important first" if chosen else ("random order" if order.endswith("1") else None))
    ax.set(xlabel="heads masked (%)", ylabel="F1", ylim=(0, max(1.0, float(pruning["f1"].max()) * 1.05)))
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return Chart("pruning", "Pruning curve: F1 as heads are masked in order of importance, and in random orders",
                 png_bytes(fig))


def importance_sections(table: pd.DataFrame, pruning: pd.DataFrame, findings: list[Finding], notes: list[str],
                        layers: int, heads: int) -> list[Section]:
    top = table.dropna(subset=["f1_drop"]).sort_values("f1_drop", ascending=False).head(TOP_HEADS)
    return [
        Section("Which heads matter", " ".join(notes), [(f"The {len(top)} costliest heads (all in importance.parquet)",
                                                         top)],
                [plot_heads_importance(table, layers, heads)], points=[f.text for f in findings]),
        Section("Pruning", "F1 after each step; the random orders are seeded.", [("Pruning curves", pruning)],
                [plot_pruning(pruning)]),
    ]


def write_importance(out: str, table: pd.DataFrame, pruning: pd.DataFrame, summary: dict,
                     sections: list[Section]) -> Path:
    """Writes every output into a staging folder beside `out`, then swaps it in whole; returns report.html."""
    with swapped_in(Path(out)) as staging:
        write_tables(staging, [("importance", table), ("pruning", pruning)])
        write_pages(staging, "Which heads matter for answering", summary, sections)
    return Path(out) / "report.html"
