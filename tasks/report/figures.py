"""The report's figures, drawn with matplotlib's object API (no pyplot state, no backend switch) as PNG bytes."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tasks.cluster import NOISE
from tasks.extract import Exemplar
from tasks.report.tables import sizes_table
from tasks.research import cluster_share_grid

TOKENS_SHOWN = 64  # token labels on an exemplar's axes up to this many tokens
# Text properties of every text that comes from data (questions, tokens, statistic names): a `$` in it is a
# dollar sign, never TeX (matplotlib would render `$...$` as maths, and fail the figure on malformed TeX).
PLAIN = {"parse_math": False}


@dataclass
class Chart:
    """A drawn figure: its file stem, its caption and its PNG."""

    name: str
    title: str
    png: bytes


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def plot_variance(ratio: np.ndarray) -> Chart:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(np.arange(1, len(ratio) + 1), np.cumsum(ratio), marker=".")
    ax.set(xlabel="components", ylabel="cumulative explained variance", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    return Chart("pca_variance", "PCA explained variance", png_bytes(fig))


def plot_k_search(table: pd.DataFrame, chosen: int) -> Chart:
    fig = Figure(figsize=(12, 3.2))
    axes = fig.subplots(1, 3)
    for ax, column in zip(axes, ["inertia", "mean_distance", "silhouette"]):
        ax.plot(table["k"], table[column], marker="o")
        ax.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
        ax.set(xlabel="k", title=column.replace("_", " "))
        ax.grid(alpha=0.3)
    return Chart("k_search", f"KMeans k search (chosen k = {chosen})", png_bytes(fig))


def plot_kdistance(kth: np.ndarray, eps: float, min_samples: int) -> Chart:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(np.sort(kth))
    ax.axhline(eps, color="tab:red", linestyle="--", linewidth=1, label=f"suggested eps = {eps:.4g}")
    ax.set(xlabel="points, sorted", ylabel=f"distance to neighbour {min_samples}")
    ax.legend()
    ax.grid(alpha=0.3)
    return Chart("kdistance", "k-distance curve", png_bytes(fig))


def plot_grid(grid: pd.DataFrame) -> Chart:
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 2)
    for ax, column, cmap in zip(axes, ["clusters", "noise_fraction"], ["viridis", "magma"]):
        table = grid.pivot(index="min_samples", columns="eps", values=column)
        image = ax.imshow(table.to_numpy(), cmap=cmap, aspect="auto")
        ax.set_xticks(range(table.shape[1]), [f"{e:.3g}" for e in table.columns], rotation=45)
        ax.set_yticks(range(table.shape[0]), table.index)
        for (i, j), value in np.ndenumerate(table.to_numpy()):
            ax.text(j, i, f"{value:.2g}", ha="center", va="center", color="w", fontsize=8)
        ax.set(xlabel="eps", ylabel="min_samples", title=column.replace("_", " "))
        fig.colorbar(image, ax=ax)
    return Chart("dbscan_grid", "DBSCAN grid search", png_bytes(fig))


def plot_sizes(labels: np.ndarray, name: str) -> Chart:
    table = sizes_table(labels)
    fig = Figure(figsize=(max(4, 0.35 * len(table)), 3))
    ax = fig.subplots()
    colours = ["tab:gray" if c == NOISE else "tab:blue" for c in table["cluster"]]
    ax.bar([("noise" if c == NOISE else str(c)) for c in table["cluster"]], table["rows"], color=colours)
    ax.set(xlabel="cluster", ylabel="rows")
    return Chart(f"{name}_sizes", f"{name}: cluster sizes", png_bytes(fig))


def _cluster_title(cluster: int) -> str:
    return "noise / not re-clustered" if cluster == NOISE else f"cluster {cluster}"


def plot_heatmaps(rows: pd.DataFrame, labels: np.ndarray, clusters: list[int], layers: int, heads: int,
                  name: str) -> Chart:
    fig = Figure(figsize=(3.1 * len(clusters), 3.2))
    axes = fig.subplots(1, len(clusters), squeeze=False)
    for ax, cluster in zip(axes[0], clusters):
        image = ax.imshow(cluster_share_grid(rows, labels, cluster, layers, heads), vmin=0, vmax=1, cmap="viridis")
        ax.set(title=_cluster_title(cluster), xlabel="head", ylabel="layer")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="share of the head's rows")
    return Chart(f"{name}_heatmaps", f"{name}: where the largest clusters sit in the layer x head grid",
                  png_bytes(fig))


def plot_exemplars(exemplars: dict[int, list[tuple[Exemplar, str]]], name: str) -> Chart:
    """Each cluster's exemplar maps over the feature's real tokens only, the tokens on the axes where at most
    TOKENS_SHOWN fit, the question in the caption."""
    width = max(len(v) for v in exemplars.values())
    fig = Figure(figsize=(3.2 * width, 3.6 * len(exemplars)))
    axes = fig.subplots(len(exemplars), width, squeeze=False)
    for axes_row, (cluster, maps) in zip(axes, exemplars.items()):
        for ax in axes_row:
            ax.axis("off")
        for ax, (exemplar, caption) in zip(axes_row, maps):
            attention = exemplar.attention
            ax.imshow(attention, cmap="viridis", vmin=0, vmax=max(float(np.quantile(attention, 0.99)), 1e-12))
            if len(exemplar.tokens) <= TOKENS_SHOWN:
                ax.axis("on")
                ticks = range(len(exemplar.tokens))
                ax.set_xticks(ticks, exemplar.tokens, rotation=90, fontsize=4, **PLAIN)
                ax.set_yticks(ticks, exemplar.tokens, fontsize=4, **PLAIN)
            question = textwrap.shorten(exemplar.question, 60, placeholder="...")
            ax.set_title(f"{_cluster_title(cluster)}\n{caption}, {len(exemplar.tokens)} tokens\nQ: {question}",
                         fontsize=7, **PLAIN)
    return Chart(f"{name}_exemplars", f"{name}: attention maps nearest each cluster's centre, over the feature's "
                                       "real tokens (rows are queries; colours saturate at each map's 99th "
                                       "percentile)", png_bytes(fig))
