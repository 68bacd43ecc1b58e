"""The heads table and the original's findings on planted labels: the numbers come out as planted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.research.findings import Rows, StudyFinding, dominant_cluster, satellite_evenness, small_clusters
from tasks.research.heads import Resampling, cluster_share_grid, head_clusters_table, heads_table
from tasks.research.roles import RoleRules

LAYERS, HEADS, FEATURES = 6, 4, 60


def _rows() -> pd.DataFrame:
    keys = np.stack(np.meshgrid(np.arange(FEATURES), np.arange(LAYERS), np.arange(HEADS), indexing="ij"), -1)
    keys = keys.reshape(-1, 3)
    return pd.DataFrame({"feature_id": keys[:, 0] + 1000, "layer": keys[:, 1], "head": keys[:, 2]})


def _planted(rows: pd.DataFrame) -> np.ndarray:
    """Layers 0-1: the dominant cluster 0; layers 4-5: noise; layer 2 head 0 on features 1000-1009: cluster 1;
    the rest of layers 2-3: cluster 2."""
    labels = np.full(len(rows), 2)
    labels[rows["layer"] <= 1] = 0
    labels[rows["layer"] >= 4] = -1
    labels[(rows["layer"] == 2) & (rows["head"] == 0) & (rows["feature_id"] < 1010)] = 1
    return labels


def _facts_rows(rows: pd.DataFrame, context: np.ndarray | None = None) -> Rows:
    return Rows(rows["feature_id"].to_numpy(), rows["layer"].to_numpy(),
                (rows["layer"] * HEADS + rows["head"]).to_numpy(), LAYERS * HEADS, context)


def test_dominant_cluster_of_early_layers_and_noise_of_late_layers():
    rows = _rows()
    numbers = dominant_cluster(_facts_rows(rows), _planted(rows), 100, 0)
    share = (2 * HEADS * FEATURES) / len(rows)
    assert numbers["share"][0] == pytest.approx(share)
    assert numbers["layer"][0] == pytest.approx(0.5) and numbers["noise_layer"][0] == pytest.approx(4.5)
    assert numbers["layer_gap"][0] == pytest.approx(4.0)
    assert numbers["layer"][1] == pytest.approx(0.5) and numbers["layer"][2] == pytest.approx(0.5)  # every resample


def test_a_small_cluster_of_one_head_over_adjacent_features_of_one_context():
    rows = _rows()
    context = (rows["feature_id"].to_numpy() - 1000) // 10  # ten adjacent features a context
    table, shares = small_clusters(_facts_rows(rows, context), _planted(rows), 5, 50, 0)
    one = table.set_index("cluster").loc[1]
    assert one["rows"] == 10 and one["head_share"] == 1.0 and one["context_share"] == 1.0
    assert one["adjacent_pair_share"] == pytest.approx(9 / 45)  # 10 features in a row: 9 adjacent of 45 pairs
    two = table.set_index("cluster").loc[2]
    assert two["head_share"] == pytest.approx(FEATURES / (2 * HEADS * FEATURES - 10)) and two["context_share"] < 0.2
    assert set(table["cluster"]) == {1, 2} and shares["head_share"][0] == pytest.approx(table["head_share"].mean())


def test_satellites_with_heads_spread_evenly_or_not():
    rows = _rows()
    even = np.where(rows["layer"] <= 1, rows["feature_id"] % 3, -1)  # every head equally in each satellite
    k, (value, low, high) = satellite_evenness(_facts_rows(rows), even, 50, 0)
    assert k == 3 and value == pytest.approx(np.log(2 * HEADS) / np.log(LAYERS * HEADS))
    single = np.where((rows["layer"] == 0) & (rows["head"] == 0), 0, -1)
    assert satellite_evenness(_facts_rows(rows), single, 50, 0)[1][0] == pytest.approx(0)


def test_heads_table_consistency_dominant_cluster_and_qa_test():
    rows = _rows()
    rng = np.random.default_rng(0)
    statistics = ["cls_mass", "prev_mass"]
    rows["cls_mass"] = rng.random(len(rows)) * 0.2
    rows["prev_mass"] = np.where(rows["layer"] == 3, 0.9, 0.1)
    answerable = (rows["feature_id"] % 2 == 0).to_numpy()
    planted_head = (rows["layer"] == 5) & (rows["head"] == 3)
    rows.loc[planted_head & answerable, "cls_mass"] += 0.5
    labels = {"dbscan": _planted(rows), "kmeans": rows["layer"].to_numpy() % 2}
    table = heads_table(rows, labels, statistics, LAYERS, HEADS, RoleRules(), Resampling(100, 1000, 0), answerable)
    assert len(table) == LAYERS * HEADS and (table["rows"] == FEATURES).all()
    early = table[table["layer"] <= 1]
    assert (early["dominant_dbscan"] == 0).all() and (early["consistency_dbscan"] == 1).all()
    mixed = table[(table["layer"] == 2) & (table["head"] == 0)].iloc[0]
    assert mixed["dominant_share_dbscan"] == pytest.approx(50 / 60) and 0 < mixed["consistency_dbscan"] < 1
    assert mixed["consistency_dbscan_low"] <= mixed["consistency_dbscan"] <= mixed["consistency_dbscan_high"]
    assert (table.loc[table["layer"] == 3, "roles"] == "previous token").all()
    assert (table.loc[table["layer"] != 3, "roles"] == "").all()
    significant = table[table["qa_q"] < 0.05]
    assert significant[["layer", "head"]].values.tolist() == [[5, 3]]
    assert significant["qa_difference"].iloc[0] == pytest.approx(0.5, abs=0.05)
    long = head_clusters_table(rows, labels, LAYERS, HEADS)
    assert np.allclose(long.groupby(["clustering", "layer", "head"])["share"].sum(), 1)
    assert long["rows"].sum() == 2 * len(rows)


def test_cluster_share_grid_is_the_long_tables_share():
    rows = _rows().iloc[:-HEADS]  # the last feature lacks layer 5: its heads hold one row fewer
    labels = _planted(rows)
    long = head_clusters_table(rows, {"dbscan": labels}, LAYERS, HEADS)
    long = long.set_index(["cluster", "layer", "head"]).sort_index()
    for cluster in [-1, 0, 1, 2]:
        grid = cluster_share_grid(rows, labels, cluster, LAYERS, HEADS)
        expected = np.zeros((LAYERS, HEADS))
        for (layer, head), share in long.loc[cluster, "share"].items():
            expected[layer, head] = share
        assert np.array_equal(grid, expected), cluster
    assert (cluster_share_grid(rows, labels, 7, LAYERS, HEADS) == 0).all()  # a cluster no row is in


def test_findings_read_as_sentences_without_noise():
    from tasks.research.study import StudySettings, original_findings

    rows = _rows()
    labels = {"dbscan": np.where(rows["layer"] <= 3, 0, 1)}  # two clusters, no noise
    settings = StudySettings(RoleRules(), Resampling(50, 100, 0), stability_resamples=2, kmeans_rows=10_000)
    findings, _ = original_findings(_facts_rows(rows), labels, settings)
    assert findings[0].key == StudyFinding.DOMINANT_CLUSTER and "no row is noise" in findings[0].text
    assert " nan " not in findings[0].text and findings[0].value == pytest.approx(4 / 6)


def _study_inputs():
    rows = _rows()
    rng = np.random.default_rng(0)
    for name in ("entropy", "cls_mass", "sep_mass"):
        rows[name] = rng.random(len(rows), dtype=np.float32) / 3
    labels = _planted(rows)
    reduced = (labels[:, None] + rng.normal(scale=0.05, size=(len(rows), 4))).astype(np.float32)
    return rows, labels, reduced


def test_an_exact_dbscan_is_measured_for_stability_whichever_library_ran_it():
    """The GPU backend recorded its exact DBSCAN as 'exact (cuML)', which the research layer took for DBSCAN++:
    on GPUs the stability of DBSCAN was silently skipped."""
    from tasks.cluster.dbscan import DbscanMethod, exact_record
    from tasks.research.study import StudySettings, run_study

    rows, labels, reduced = _study_inputs()
    settings = StudySettings(RoleRules(), Resampling(bootstrap=20, permutations=50), 3, 10_000)
    for implementation in ("scikit-learn", "cuML"):
        params = {"dbscan": {**exact_record(implementation), "eps": 0.5, "min_samples": 5}}
        study = run_study(rows, {"dbscan": labels}, params, reduced, ["entropy", "cls_mass", "sep_mass"], LAYERS,
                          HEADS, settings)
        assert params["dbscan"]["method"] == DbscanMethod.EXACT
        assert list(study.stability["clustering"]) == ["dbscan"], implementation
        assert not any("stability not measured" in note for note in study.notes)


def test_the_study_compares_representations_and_maps_heads_where_the_dataset_allows():
    from tasks.cluster.dbscan import exact_record
    from tasks.research.study import NO_JS, UNAVAILABLE, StudySettings, run_study

    rows, labels, reduced = _study_inputs()
    slot = (rows["layer"] * HEADS + rows["head"]).to_numpy()
    rng = np.random.default_rng(3)
    prototypes = rng.random((LAYERS * HEADS, 256))
    pooled = (prototypes[slot] + rng.normal(scale=0.2, size=(len(rows), 256))).astype(np.float16)
    js = np.abs(prototypes[:, None, :3] - prototypes[None, :, :3]).sum(-1) * FEATURES
    settings = StudySettings(RoleRules(), Resampling(bootstrap=20, permutations=99), 2, 10_000)
    clusterings = {"kmeans": rows["layer"].to_numpy() % 3, "dbscan": labels}
    params = {"kmeans": {"k": 3}, "dbscan": {**exact_record(), "eps": 0.5, "min_samples": 5}}
    statistics = ["entropy", "cls_mass", "sep_mass"]
    study = run_study(rows, clusterings, params, reduced, statistics, LAYERS, HEADS, settings, pooled=pooled,
                      head_js=(js, FEATURES))
    keys = [f.key for f in study.findings]
    assert keys[-2:] == [StudyFinding.REPRESENTATIONS, StudyFinding.HEAD_DISTANCES] and not study.notes[1:]
    accuracy = study.representations.query("representation == 'pooled' and metric == 'accuracy'")["value"].item()
    assert accuracy > 0.9 and "from pooled maps" in study.findings[-2].text
    assert set(study.representations["representation"]) == {"embedding", "pooled", "statistics", "chance"}
    assert len(study.head_map.distances) == (LAYERS * HEADS) * (LAYERS * HEADS - 1) // 2
    assert study.head_map.distances[["js", "embedding", "pooled"]].notna().all().all()
    assert {"map_x", "map_y", "map_group_dbscan"} <= set(study.heads.columns)
    partial = run_study(rows, clusterings, params, reduced, statistics, LAYERS, HEADS, settings, pooled=pooled)
    assert partial.head_map.source == "embedding" and NO_JS in partial.notes
    older = run_study(rows, clusterings, params, reduced, statistics, LAYERS, HEADS, settings)
    assert older.representations is None and older.head_map is None and UNAVAILABLE in older.notes
    assert StudyFinding.REPRESENTATIONS not in [f.key for f in older.findings] and "map_x" not in older.heads
