"""explorer.html for a comparison (the diff page): the heads grid coloured by any measure of change, the rows of
both datasets on the one PCA fitted on both (a `model` column 'A' / 'B', the joint cluster, the pattern), each
head's joint-cluster shares in A and in B, and the maps of the most displaced heads recomputed with both models."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import pandas as pd

from tasks.cluster import seeded_rows
from tasks.compare.alignment import Pair
from tasks.compare.paired import PairedRows
from tasks.compare.tables import Comparison
from tasks.config import CompareConfig
from tasks.extract import attention_maps_of, exemplars_unavailable
from tasks.report import ExplorerData, HEAD_FEATURES, MapSource, MapView
from tasks.research import PATTERNS, RoleRules, has_patterns, head_clusters_table, pattern_codes

MODELS = ("A", "B")
JOINT = "joint"  # the points' column of the joint KMeans cluster; 'A:joint' / 'B:joint' in the head shares
LEADING = ("displacement", "migration", "cosine_distance", "energy_distance", "cluster_shift", "changed", "migrated",
           "pattern_change", "roles_gained", "roles_lost")  # the grid's first measures; the page opens on the first


class ModelMaps(NamedTuple):
    """Where one side's attention maps are recomputed, and the model named in their captions."""

    model: str
    source: MapSource


def diff_heads(heads: pd.DataFrame) -> pd.DataFrame:
    """The comparison's per-head table for the grid: its measures of change first, and pattern_change ('a -> b'
    where the most common pattern differs, else empty) where the patterns were measured."""
    table = heads.copy()
    if "pattern_a" in table:
        moved = table["pattern_a"] != table["pattern_b"]
        table["pattern_change"] = np.where(moved, table["pattern_a"] + " -> " + table["pattern_b"], "")
    first = ["layer", "head", *(c for c in LEADING if c in table)]
    return table[first + [c for c in table.columns if c not in first]]


def _points(rows: PairedRows, comparison: Comparison, chosen: np.ndarray, rules: RoleRules) -> pd.DataFrame:
    """The chosen positions' rows in A, then the same rows in B."""
    n_heads, both = comparison.n_heads, np.concatenate([chosen, chosen])
    xy = np.vstack([rows.reduced_a[chosen, :2], rows.reduced_b[chosen, :2]])
    points = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "feature_id": rows.feature_id[both].astype(np.int64)})
    questions = rows.questions.set_index("feature_id")["question_id"]
    points["question_id"] = points["feature_id"].map(questions).fillna("").to_numpy()
    points["layer"], points["head"] = rows.slot[both] // n_heads, rows.slot[both] % n_heads
    points["model"] = np.repeat(MODELS, len(chosen))
    points[JOINT] = np.concatenate([comparison.labels_a[chosen], comparison.labels_b[chosen]]).astype(np.int64)
    if has_patterns(list(rows.stats_a.columns)):
        codes = [pattern_codes(stats.iloc[chosen].reset_index(drop=True), rules) for stats in (rows.stats_a, rows.stats_b)]
        points["pattern"] = np.asarray(PATTERNS, dtype=object)[np.concatenate(codes)]
    return points


def _head_clusters(rows: PairedRows, comparison: Comparison) -> pd.DataFrame:
    keys = pd.DataFrame({"layer": rows.slot // comparison.n_heads, "head": rows.slot % comparison.n_heads})
    labels = {f"{MODELS[0]}:{JOINT}": comparison.labels_a, f"{MODELS[1]}:{JOINT}": comparison.labels_b}
    return head_clusters_table(keys, labels, comparison.n_layers, comparison.n_heads)


def _maps(rows: PairedRows, comparison: Comparison, sides: tuple[ModelMaps, ModelMaps], top: int, seed: int
          ) -> list[MapView]:
    """Both models' maps of the `top` most displaced heads on HEAD_FEATURES seeded features."""
    heads = comparison.heads.nlargest(top, "displacement")
    features = np.unique(rows.feature_id)
    picked = np.random.default_rng(seed).choice(features, size=min(HEAD_FEATURES, len(features)), replace=False)
    keys = [(int(f), int(h.layer), int(h.head)) for h in heads.itertuples() for f in sorted(picked)]
    at = [int(np.flatnonzero((rows.feature_id == f) & (rows.slot == layer * comparison.n_heads + head))[0])
          for f, layer, head in keys]
    maps = []
    for name, labels, side in zip(MODELS, (comparison.labels_a, comparison.labels_b), sides):
        for (f, layer, head), row, exemplar in zip(keys, at, side.source(keys)):
            maps.append(MapView(f, layer, head, exemplar.attention, list(exemplar.tokens), exemplar.question,
                                {f"{name}:{JOINT}": int(labels[row])}, f"{name}: {side.model}"))
    return maps


def diff_explorer_data(rows: PairedRows, comparison: Comparison, *, points: int = 100_000, seed: int = 0,
                       rules: RoleRules = RoleRules(), maps: tuple[ModelMaps, ModelMaps] | None = None,
                       map_heads: int = 3, title: str = "What changed in the heads") -> ExplorerData:
    """The diff page's data: at most `points` rows (a seeded choice of paired positions, each drawn in A and in
    B); with `maps`, both models' maps of the `map_heads` most displaced heads."""
    chosen = seeded_rows(len(rows), max(1, points // 2), seed)
    shown = "every paired row" if len(chosen) == len(rows) else \
        f"a seeded sample of {len(chosen):,} of {len(rows):,} paired rows"
    note = f"Projection: the first two components of the one PCA fitted on rows of both datasets; {shown}, " \
           "each in A and in B."
    views = _maps(rows, comparison, maps, map_heads, seed) if maps is not None and map_heads > 0 else []
    return ExplorerData(title, comparison.n_layers, comparison.n_heads, diff_heads(comparison.heads),
                        _points(rows, comparison, chosen, rules), note, _head_clusters(rows, comparison), views)


def maps_unavailable(config: CompareConfig, pair: Pair) -> str | None:
    """Why this version cannot recompute either dataset's maps, or None."""
    return next(filter(None, (exemplars_unavailable(record, location.url, config.credentials)
                              for record, location in ((pair.record_a, pair.a), (pair.record_b, pair.b)))), None)


def diff_explorer(config: CompareConfig, pair: Pair, rows: PairedRows, comparison: Comparison, no_maps: str | None
                  ) -> ExplorerData:
    """explorer.html's data; the maps recomputed with each dataset's own model and source, none where `no_maps`
    says why not."""
    sides = tuple(ModelMaps(record.model.model, functools.partial(attention_maps_of, record, location.url,
                                                                  config.credentials))
                  for record, location in ((pair.record_a, pair.a), (pair.record_b, pair.b)))
    return diff_explorer_data(rows, comparison, points=config.explorer_points, seed=config.seed, rules=config.roles,
                              maps=None if no_maps else sides, map_heads=config.explorer_maps,
                              title=f"What changed in the heads: {pair.record_b.model.model} against "
                                    f"{pair.record_a.model.model}")
