"""The map of the heads in the report (its section and figure) and in explorer.html (a real browser: each head a
dot at its place, coloured as the grid, a click selecting the head)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pages import page_data

from tasks.cluster.dbscan import exact_record
from tasks.report.explorer import explorer_data, render_explorer
from tasks.report.head_map import head_map_caption, head_map_sections
from tasks.research.heads import Resampling
from tasks.research.roles import RoleRules
from tasks.research.study import StudySettings, run_study

LAYERS, HEADS, FEATURES = 3, 4, 30
STATISTICS = ["cls_mass", "sep_mass", "punct_mass", "prev_mass", "diag_mass", "next_mass", "segment_focus"]


def _study(with_map: bool):
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(FEATURES), np.arange(LAYERS), np.arange(HEADS), indexing="ij"), -1)
    rows = pd.DataFrame(grid.reshape(-1, 3), columns=["feature_id", "layer", "head"])
    rows[STATISTICS] = rng.dirichlet(np.ones(len(STATISTICS)), len(rows)).astype(np.float32)
    slot = (rows["layer"] * HEADS + rows["head"]).to_numpy()
    reduced = (rng.normal(size=(len(rows), 4)) + rows[["layer"]].to_numpy() * 3).astype(np.float32)
    pooled = (rng.random((LAYERS * HEADS, 256))[slot] + rng.normal(scale=0.2, size=(len(rows), 256)))
    labels = {"kmeans": rows["layer"].to_numpy(), "dbscan": np.where(rows["head"] == 0, -1, rows["layer"])}
    params = {"kmeans": {"k": 3}, "dbscan": {**exact_record(), "eps": 0.5, "min_samples": 5}}
    settings = StudySettings(RoleRules(), Resampling(bootstrap=20, permutations=99), 2, 10_000)
    study = run_study(rows, labels, params, reduced, STATISTICS, LAYERS, HEADS, settings,
                      pooled=pooled.astype(np.float16) if with_map else None)
    return rows, reduced, labels, study


@pytest.fixture(scope="module")
def mapped():
    return _study(True)


def test_the_section_draws_the_map_by_layer_pattern_and_role_or_is_left_out(mapped):
    (section,) = head_map_sections(mapped[3])
    assert section.figures[0].name == "heads_map" and section.figures[0].png.startswith(b"\x89PNG")
    assert [len(t) for _, t in section.tables] == [len(mapped[3].representations), 1, 2]  # embedding against pooled
    assert "Jensen" not in section.figures[0].title  # no head JS sums given: the map is of the mean embeddings
    older = _study(False)[3]
    assert head_map_sections(older) == [] and head_map_caption(older) is None


@pytest.fixture(scope="module")
def run(mapped, tmp_path_factory):
    rows, reduced, labels, study = mapped
    questions = pd.DataFrame({"feature_id": np.arange(FEATURES), "question_id": [f"q{f}" for f in range(FEATURES)]})
    data = explorer_data(rows, reduced, labels, study.heads, study.head_clusters, questions, LAYERS, HEADS, None,
                         per_cluster=0, rules=RoleRules(), head_map=head_map_caption(study))
    page = tmp_path_factory.mktemp("explorer") / "explorer.html"
    page.write_text(render_explorer(data), encoding="utf-8")
    return {"page": page, "heads": study.heads}


def test_the_page_carries_the_layout_and_draws_a_dot_per_head_that_selects_it(page, run):
    assert page_data(run["page"])["head_map"].startswith("Heads laid out by metric MDS")
    tab, problems = page
    assert tab.locator("#heads-map circle.head-dot").count() == LAYERS * HEADS
    assert "map_x" not in tab.eval_on_selector_all("#measure option", "options => options.map(o => o.value)")
    tab.click("#heads-map circle.head-dot[data-layer='2'][data-head='1']")
    assert tab.inner_text("#head-panel h2") == "Layer 2, head 1"
    assert tab.get_attribute("#heads-map circle[data-layer='2'][data-head='1']", "r") == "7"
    dots = lambda: tab.eval_on_selector_all("#heads-map circle", "cs => cs.map(c => c.getAttribute('fill'))")  # noqa: E731
    before = dots()
    tab.select_option("#measure", "mean_cls_mass")
    order = run["heads"].sort_values(["layer", "head"])["mean_cls_mass"].to_numpy()
    assert dots() != before and dots()[int(order.argmax())] == "#fde725"
    assert problems == []
