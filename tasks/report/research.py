"""The report's research sections: the findings first, then the heads grid coloured by pattern and role and by
consistency, with the tables behind them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from tasks.cluster import Clustering
from tasks.report.figures import Chart, png_bytes
from tasks.report.sections import Section
from tasks.research import PATTERNS, Study

_ROLE_SHORT = {"[CLS]": "C", "[SEP]": "S", "punctuation": "P", "previous token": "<", "next token": ">", "self": "="}
PATTERN_COLOURS = ["#4c72b0", "#dd8452", "#8172b3", "#55a868", "#c8c8c8"]


def head_grid(heads: pd.DataFrame, column: str, layers: int, n_heads: int) -> np.ndarray:
    values = np.full((layers, n_heads), np.nan)
    values[heads["layer"].to_numpy(), heads["head"].to_numpy()] = heads[column].to_numpy(np.float64)
    return values


def plot_heads_patterns(heads: pd.DataFrame, layers: int, n_heads: int) -> Chart:
    """The layer x head grid coloured by each head's most common pattern, its Clark roles written in the cell."""
    fig = Figure(figsize=(0.5 * n_heads + 2.5, 0.42 * layers + 1.2))
    ax = fig.subplots()
    codes = heads["pattern"].map({p: i for i, p in enumerate(PATTERNS)}).to_numpy(np.float64)
    grid = np.full((layers, n_heads), np.nan)
    grid[heads["layer"].to_numpy(), heads["head"].to_numpy()] = codes
    ax.imshow(grid, cmap=ListedColormap(PATTERN_COLOURS), vmin=-0.5, vmax=len(PATTERNS) - 0.5, aspect="auto")
    for row in heads.itertuples():
        marks = "".join(_ROLE_SHORT[r] for r in str(row.roles).split(", ") if r)
        if marks:
            ax.text(row.head, row.layer, marks, ha="center", va="center", fontsize=7)
    ax.set(xlabel="head", ylabel="layer", xticks=range(n_heads), yticks=range(layers))
    handles = [ax.bar(0, 0, color=c, label=p) for c, p in zip(PATTERN_COLOURS, PATTERNS)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return Chart("heads_roles", "Heads by their most common pattern (Kovaleva classes); letters: Clark roles, more "
                 "than half of the head's attention on C [CLS], S [SEP], P punctuation, < previous, > next, = self",
                 png_bytes(fig))


def plot_heads_consistency(heads: pd.DataFrame, clusterings: list[str], layers: int, n_heads: int) -> Chart:
    fig = Figure(figsize=(3.4 * len(clusterings) + 1, 0.3 * layers + 1.5))
    axes = fig.subplots(1, len(clusterings), squeeze=False)[0]
    for ax, name in zip(axes, clusterings):
        image = ax.imshow(head_grid(heads, f"consistency_{name}", layers, n_heads), vmin=0, vmax=1, cmap="viridis",
                          aspect="auto")
        ax.set(title=name, xlabel="head", ylabel="layer")
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="consistency (1 = one cluster)")
    return Chart("heads_consistency", "Head consistency per clustering: 1 minus the normalised entropy of the "
                 "head's share of each cluster", png_bytes(fig))


def plot_heads_importance(table: pd.DataFrame, layers: int, heads: int) -> Chart:
    """The layer x head grids of gradient importance and of the F1 drop when the head alone is masked."""
    fig = Figure(figsize=(0.45 * heads * 2 + 3, 0.35 * layers + 1.6))
    axes = fig.subplots(1, 2)
    for ax, column, label in ((axes[0], "importance", "gradient importance (per layer normalised)"),
                              (axes[1], "f1_drop", "F1 drop when masked alone (points)")):
        image = ax.imshow(head_grid(table, column, layers, heads), cmap="magma_r", aspect="auto")
        ax.set(title=label, xlabel="head", ylabel="layer", xticks=range(heads), yticks=range(layers))
        fig.colorbar(image, ax=ax, shrink=0.8)
    return Chart("heads_importance", "Which heads matter: gradient importance (Michel et al. 2019) and ablation",
                 png_bytes(fig))


def findings_section(study: Study, layers: int, n_heads: int) -> Section:
    """"Findings": numbered sentences, each with its number and interval, then the heads grids and tables."""
    clusterings = list(dict.fromkeys(study.head_clusters["clustering"]))
    figures = [plot_heads_consistency(study.heads, clusterings, layers, n_heads)]
    if "importance" in study.heads:
        figures.append(plot_heads_importance(study.heads, layers, n_heads))
    if "pattern" in study.heads:
        figures.insert(0, plot_heads_patterns(study.heads, layers, n_heads))
    dbscan = Clustering.DBSCAN
    shown = [c for c in ["layer", "head", "roles", "pattern", "pattern_share", f"dominant_{dbscan}",
                         f"dominant_share_{dbscan}", f"consistency_{dbscan}", f"consistency_{dbscan}_low",
                         f"consistency_{dbscan}_high", "qa_difference", "qa_q", "importance", "f1_drop"] if c in study.heads]
    tables = [("Agreement of each clustering with head, layer and pattern (NMI, ARI)", study.agreement),
              ("Small DBSCAN clusters (finding 2)", study.small_clusters),
              ("Stability (feature-bootstrap re-fits)", study.stability),
              ("Heads (all columns in heads.parquet)", study.heads[shown])]
    text = " ".join(study.notes) or "Every interval is a 95% feature-bootstrap percentile interval."
    return Section("Findings", text, tables, figures, points=[f.text for f in study.findings])
