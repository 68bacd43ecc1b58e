"""explorer.html: one static page (no server, no network) to explore the heads, the clusters and the rows.

The page has three linked views: the layer x head grid coloured by any column of a per-head table, a WebGL
scatter of a sample of rows coloured by any categorical column of a points table, and a panel for the selected
head or cluster (shares, roles, statistics, exemplar attention maps with their tokens and texts).

Build it from a clustering run with `explorer_data(...)`, then `render_explorer(data)`. Nothing in the page is
specific to one run: a comparison of two datasets builds a diff page by filling `ExplorerData` itself:

- `heads_table`: one row per (layer, head) of the measures to compare (a shift, `role_a`, `role_b`, a changed
  role as a string...); every numeric column is offered on a colour scale, every string or `categorical` column
  with categorical colours;
- `points`: the rows of both runs stacked, x and y from one projection fitted on both, with a `model` column
  ('A' / 'B') beside layer, head and the clusterings: every non-float column is a colour option;
- `head_clusters` (optional): `clustering` names such as 'A:kmeans' and 'B:kmeans' keep both runs' shares apart;
- `maps`: `MapView`s of both models with `caption` naming the model.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from tasks.cluster import NOISE, cluster_sizes, nearest_to_centre, seeded_rows
from tasks.report.projection import Method, project
from tasks.report.sections import MapSource
from tasks.research import PATTERNS, RoleRules, has_patterns, pattern_codes

MAP_CELLS = 64  # an exemplar map longer than this many tokens is averaged in blocks down to this many cells a side
HEAD_FEATURES = 2  # features whose maps are kept for every head, so that heads can be compared on the same input
HOVER_ONLY = ("x", "y", "feature_id", "question_id")  # point columns shown on hover, never colour options


@dataclass(frozen=True)
class MapView:
    """One attention map for the page, with its feature's tokens and question."""

    feature_id: int
    layer: int
    head: int
    attention: np.ndarray  # (tokens, tokens), rows are queries
    tokens: list[str]
    question: str
    labels: dict[str, int] = field(default_factory=dict)  # the row's cluster in each clustering
    caption: str = ""


@dataclass
class ExplorerData:
    """What the page shows; see the module's docstring for a diff page."""

    title: str
    layers: int
    heads: int
    heads_table: pd.DataFrame  # layer, head + the grid's measures
    points: pd.DataFrame  # x, y, feature_id, question_id, layer, head + categorical colour columns
    projection: str  # how x and y were made
    head_clusters: pd.DataFrame | None = None  # layer, head, clustering, cluster, rows, share
    maps: list[MapView] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)  # numeric heads_table columns to colour as categories
    notes: list[str] = field(default_factory=list)
    head_map: str | None = None  # how heads_table's map_x and map_y were made; None: no map of the heads

    def colour_options(self) -> list[str]:
        """The points' columns the projection can be coloured by: every non-float column but the keys."""
        return [c for c in self.points.columns
                if c not in HOVER_ONLY and not pd.api.types.is_float_dtype(self.points[c])]


def _column_kind(frame: pd.DataFrame, column: str, categorical: list[str]) -> str:
    numeric = pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
    return "number" if numeric and column not in categorical else "category"


def _table_json(frame: pd.DataFrame, categorical: list[str]) -> dict:
    """Columns as lists (NaN as null), with each column's kind: 'number' or 'category'."""
    kinds = {c: _column_kind(frame, c, categorical) for c in frame.columns}
    columns = {}
    for column in frame.columns:
        values = frame[column]
        if kinds[column] == "number":
            numbers = values.to_numpy(np.float64)
            columns[column] = [None if not np.isfinite(v) else (int(v) if v == int(v) else float(v)) for v in numbers]
        else:
            columns[column] = [None if pd.isna(v) else str(v) for v in values]
    return {"columns": columns, "kinds": kinds}


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def _codes_json(values: pd.Series) -> dict:
    """A column dictionary-encoded: its distinct values (sorted) and each row's index into them, as the smallest
    unsigned integer type that holds them, base64."""
    distinct, codes = np.unique(values.to_numpy(), return_inverse=True)
    dtype = np.uint8 if len(distinct) <= 256 else np.uint16 if len(distinct) <= 65536 else np.uint32
    return {"values": [v.item() if hasattr(v, "item") else v for v in distinct], "type": np.dtype(dtype).name,
            "codes": _b64(codes.astype(dtype))}


def _points_json(points: pd.DataFrame) -> dict:
    columns = {c: _codes_json(points[c]) for c in points.columns if c not in ("x", "y")}
    return {"count": len(points), "xy": _b64(points[["x", "y"]].to_numpy(np.float32)), "columns": columns}


def downsample(attention: np.ndarray, cells: int = MAP_CELLS) -> np.ndarray:
    """The map averaged over blocks of tokens, at most `cells` a side; cell i covers tokens
    floor(i * n / cells) to floor((i + 1) * n / cells) - 1 (the page shows those tokens on hover)."""
    n = attention.shape[0]
    if n <= cells:
        return attention.astype(np.float64)
    edges = (np.arange(cells + 1) * n) // cells
    sums = np.add.reduceat(np.add.reduceat(attention.astype(np.float64), edges[:-1], axis=0), edges[:-1], axis=1)
    sizes = np.diff(edges)
    return sums / np.outer(sizes, sizes)


def _map_json(view: MapView) -> dict:
    small = downsample(view.attention)
    peak = float(small.max()) or 1.0
    return {"feature": view.feature_id, "layer": view.layer, "head": view.head, "tokens": len(view.tokens),
            "cells": small.shape[0], "peak": peak, "data": _b64(np.round(small / peak * 255).astype(np.uint8)),
            "labels": view.labels, "caption": view.caption}


