"""Clustering outputs: labels.parquet, search tables, centres, figures, report.html, summary.json, artifacts."""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tasks.cluster import NOISE, ClusteringRun, cluster_sizes, nearest_to_centre  # noqa: E402
from tasks.sample import KEYS, Sample  # noqa: E402

# (feature_ids, layers, heads) -> one attention map per triple
MapSource = Callable[[list[int], list[int], list[int]], list[np.ndarray]]


@dataclass
class Figure:
    name: str
    title: str
    png: bytes


@dataclass
class Section:
    title: str
    text: str
    tables: list[tuple[str, pd.DataFrame]]
    figures: list[Figure]


def labels_frame(sample: Sample, labels: dict[str, np.ndarray]) -> pd.DataFrame:
    """The sample's keys with one label column per clustering, row for row."""
    frame = sample.rows[list(KEYS)].copy()
    for name, values in labels.items():
        frame[name] = values
    return frame


def sizes_table(labels: np.ndarray) -> pd.DataFrame:
    sizes = cluster_sizes(labels)
    return pd.DataFrame({"cluster": list(sizes), "rows": list(sizes.values()),
                         "fraction": np.array(list(sizes.values())) / len(labels)})


def per_cluster_means(rows: pd.DataFrame, labels: np.ndarray, statistics: list[str]) -> pd.DataFrame:
    """Per cluster: rows, mean layer, mean head and the mean of each per-head statistic, largest first."""
    frame = rows[["layer", "head", *statistics]].astype(float).assign(cluster=labels)
    table = frame.groupby("cluster").mean().add_prefix("mean_")
    table.insert(0, "rows", frame.groupby("cluster").size())
    return table.sort_values("rows", ascending=False, kind="stable").reset_index()


def layer_head_share(rows: pd.DataFrame, labels: np.ndarray, cluster: int, layers: int, heads: int) -> np.ndarray:
    """Fraction of the rows at each (layer, head) that fall in `cluster`, shape (layers, heads)."""
    total = np.zeros((layers, heads))
    inside = np.zeros((layers, heads))
    np.add.at(total, (rows["layer"].to_numpy(), rows["head"].to_numpy()), 1)
    chosen = labels == cluster
    np.add.at(inside, (rows["layer"].to_numpy()[chosen], rows["head"].to_numpy()[chosen]), 1)
    return np.divide(inside, total, out=np.zeros_like(inside), where=total > 0)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def plot_variance(ratio: np.ndarray) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(ratio) + 1), np.cumsum(ratio), marker=".")
    ax.set(xlabel="components", ylabel="cumulative explained variance", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    return Figure("pca_variance", "PCA explained variance", _png(fig))


def plot_k_search(table: pd.DataFrame, chosen: int) -> Figure:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, column in zip(axes, ["inertia", "mean_distance", "silhouette"]):
        ax.plot(table["k"], table[column], marker="o")
        ax.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
        ax.set(xlabel="k", title=column.replace("_", " "))
        ax.grid(alpha=0.3)
    return Figure("k_search", f"KMeans k search (chosen k = {chosen})", _png(fig))


def plot_kdistance(kth: np.ndarray, eps: float, min_samples: int) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.sort(kth))
    ax.axhline(eps, color="tab:red", linestyle="--", linewidth=1, label=f"suggested eps = {eps:.4g}")
    ax.set(xlabel="points, sorted", ylabel=f"distance to neighbour {min_samples}")
    ax.legend()
    ax.grid(alpha=0.3)
    return Figure("kdistance", "k-distance curve", _png(fig))


def plot_grid(grid: pd.DataFrame) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, column, cmap in zip(axes, ["clusters", "noise_fraction"], ["viridis", "magma"]):
        table = grid.pivot(index="min_samples", columns="eps", values=column)
        image = ax.imshow(table.to_numpy(), cmap=cmap, aspect="auto")
        ax.set_xticks(range(table.shape[1]), [f"{e:.3g}" for e in table.columns], rotation=45)
        ax.set_yticks(range(table.shape[0]), table.index)
        for (i, j), value in np.ndenumerate(table.to_numpy()):
            ax.text(j, i, f"{value:.2g}", ha="center", va="center", color="w", fontsize=8)
        ax.set(xlabel="eps", ylabel="min_samples", title=column.replace("_", " "))
        fig.colorbar(image, ax=ax)
    return Figure("dbscan_grid", "DBSCAN grid search", _png(fig))


def plot_sizes(labels: np.ndarray, name: str) -> Figure:
    table = sizes_table(labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(table)), 3))
    colours = ["tab:gray" if c == NOISE else "tab:blue" for c in table["cluster"]]
    ax.bar([("noise" if c == NOISE else str(c)) for c in table["cluster"]], table["rows"], color=colours)
    ax.set(xlabel="cluster", ylabel="rows")
    return Figure(f"{name}_sizes", f"{name}: cluster sizes", _png(fig))


