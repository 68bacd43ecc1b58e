"""The report's sections: PCA, the k search, the DBSCAN eps search, then one per clustering with its exemplars."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tasks.cluster import Clustering, ClusteringRun, DbscanMethod, NOISE, Sample, cluster_sizes, nearest_to_centre
from tasks.extract import Exemplar
from tasks.report.figures import (
    Chart,
    plot_exemplars,
    plot_grid,
    plot_heatmaps,
    plot_k_search,
    plot_kdistance,
    plot_sizes,
    plot_variance,
)
from tasks.report.tables import per_cluster_means

# (feature_ids, layers, heads) -> one exemplar (map, tokens, question) per triple
MapSource = Callable[[list[tuple[int, int, int]]], list[Exemplar]]


@dataclass
class Section:
    title: str
    text: str
    tables: list[tuple[str, pd.DataFrame]]
    figures: list[Chart]
    points: list[str] = field(default_factory=list)  # numbered sentences, shown before the text


def skipped_notes(skipped: dict[int, str]) -> list[str]:
    """One sentence per shard left out of the run (--on-bad-shard skip), naming it and why."""
    return [f"Shard {shard} was skipped (--on-bad-shard skip): {reason}" for shard, reason in sorted(skipped.items())]


def notes_section(notes: list[str]) -> list[Section]:
    """What this report lacks and why, as the page's first section; none where it lacks nothing."""
    if not notes:
        return []
    return [Section("Left out of this report", "The run went on without these; every number below is computed "
                                               "without them.", [], [], points=notes)]


def exemplar_maps(sample: Sample, labels: np.ndarray, clusters: list[int], per_cluster: int, source: MapSource
                  ) -> dict[int, list[tuple[Exemplar, str]]]:
    """For each cluster, the recomputed exemplars of the rows nearest its centre, with captions."""
    nearest = nearest_to_centre(sample.reduced, labels, per_cluster)
    chosen = {c: nearest[c] for c in clusters if c in nearest}
    picks = [(c, i) for c, rows in chosen.items() for i in rows]
    keys = sample.rows.iloc[[i for _, i in picks]]
    maps = source(list(zip(keys["feature_id"].tolist(), keys["layer"].tolist(), keys["head"].tolist())))
    exemplars: dict[int, list[tuple[Exemplar, str]]] = {c: [] for c in chosen}
    triples = zip(keys["feature_id"], keys["layer"], keys["head"])
    for (cluster, _), attention, (feature, layer, head) in zip(picks, maps, triples):
        exemplars[cluster].append((attention, f"feature {feature} L{layer} H{head}"))
    return exemplars


def clustering_section(name: str, run: ClusteringRun, sample: Sample, layers: int, heads: int,
                       statistics: list[str], top: int, per_cluster: int, source: MapSource | None) -> Section:
    labels = run.labels[name]
    sizes = cluster_sizes(labels)
    real = [c for c in sizes if c != NOISE]
    shown = real[:top] + ([NOISE] if NOISE in sizes else [])
    figures = [plot_sizes(labels, name), plot_heatmaps(sample.rows, labels, shown, layers, heads, name)]
    if per_cluster and real and source is not None:
        figures.append(plot_exemplars(exemplar_maps(sample, labels, real[:top], per_cluster, source), name))
    params = ", ".join(f"{k} = {v}" for k, v in run.params[name].items())
    text = f"{len(real)} clusters, {sizes.get(NOISE, 0)} rows labelled -1. Parameters: {params}."
    return Section(name, text, [("Per cluster: rows, mean layer and head, mean per-head statistics",
                                 per_cluster_means(sample.rows, labels, statistics))], figures)


def _dbscan_method(params: dict) -> str:
    """How DBSCAN ran, and where it was DBSCAN++, how it agrees with exact DBSCAN."""
    if params["method"] != DbscanMethod.SAMPLED:
        library = f" ({params['implementation']})" if "implementation" in params else ""
        return f"DBSCAN ran exactly{library}."
    agreement = params["agreement_with_exact"]
    return (f"DBSCAN ran as DBSCAN++ with a seeded core sample of {params['core_sample']:,} rows (exact DBSCAN "
            f"would hold every neighbourhood). On a seeded subsample of {agreement['rows']:,} rows with "
            f"{agreement['core_sample']:,} core candidates (the same ratio), DBSCAN++ agrees with exact DBSCAN at an "
            f"adjusted Rand index of {agreement['adjusted_rand']:.3f}; noise {agreement['noise_share']['approximate']:.1%} "
            f"against {agreement['noise_share']['exact']:.1%}.")


def build_sections(run: ClusteringRun, sample: Sample, layers: int, heads: int, statistics: list[str], top: int,
                   per_cluster: int, min_samples: int, source: MapSource | None) -> list[Section]:
    """The report's sections: PCA, k search, DBSCAN eps search, then one per clustering (with `per_cluster`
    exemplar maps from `source`, none where it is None)."""
    kept = float(np.sum(run.explained_variance))
    sections = [
        Section("PCA", f"{sample.reduced.shape[1]} components keep {kept:.1%} of the variance of the "
                       f"{sample.dim}-d embeddings (fitted on {sample.fit_rows:,} seeded rows; every one of the "
                       f"{len(sample.rows):,} rows projected where it was read); every clustering runs on them.",
                [], [plot_variance(run.explained_variance)]),
        Section("KMeans k search", f"Chosen k = {run.chosen_k}: the {run.params[Clustering.KMEANS]['chosen_by']}.",
                [("k search", run.k_table)], [plot_k_search(run.k_table, run.chosen_k)]),
        Section("DBSCAN eps search", f"The knee of the k-distance curve ({len(run.kth_distances):,} seeded rows, "
                                     "each one's distance to its neighbour among all rows) suggests eps = "
                                     f"{run.suggested_eps:.4g}; the grid records every (eps, min_samples) cell and "
                                     f"the method that ran it. {_dbscan_method(run.params[Clustering.DBSCAN])}",
                [("grid search", run.grid)], [plot_kdistance(run.kth_distances, run.suggested_eps, min_samples),
                                              plot_grid(run.grid)]),
    ]
    sections += [clustering_section(name, run, sample, layers, heads, statistics, top, per_cluster, source)
                 for name in run.labels]
    return sections
