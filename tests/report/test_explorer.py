"""explorer.html: its data builder on hand-made rows, and the page written by a real tiny run (extraction with the
seeded random BERT, clustering, research layer) driven in Debian's headless chromium through Playwright."""

from __future__ import annotations

import base64
import io
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from pages import decoded_points, page_data
from tiny import TINY

from tasks.cluster.density import seeded_rows
from tasks.config import ClusterConfig, ExtractConfig
from tasks.extract.exemplars import attention_maps_of
from tasks.report.explorer import HEAD_FEATURES, ExplorerData, downsample, explorer_data, page_json, render_explorer
from tasks.report.projection import project
from tasks.research.roles import PATTERNS, RoleRules, pattern_codes
from tasks.storage.dataset import dataset_record
from tasks.storage.location import Location

POINTS = 600  # fewer than the run's rows: the page gets a seeded subsample


def hand_rows(n_features: int = 40, layers: int = 2, heads: int = 3, seed: int = 0):
    """Rows of every (feature, layer, head) with the role statistics, a 5-d projection and two labellings."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(n_features), np.arange(layers), np.arange(heads), indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    stats = ["cls_mass", "sep_mass", "punct_mass", "prev_mass", "diag_mass", "next_mass", "segment_focus"]
    rows = pd.DataFrame(grid, columns=["feature_id", "layer", "head"]).assign(
        **{s: rng.dirichlet(np.ones(len(stats)), len(grid))[:, i] for i, s in enumerate(stats)})
    reduced = rng.normal(size=(len(rows), 5)) + grid[:, 1:2] * 4
    labels = {"kmeans": grid[:, 1].copy(), "dbscan": np.where(rng.random(len(rows)) < 0.1, -1, grid[:, 2])}
    questions = pd.DataFrame({"feature_id": np.arange(n_features), "question_id": [f"q{f}" for f in range(n_features)]})
    heads_table = pd.DataFrame({"layer": np.repeat(np.arange(layers), heads), "head": np.tile(np.arange(heads), layers),
                                "dominant_kmeans": np.repeat(np.arange(layers), heads), "consistency_kmeans": 1.0})
    return rows, reduced, labels, questions, heads_table


def test_points_are_a_seeded_capped_subsample_on_the_pca_plane(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # umap-learn absent, as without the `umap` extra
    rows, reduced, labels, questions, heads = hand_rows()
    build = dict(points=100, per_cluster=0, seed=3)
    data = explorer_data(rows, reduced, labels, heads, None, questions, 2, 3, None, **build)
    again = explorer_data(rows, reduced, labels, heads, None, questions, 2, 3, None, **build)
    other = explorer_data(rows, reduced, labels, heads, None, questions, 2, 3, None, **{**build, "seed": 4})
    chosen = seeded_rows(len(rows), 100, 3)
    assert len(data.points) == 100 == len(set(chosen)) and (np.diff(chosen) > 0).all()
    pd.testing.assert_frame_equal(data.points, again.points)
    assert not data.points["feature_id"].equals(other.points["feature_id"])
    np.testing.assert_array_equal(data.points[["x", "y"]].to_numpy(), reduced[chosen, :2].astype(np.float32))
    picked = rows.iloc[chosen].reset_index(drop=True)
    assert (data.points["question_id"] == "q" + picked["feature_id"].astype(str)).all()
    assert (data.points["dbscan"].to_numpy() == labels["dbscan"][chosen]).all()
    assert (data.points["pattern"] == np.asarray(PATTERNS)[pattern_codes(picked, RoleRules())]).all()
    assert data.colour_options() == ["layer", "head", "kmeans", "dbscan", "pattern"]
    assert "the first two PCA components (umap-learn is not installed)" in data.projection
    assert "a seeded sample of 100 of 240 rows" in data.projection and data.maps == []
    assert len(explorer_data(rows, reduced, labels, heads, None, questions, 2, 3, None, points=10**6).points) == 240


def test_umap_is_asked_for_by_name_or_used_where_installed(monkeypatch):
    reduced = np.random.default_rng(0).normal(size=(60, 4))
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ImportError, match=r"squad-attention-atlas\[umap\]"):
        project(reduced, 0, "umap")
    monkeypatch.undo()
    if not hasattr(pytest.importorskip("umap", reason="umap-learn (the `umap` extra) is not installed"), "UMAP"):
        pytest.skip("the importable `umap` is not umap-learn")
    first, second = project(reduced, 0), project(reduced, 0)
    assert first.method == "umap" and first.xy.shape == (60, 2) and np.isfinite(first.xy).all()
    np.testing.assert_array_equal(first.xy, second.xy)
    assert project(reduced, 0, "pca").method == "pca"


def test_maps_are_averaged_in_blocks_down_to_the_page_size():
    attention = np.random.default_rng(1).random((130, 130))
    small = downsample(attention, 64)  # cells of 2 or 3 tokens: edges (i * 130) // 64
    edges = (np.arange(65) * 130) // 64
    assert small.shape == (64, 64)
    assert small[5, 9] == pytest.approx(attention[edges[5]:edges[6], edges[9]:edges[10]].mean())
    assert downsample(attention[:40, :40], 64).shape == (40, 40)


def test_a_diff_page_takes_any_per_head_table_and_categorical_point_columns(tmp_path):
    """What a comparison run builds: both runs' points with a 'model' column, a per-head table of differences."""
    rows, reduced, labels, questions, _ = hand_rows()
    points = pd.DataFrame({"x": reduced[:, 0], "y": reduced[:, 1], "feature_id": rows["feature_id"],
                           "question_id": "q", "layer": rows["layer"], "head": rows["head"],
                           "model": np.where(np.arange(len(rows)) % 2, "B", "A")})
    heads = pd.DataFrame({"layer": [0, 0, 0, 1, 1, 1], "head": [0, 1, 2] * 2, "shift": [0.1, np.nan, 0.3, 0, 1, 2],
                          "role_change": ["", "[CLS] -> [SEP]", "", "", "", "self -> </script>"]})
    data = ExplorerData("A against B", 2, 3, heads, points, "Projection: both runs on one PCA.")
    assert data.colour_options() == ["layer", "head", "model"]
    payload = page_json(data)
    assert payload["heads_table"]["kinds"] == {"layer": "number", "head": "number", "shift": "number",
                                               "role_change": "category"}
    assert payload["heads_table"]["columns"]["shift"][1] is None and payload["head_clusters"] is None
    page = tmp_path / "diff.html"
    page.write_text(render_explorer(data))
    assert page.read_text().count("</script>") == 2, "the data cannot close its script element"
    decoded = decoded_points(page_data(page))
    assert (decoded["model"] == points["model"]).all() and (decoded["layer"] == points["layer"]).all()