def _cluster_title(cluster: int) -> str:
    return "noise / not re-clustered" if cluster == NOISE else f"cluster {cluster}"


def plot_heatmaps(rows: pd.DataFrame, labels: np.ndarray, clusters: list[int], layers: int, heads: int,
                  name: str) -> Figure:
    fig, axes = plt.subplots(1, len(clusters), figsize=(3.1 * len(clusters), 3.2), squeeze=False)
    for ax, cluster in zip(axes[0], clusters):
        image = ax.imshow(layer_head_share(rows, labels, cluster, layers, heads), vmin=0, vmax=1, cmap="viridis")
        ax.set(title=_cluster_title(cluster), xlabel="head", ylabel="layer")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="share of the head's rows")
    return Figure(f"{name}_heatmaps", f"{name}: where the largest clusters sit in the layer x head grid",
                  _png(fig))


def plot_exemplars(exemplars: dict[int, list[tuple[np.ndarray, str]]], name: str) -> Figure:
    width = max(len(v) for v in exemplars.values())
    fig, axes = plt.subplots(len(exemplars), width, figsize=(2.4 * width, 2.5 * len(exemplars)), squeeze=False)
    for axes_row, (cluster, maps) in zip(axes, exemplars.items()):
        for ax in axes_row:
            ax.axis("off")
        for ax, (attention, caption) in zip(axes_row, maps):
            ax.imshow(attention, cmap="viridis", vmin=0, vmax=max(float(np.quantile(attention, 0.99)), 1e-12))
            ax.set_title(f"{_cluster_title(cluster)}\n{caption}", fontsize=8)
    return Figure(f"{name}_exemplars", f"{name}: attention maps nearest each cluster's centre (rows are queries; "
                                       "colours saturate at each map's 99th percentile)", _png(fig))


def exemplar_maps(sample: Sample, reduced: np.ndarray, labels: np.ndarray, clusters: list[int], per_cluster: int,
                  source: MapSource) -> dict[int, list[tuple[np.ndarray, str]]]:
    """For each cluster, the recomputed maps of the rows nearest its centre, with captions."""
    nearest = nearest_to_centre(reduced, labels, per_cluster)
    chosen = {c: nearest[c] for c in clusters if c in nearest}
    picks = [(c, i) for c, rows in chosen.items() for i in rows]
    keys = sample.rows.iloc[[i for _, i in picks]]
    maps = source(keys["feature_id"].tolist(), keys["layer"].tolist(), keys["head"].tolist())
    exemplars: dict[int, list[tuple[np.ndarray, str]]] = {c: [] for c in chosen}
    triples = zip(keys["feature_id"], keys["layer"], keys["head"])
    for (cluster, _), attention, (feature, layer, head) in zip(picks, maps, triples):
        exemplars[cluster].append((attention, f"feature {feature} L{layer} H{head}"))
    return exemplars


def clustering_section(name: str, run: ClusteringRun, sample: Sample, reduced: np.ndarray, layers: int,
                       heads: int, statistics: list[str], top: int, per_cluster: int, source: MapSource) -> Section:
    labels = run.labels[name]
    sizes = cluster_sizes(labels)
    real = [c for c in sizes if c != NOISE]
    shown = real[:top] + ([NOISE] if NOISE in sizes else [])
    figures = [plot_sizes(labels, name), plot_heatmaps(sample.rows, labels, shown, layers, heads, name)]
    if per_cluster and real:
        figures.append(plot_exemplars(exemplar_maps(sample, reduced, labels, real[:top], per_cluster, source), name))
    params = ", ".join(f"{k} = {v}" for k, v in run.params[name].items())
    text = f"{len(real)} clusters, {sizes.get(NOISE, 0)} rows labelled -1. Parameters: {params}."
    return Section(name, text, [("Per cluster: rows, mean layer and head, mean per-head statistics",
                                 per_cluster_means(sample.rows, labels, statistics))], figures)


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="table")


def _data_uri(figure: Figure) -> str:
    return "data:image/png;base64," + base64.b64encode(figure.png).decode()


