"""The comparison's report sections: the findings, layer x head grids of every measure of change (changed heads
marked), the measures by layer with their intervals, and the tables behind them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tasks.compare.tables import Comparison
from tasks.config import CompareConfig
from tasks.report import Chart, PLAIN, Section, head_grid, png_bytes
from tasks.research import Finding

SHIFT_MEASURES = {"cosine_distance": "mean-embedding cosine distance", "energy_distance": "energy distance (PCA)",
                  "displacement": "paired displacement (PCA)", "migration": "rows changing cluster",
                  "cluster_shift": "cluster-share shift", "pattern_shift": "pattern-share shift"}
MARKS = {"energy_distance": "changed", "migration": "migrated", "cluster_shift": "migrated"}
HEADS_SHOWN = 20  # rows of the report's table of the most changed heads


def plot_grids(heads: pd.DataFrame, measures: dict[str, str], n_layers: int, n_heads: int, name: str, title: str,
               diverging: bool = False) -> Chart:
    """One layer x head panel per measure; heads flagged by the measure's test marked with a white dot."""
    columns = [c for c in measures if c in heads]
    width = min(3, len(columns))
    rows = -(-len(columns) // width)
    fig = Figure(figsize=(width * (0.32 * n_heads + 2), rows * (0.3 * n_layers + 1.4)))
    axes = fig.subplots(rows, width, squeeze=False).ravel()
    for ax in axes[len(columns):]:
        ax.axis("off")
    for ax, column in zip(axes, columns):
        grid = head_grid(heads, column, n_layers, n_heads)
        bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
        options = dict(cmap="RdBu_r", vmin=-bound, vmax=bound) if diverging else dict(cmap="viridis")
        image = ax.imshow(grid, aspect="auto", **options)
        if column in MARKS:
            flagged = heads[heads[MARKS[column]]]
            ax.scatter(flagged["head"], flagged["layer"], s=12, c="white", edgecolors="black", linewidths=0.5)
        ax.set(xlabel="head", ylabel="layer")
        ax.set_title(measures[column], **PLAIN)  # statistic names come from the datasets' records
        fig.colorbar(image, ax=ax, shrink=0.8)
    return Chart(name, title, png_bytes(fig))


def plot_layers(layers: pd.DataFrame, columns: list[str]) -> Chart:
    """Each measure's mean by layer with its 95% feature-bootstrap band."""
    fig = Figure(figsize=(4 * len(columns), 3.2))
    for ax, column in zip(fig.subplots(1, len(columns), squeeze=False)[0], columns):
        ax.plot(layers["layer"], layers[column], marker="o")
        ax.fill_between(layers["layer"], layers[f"{column}_low"], layers[f"{column}_high"], alpha=0.3)
        ax.set(xlabel="layer", title=column.replace("_", " "))
        ax.grid(alpha=0.3)
    return Chart("layers", "Mean change by layer (bands: 95% feature-bootstrap intervals)", png_bytes(fig))


def compare_sections(comparison: Comparison, findings: list[Finding], statistics: list[str], cfg: CompareConfig
                     ) -> list[Section]:
    heads, layers = comparison.heads, comparison.layers
    n_layers, n_heads = comparison.n_layers, comparison.n_heads
    deltas = {f"delta_{s}": f"{s}: B minus A" for s in statistics}
    shown = [c for c in ["layer", "head", "rows", "cosine_distance", "energy_distance", "energy_q", "displacement",
                         "migration", "cluster_shift_q", "roles_a", "roles_b", "pattern_a", "pattern_b"] if c in heads]
    most = heads.sort_values("energy_distance", ascending=False).head(HEADS_SHOWN)
    layer_columns = [c for c in layers if not c.endswith(("_low", "_high")) and not c.startswith("delta_")]
    return [
        Section("Findings", "Every interval is a 95% feature-bootstrap percentile interval; A is the reference, B the "
                            "dataset compared with it.", [],
                [plot_grids(heads, SHIFT_MEASURES, n_layers, n_heads, "shift", "How far each head moved: dots mark "
                            "heads whose energy distance (or cluster shares) changed beyond the swap permutations")],
                points=[f.text for f in findings]),
        Section("Per-map statistics", "Mean B minus A of each statistic per head (red: higher in B).", [],
                [plot_grids(heads, deltas, n_layers, n_heads, "statistics", "Change of each per-map statistic",
                            diverging=True)] if deltas else []),
        Section("Layers", "The measures by layer; a layer's mean counts every paired row of its heads once.",
                [("Layers (all columns in layers.parquet)", layers[layer_columns])],
                [plot_layers(layers, ["displacement", "migration"])]),
        Section("Heads", f"The {HEADS_SHOWN} heads with the largest energy distance. Energy distance on at most "
                         f"{cfg.distance_rows} seeded features per head, {cfg.intervals.permutations} permutations "
                         f"swapping A and B within features; joint KMeans with k = {cfg.k}.",
                [("Most changed heads (all columns in compare.parquet)", most[shown])], []),
    ]