# ---- the page of a real run, in a real browser ----

@pytest.fixture(scope="module")
def run(tmp_path_factory, prefect_server):
    """A tiny extraction, clustered with exemplars: the explorer.html the cluster flow writes."""
    from flows.full import full

    root = tmp_path_factory.mktemp("explorer")
    extraction = ExtractConfig(dest=str(root / "dataset"), **TINY)
    clustering = ClusterConfig(out=str(root / "clusters"), pca_components=8, k_max=5, exemplars=2, top_clusters=3,
                               n_workers=2, backend="cpu", min_samples_grid=[5], bootstrap=20, permutations=100,
                               stability_resamples=2, explorer_points=POINTS)
    result = full(extraction, clustering)
    out = Path(result["report"]).parent
    return {"out": out, "page": out / "explorer.html", "data": page_data(out / "explorer.html"),
            "dataset": result["extraction"]["dest"], "rows": result["extraction"]["rows"]}


def non_white(png: bytes) -> int:
    pixels = imread(io.BytesIO(png))[..., :3]
    return int((pixels < 0.95).any(axis=-1).sum())


def download(tab, selector: str) -> bytes:
    with tab.expect_download() as started:
        tab.click(selector)
    return Path(started.value.path()).read_bytes()


def test_the_run_writes_the_page_beside_the_report_with_its_data(run):
    data = run["data"]
    heads = pd.read_parquet(run["out"] / "heads.parquet")
    assert data["points"]["count"] == POINTS < run["rows"]
    assert set(data["heads_table"]["columns"]) == set(heads.columns)
    assert data["colour_options"][:5] == ["layer", "head", "kmeans", "dbscan", "kmeans_r1"]
    assert "pattern" in data["colour_options"]
    labels = pd.read_parquet(run["out"] / "labels.parquet")
    points = decoded_points(data).merge(labels, on=["feature_id", "layer", "head"], suffixes=("", "_labels"))
    assert len(points) == POINTS and (points["kmeans"] == points["kmeans_labels"]).all()
    assert (points["question_id"] == points["question_id_labels"]).all()
    maps = pd.DataFrame([{k: m[k] for k in ("feature", "layer", "head")} for m in data["maps"]])
    per_head = maps.groupby(["layer", "head"])["feature"].nunique()
    assert len(per_head) == 2 * 4 and (per_head >= HEAD_FEATURES).all(), "every head's maps on the shared features"
    record = dataset_record(Location.open(run["dataset"]))
    shown = data["maps"][0]
    exemplar = attention_maps_of(record, run["dataset"], None, [(shown["feature"], shown["layer"], shown["head"])])[0]
    values = np.frombuffer(base64.b64decode(shown["data"]), np.uint8).reshape(shown["cells"], shown["cells"])
    np.testing.assert_allclose(values / 255 * shown["peak"], exemplar.attention, atol=shown["peak"] / 255)
    assert data["features"][str(shown["feature"])]["tokens"] == exemplar.tokens


def test_the_page_loads_offline_without_errors_and_draws_every_point(page, run):
    tab, problems = page
    assert tab.evaluate("explorer.drawnPoints()") == POINTS
    drawn = non_white(tab.locator("#points").screenshot())
    assert drawn > POINTS, "the points' sprites are on the canvas"
    assert problems == []