def render_html(title: str, summary: dict, sections: list[Section]) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>Summary</h2>",
             "<pre>" + html.escape(json.dumps(summary, indent=2)) + "</pre>"]
    for section in sections:
        parts.append(f"<h2 id='{html.escape(section.title)}'>{html.escape(section.title)}</h2>")
        parts.append(f"<p>{html.escape(section.text)}</p>")
        for figure in section.figures:
            parts.append(f"<figure><img alt='{html.escape(figure.title)}' src='{_data_uri(figure)}'>"
                         f"<figcaption>{html.escape(figure.title)}</figcaption></figure>")
        for caption, table in section.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>{_table_html(table)}")
    style = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}img{max-width:100%}"
             ".table{border-collapse:collapse;font-size:13px}.table td,.table th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}figure{margin:1em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_outputs(out: Path, sample: Sample, run: ClusteringRun, summary: dict, sections: list[Section]) -> Path:
    """Writes every output into a staging folder beside `out`, then swaps it in whole; returns report.html."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex}")
    try:
        (staging / "figures").mkdir(parents=True)
        labels_frame(sample, run.labels).to_parquet(staging / "labels.parquet", index=False)
        for stem, table in [("k_search", run.k_table), ("dbscan_grid", run.grid),
                            ("pca_variance", pd.DataFrame({"component": np.arange(1, len(run.explained_variance) + 1),
                                                           "explained_variance_ratio": run.explained_variance}))]:
            table.to_parquet(staging / f"{stem}.parquet", index=False)
            table.to_csv(staging / f"{stem}.csv", index=False)
        for name, centres in run.centres.items():
            np.save(staging / f"centres_{name}.npy", centres)
        for figure in (f for s in sections for f in s.figures):
            (staging / "figures" / f"{figure.name}.png").write_bytes(figure.png)
        (staging / "summary.json").write_text(json.dumps(summary, indent=2))
        (staging / "report.html").write_text(render_html("Attention-head clusters", summary, sections))
        previous = out.with_name(f".{out.name}.previous-{uuid.uuid4().hex}")
        if out.exists():
            out.rename(previous)
        staging.rename(out)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "report.html"


def build_sections(run: ClusteringRun, sample: Sample, reduced: np.ndarray, layers: int, heads: int,
                   statistics: list[str], top: int, per_cluster: int, min_samples: int, source: MapSource
                   ) -> list[Section]:
    """The report's sections: PCA, k search, DBSCAN eps search, then one per clustering."""
    kept = float(np.sum(run.explained_variance))
    sections = [
        Section("PCA", f"{reduced.shape[1]} components keep {kept:.1%} of the variance of the "
                       f"{sample.dim}-d embeddings; every clustering runs on them.",
                [], [plot_variance(run.explained_variance)]),
        Section("KMeans k search", f"Chosen k = {run.chosen_k}: the {run.params['kmeans']['chosen_by']}.",
                [("k search", run.k_table)], [plot_k_search(run.k_table, run.chosen_k)]),
        Section("DBSCAN eps search", f"The knee of the k-distance curve suggests eps = {run.suggested_eps:.4g}; "
                                     "the grid records every (eps, min_samples) cell.",
                [("grid search", run.grid)], [plot_kdistance(run.kth_distances, run.suggested_eps, min_samples),
                                              plot_grid(run.grid)]),
    ]
    sections += [clustering_section(name, run, sample, reduced, layers, heads, statistics, top, per_cluster, source)
                 for name in run.labels]
    return sections


def summarise(run: ClusteringRun, sample: Sample, reduced: np.ndarray, context: dict) -> dict:
    """summary.json: where the data came from, how it ran, and the shape of each clustering."""
    clusterings = {}
    for name, labels in run.labels.items():
        sizes = cluster_sizes(labels)
        clusterings[name] = {**run.params[name], "clusters": len([c for c in sizes if c != NOISE]),
                             "unlabelled": sizes.get(NOISE, 0), "largest": [n for c, n in sizes.items() if c != NOISE][:10]}
    return {**context, "rows": len(sample.rows), "features": int(sample.rows["feature_id"].nunique()),
            "embedding_dim": sample.dim, "pca_components": int(reduced.shape[1]),
            "pca_variance_kept": round(float(np.sum(run.explained_variance)), 4), "chosen_k": run.chosen_k,
            "suggested_eps": run.suggested_eps, "clusterings": clusterings}


def publish_artifacts(summary: dict, run: ClusteringRun, report: Path, sections: list[Section]) -> None:
    """The report's tables as Prefect artifacts, a markdown summary naming the files, and the report's figures
    embedded in a markdown artifact (the Prefect UI renders data-URI images)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    for name, labels in run.labels.items():
        create_table_artifact(sizes_table(labels).to_dict("records"), key=f"cluster-sizes-{name.replace('_', '-')}",
                              description=f"{name}: cluster sizes")
    create_table_artifact(run.k_table.to_dict("records"), key="k-search", description="KMeans k search")
    create_table_artifact(run.grid.to_dict("records"), key="dbscan-grid", description="DBSCAN grid search")
    figures = sorted((report.parent / "figures").glob("*.png"))
    lines = ["# Clustering report", f"Report: `{report}`", "",
             *(f"- **{name}**: {c['clusters']} clusters, {c['unlabelled']} unlabelled rows"
               for name, c in summary["clusterings"].items()),
             "", "Figures:", *(f"- `{path}`" for path in figures)]
    create_markdown_artifact("\n".join(lines), key="cluster-report", description="Clustering summary")
    gallery = ["# Clustering figures"]
    for section in sections:
        gallery += [f"## {section.title}", section.text, *(f"![{f.title}]({_data_uri(f)})" for f in section.figures)]
    create_markdown_artifact("\n\n".join(gallery), key="cluster-figures", description="The report's figures")