def page_json(data: ExplorerData) -> dict:
    """Everything the page's script reads, JSON-ready; each feature's tokens and question once."""
    features = {str(m.feature_id): {"tokens": m.tokens, "question": m.question} for m in data.maps}
    head_clusters = None if data.head_clusters is None else _table_json(data.head_clusters, [])
    return {"title": data.title, "layers": data.layers, "heads": data.heads, "projection": data.projection,
            "notes": data.notes, "heads_table": _table_json(data.heads_table, data.categorical),
            "head_clusters": head_clusters, "points": _points_json(data.points),
            "colour_options": data.colour_options(), "maps": [_map_json(m) for m in data.maps],
            "head_map": data.head_map,
            "features": features}


def _asset(name: str) -> str:
    return resources.files("tasks.report").joinpath("assets", name).read_text(encoding="utf-8")


def render_explorer(data: ExplorerData) -> str:
    """The page: the script and style inlined, the data embedded as JSON."""
    payload = json.dumps(page_json(data), separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(data.title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_asset('explorer.css')}"
            f"</style></head><body><script type='application/json' id='explorer-data'>{payload}</script>"
            f"<script>{_asset('explorer.js')}</script></body></html>")


def _points(rows: pd.DataFrame, reduced: np.ndarray, labels: dict[str, np.ndarray], questions: pd.DataFrame,
            rules: RoleRules, cap: int, seed: int, method: Method) -> tuple[pd.DataFrame, str]:
    chosen = seeded_rows(len(rows), cap, seed)
    picked = rows.iloc[chosen].reset_index(drop=True)
    projection = project(reduced[chosen], seed, method)
    points = pd.DataFrame({"x": projection.xy[:, 0], "y": projection.xy[:, 1],
                           "feature_id": picked["feature_id"].to_numpy(np.int64)})
    points["question_id"] = points[["feature_id"]].merge(questions, on="feature_id", how="left")["question_id"] \
        .fillna("").to_numpy()
    points["layer"] = picked["layer"].to_numpy(np.int64)
    points["head"] = picked["head"].to_numpy(np.int64)
    for name, values in labels.items():
        points[name] = values[chosen].astype(np.int64)
    if has_patterns(list(rows.columns)):
        points["pattern"] = np.asarray(PATTERNS, dtype=object)[pattern_codes(picked, rules)]
    shown = "every row" if len(chosen) == len(rows) else f"a seeded sample of {len(chosen):,} of {len(rows):,} rows"
    return points, f"Projection: {projection.note}; {shown}."


def _exemplar_rows(rows: pd.DataFrame, reduced: np.ndarray, labels: dict[str, np.ndarray], per_cluster: int,
                   top: int, seed: int) -> list[int]:
    """Rows whose maps the page shows: for each clustering, the `per_cluster` rows nearest the centre of each of
    its `top` largest clusters; and every head's rows on HEAD_FEATURES seeded features."""
    if per_cluster == 0:
        return []
    chosen: dict[int, None] = {}
    for values in labels.values():
        nearest = nearest_to_centre(reduced, values, per_cluster)
        for cluster in [c for c in cluster_sizes(values) if c != NOISE][:top]:
            chosen.update(dict.fromkeys(nearest[cluster].tolist()))
    features = rows["feature_id"].unique()
    picked = np.random.default_rng(seed).choice(features, size=min(HEAD_FEATURES, len(features)), replace=False)
    chosen.update(dict.fromkeys(np.flatnonzero(rows["feature_id"].isin(picked).to_numpy()).tolist()))
    return list(chosen)


def explorer_data(rows: pd.DataFrame, reduced: np.ndarray, labels: dict[str, np.ndarray], heads_table: pd.DataFrame,
                  head_clusters: pd.DataFrame, questions: pd.DataFrame, layers: int, heads: int,
                  source: MapSource | None, *, points: int = 100_000, per_cluster: int = 3, top_clusters: int = 6,
                  seed: int = 0, rules: RoleRules = RoleRules(), method: Method = "auto",
                  title: str = "Attention-head explorer", head_map: str | None = None) -> ExplorerData:
    """The page's data from a clustering run: the sample's `rows` (feature_id, layer, head, statistics), their
    PCA projection `reduced`, each clustering's `labels`, the heads tables, `questions` (feature_id ->
    question_id); at most `points` rows (seeded choice) projected; the exemplar maps recomputed by `source`
    (none where it is None or `per_cluster` is 0); `head_map`: how the heads table's map_x and map_y were made,
    where it has them (the page then draws the map of the heads)."""
    table, notes = _points(rows, reduced, labels, questions, rules, points, seed, method)
    picks = _exemplar_rows(rows, reduced, labels, per_cluster, top_clusters, seed) if source is not None else []
    keys = rows.iloc[picks]
    triples = list(zip(*(keys[c].astype(int).tolist() for c in ("feature_id", "layer", "head"))))
    maps = [MapView(f, layer, head, exemplar.attention, list(exemplar.tokens), exemplar.question,
                    {name: int(values[i]) for name, values in labels.items()})
            for i, (f, layer, head), exemplar in zip(picks, triples, source(triples) if triples else [])]
    dominant = [c for c in heads_table.columns if c.startswith("dominant_") and not c.startswith("dominant_share")]
    return ExplorerData(title, layers, heads, heads_table, table, notes, head_clusters, maps, dominant, head_map=head_map)