def test_a_grid_cell_opens_its_head_with_the_tables_numbers(page, run):
    tab, problems = page
    heads = pd.read_parquet(run["out"] / "heads.parquet").set_index(["layer", "head"])
    tab.click("#grid rect.cell[data-layer='1'][data-head='2']")
    assert tab.inner_text("#head-panel h2") == "Layer 1, head 2"
    expected = heads.loc[(1, 2)]
    shown = dict(zip(tab.locator("#head-statistics td:first-child").all_inner_texts(),
                     tab.locator("#head-statistics td:last-child").all_inner_texts()))
    numeric = [c for c in heads.columns if pd.api.types.is_numeric_dtype(heads[c])
               and not re.fullmatch(r"dominant_(kmeans|dbscan|kmeans_r1)", c)  # cluster ids: categories
               and c not in ("map_x", "map_y")]  # the head's place on the map of heads, not a measure of it
    assert set(shown) == set(numeric)
    for column in numeric:
        if pd.isna(expected[column]):
            assert shown[column] == "–", column
        else:
            assert float(shown[column]) == pytest.approx(expected[column], rel=1e-3, abs=1e-12), column
    assert f"pattern: {expected['pattern']}" in tab.inner_text("#head-panel")
    shares = pd.read_parquet(run["out"] / "head_clusters.parquet")
    top = shares[(shares.layer == 1) & (shares["head"] == 2) & (shares.clustering == "kmeans")].nlargest(1, "share")
    assert f"cluster {top.cluster.iloc[0]} {100 * top.share.iloc[0]:.1f}%" in tab.inner_text("#head-panel")
    assert tab.locator("#head-panel figure.map").count() >= HEAD_FEATURES
    assert tab.evaluate("explorer.highlighted()") == int(
        ((decoded_points(run["data"])[["layer", "head"]] == [1, 2]).all(axis=1)).sum())
    assert problems == []


def test_a_clicked_point_selects_its_head_and_a_cluster_link_its_heatmap(page, run):
    tab, problems = page
    before = tab.locator("#points").screenshot()
    index, x, y = tab.evaluate("""() => {
        for (let i = 0; i < explorer.data.points.count; i++) {
            const [x, y] = explorer.screenOf(i);
            if (explorer.pointAt(x, y) === i) return [i, x, y];
        }}""")
    box = tab.locator("#points").bounding_box()
    tab.mouse.click(box["x"] + x, box["y"] + y)
    point = decoded_points(run["data"]).iloc[index]
    assert tab.inner_text("#head-panel h2") == f"Layer {point['layer']}, head {point['head']}"
    assert f"feature {point['feature_id']} · question {point['question_id']}" in tab.inner_text("#head-panel")
    assert tab.locator("#points").screenshot() != before, "the head's points are highlighted"
    tab.click(f"#head-panel .notes .link[data-clustering='kmeans'][data-cluster='{point['kmeans']}']")
    assert tab.inner_text("#cluster-panel h2").startswith(f"kmeans, cluster {point['kmeans']}")
    shares = pd.read_parquet(run["out"] / "head_clusters.parquet")
    cell = shares[(shares.clustering == "kmeans") & (shares.cluster == point["kmeans"])].iloc[0]
    title = tab.locator(f"#cluster-heatmap rect.cell[data-layer='{cell.layer}'][data-head='{cell['head']}'] title")
    assert title.text_content().endswith(f"{100 * cell.share:.1f}%")
    assert problems == []


def test_switching_the_measure_recolours_the_grid_on_its_scale(page, run):
    tab, problems = page
    fills = lambda: tab.eval_on_selector_all("#grid rect.cell", "cells => cells.map(c => c.getAttribute('fill'))")  # noqa: E731
    by_pattern = fills()
    tab.select_option("#measure", "mean_entropy")
    by_entropy = fills()
    assert by_entropy != by_pattern
    heads = pd.read_parquet(run["out"] / "heads.parquet").sort_values(["layer", "head"])
    order = heads["mean_entropy"].to_numpy()
    assert by_entropy[int(order.argmax())] == "#fde725" and by_entropy[int(order.argmin())] == "#440154"
    assert problems == []


def test_every_view_exports(page, run):
    tab, problems = page
    svg = download(tab, "#grid-view button[data-export='heads-grid.svg']").decode()
    assert svg.startswith("<svg") and svg.count("class=\"cell\"") == 2 * 4
    assert download(tab, "#grid-view button[data-export='heads-grid.png']").startswith(b"\x89PNG")
    projection = download(tab, "#projection-view button[data-export='projection.png']")
    assert projection.startswith(b"\x89PNG") and non_white(projection) > POINTS
    tab.click("#grid rect.cell[data-layer='0'][data-head='0']")
    assert download(tab, "#head-panel figure.map button").startswith(b"\x89PNG")
    assert problems == []
