"""The comparison's explorer.html (the diff page) on the planted datasets: its embedded data, and the page in
Debian's headless chromium (the explorer's own browser fixtures, imported)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pages import decoded_points, page_data
from planted import CHANGED, FEATURES, HEADS, LAYERS

from tasks.cluster.density import seeded_rows
from tasks.compare.explorer import diff_explorer_data
from tasks.report.explorer import render_explorer

CAP = 100  # points on the capped page: 50 paired rows, each in A and in B


def _is_planted(table: pd.DataFrame) -> np.ndarray:
    return np.array([(layer, head) in CHANGED for layer, head in zip(table["layer"], table["head"])])


@pytest.fixture(scope="module")
def diff_page(comparison, tmp_path_factory):
    _, rows, result = comparison
    path = tmp_path_factory.mktemp("diff") / "explorer.html"
    path.write_text(render_explorer(diff_explorer_data(rows, result)), encoding="utf-8")
    return path


def test_the_grid_holds_every_head_with_the_planted_heads_changed_most(diff_page, comparison):
    _, _, result = comparison
    data = page_data(diff_page)
    heads = pd.DataFrame(data["heads_table"]["columns"])
    assert (data["layers"], data["heads"], len(heads)) == (LAYERS, HEADS, LAYERS * HEADS)
    assert list(heads.columns[:3]) == ["layer", "head", "displacement"], "the page opens on the displacement"
    assert set(result.heads.columns) < set(heads.columns)
    moved = _is_planted(heads)
    for measure in ("displacement", "migration", "cosine_distance", "energy_distance", "cluster_shift"):
        assert heads.loc[moved, measure].min() > heads.loc[~moved, measure].max(), measure
        assert data["heads_table"]["kinds"][measure] == "number"
    assert (heads.loc[moved, "pattern_change"] == "heterogeneous -> vertical").all()
    assert (heads.loc[~moved, "pattern_change"] == "").all() and data["heads_table"]["kinds"]["pattern_change"] == "category"
    assert (heads.loc[moved, "roles_gained"] == "[SEP]").all()
    shares = pd.DataFrame(data["head_clusters"]["columns"])
    dominant = shares.sort_values("share").groupby(["layer", "head", "clustering"])["cluster"].last().unstack()
    changed = dominant["A:joint"] != dominant["B:joint"]
    assert set(changed[changed].index) == CHANGED, "the planted heads' rows sit in another joint cluster in B"


def test_points_are_the_same_rows_of_both_models_on_the_joint_pca(diff_page, comparison):
    _, rows, result = comparison
    data = page_data(diff_page)
    points = decoded_points(data)
    assert data["colour_options"] == ["layer", "head", "model", "joint", "pattern"]
    a, b = points[points["model"] == "A"], points[points["model"] == "B"]
    assert len(a) == len(b) == len(rows) == FEATURES * LAYERS * HEADS
    keys = ["feature_id", "question_id", "layer", "head"]
    pd.testing.assert_frame_equal(a[keys].reset_index(drop=True), b[keys].reset_index(drop=True))
    assert (a["question_id"] == "q" + (a["feature_id"] // 2).astype(str)).all()
    np.testing.assert_array_equal(a[["x", "y"]].to_numpy(), rows.reduced_a[:, :2])
    np.testing.assert_array_equal(b[["x", "y"]].to_numpy(), rows.reduced_b[:, :2])
    assert (a["joint"].to_numpy() == result.labels_a).all() and (b["joint"].to_numpy() == result.labels_b).all()
    moved = _is_planted(a)
    assert (a["joint"].to_numpy() != b["joint"].to_numpy())[moved].all()
    assert (a["joint"].to_numpy() == b["joint"].to_numpy())[~moved].all()
    assert set(a.loc[moved, "pattern"]) == {"heterogeneous"} and set(b.loc[moved, "pattern"]) == {"vertical"}
    assert "every paired row, each in A and in B" in data["projection"] and data["maps"] == []


def test_the_points_are_capped_to_a_seeded_choice_of_paired_rows(comparison):
    _, rows, result = comparison
    capped = diff_explorer_data(rows, result, points=CAP, seed=3)
    chosen = seeded_rows(len(rows), CAP // 2, 3)
    points = capped.points
    assert len(points) == CAP and list(points["model"]) == ["A"] * (CAP // 2) + ["B"] * (CAP // 2)
    np.testing.assert_array_equal(points["feature_id"].to_numpy()[:CAP // 2], rows.feature_id[chosen])
    np.testing.assert_array_equal(points["feature_id"].to_numpy()[CAP // 2:], rows.feature_id[chosen])
    np.testing.assert_array_equal(points[["x", "y"]].to_numpy()[CAP // 2:], rows.reduced_b[chosen, :2])
    pd.testing.assert_frame_equal(points, diff_explorer_data(rows, result, points=CAP, seed=3).points)
    assert not points["feature_id"].equals(diff_explorer_data(rows, result, points=CAP, seed=4).points["feature_id"])
    assert f"a seeded sample of {CAP // 2} of {len(rows)} paired rows" in capped.projection


@pytest.fixture(scope="module")
def run(diff_page):
    """What the explorer's `page` fixture opens: here the diff page."""
    return {"page": diff_page}


def test_the_diff_page_opens_without_errors_and_a_planted_head_shows_its_numbers(page, comparison):
    tab, problems = page
    heads = comparison[2].heads.set_index(["layer", "head"])
    assert tab.evaluate("explorer.drawnPoints()") == 2 * len(comparison[1])
    fills = tab.eval_on_selector_all("#grid rect.cell", "cells => cells.map(c => c.getAttribute('fill'))")
    assert fills[int(comparison[2].heads["displacement"].to_numpy().argmax())] == "#fde725"
    layer, head = sorted(CHANGED)[0]
    tab.click(f"#grid rect.cell[data-layer='{layer}'][data-head='{head}']")
    assert tab.inner_text("#head-panel h2") == f"Layer {layer}, head {head}"
    shown = dict(zip(tab.locator("#head-statistics td:first-child").all_inner_texts(),
                     tab.locator("#head-statistics td:last-child").all_inner_texts()))
    for column in ("displacement", "migration", "cosine_distance", "delta_sep_mass"):
        assert float(shown[column]) == pytest.approx(heads.loc[(layer, head), column], rel=1e-3), column
    panel = tab.inner_text("#head-panel")
    assert "pattern_change: heterogeneous -> vertical" in panel and "roles_gained: [SEP]" in panel
    assert "A:joint" in panel and "B:joint" in panel
    assert problems == []
