"""Representations side by side on planted rows: a representation that separates heads recovers them, one that
cannot (its rows shuffled) sits at chance; clusterings of the representations against head, layer and each other."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsClassifier

from tasks.cluster import DensitySettings, RefitSettings
from tasks.research.representations import (
    CHANCE,
    KNN,
    Comparison,
    RepresentationSettings,
    comparable,
    compare_representations,
    neighbour_hits,
)

LAYERS, HEADS, FEATURES = 3, 4, 60
SETTINGS = RepresentationSettings(
    rows=10_000, bootstrap=200, seed=0,
    refit=RefitSettings(k=LAYERS * HEADS, min_samples=5, knee_sample=1000, kmeans_rows=100_000,
                        density=DensitySettings(budget_bytes=2**30, exact_rows=10_000, core_sample=20_000, seed=0)))


def _planted() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(feature_id, head slot, layer, representations): pooled maps a noisy copy of their head's own map;
    statistics the same maps with the rows shuffled (no link to the head left)."""
    rng = np.random.default_rng(0)
    feature = np.repeat(np.arange(FEATURES), LAYERS * HEADS) + 500
    slot = np.tile(np.arange(LAYERS * HEADS), FEATURES)
    prototypes = rng.random((LAYERS * HEADS, 256))
    pooled = prototypes[slot] + rng.normal(scale=0.3, size=(len(slot), 256))
    shuffled = pooled[rng.permutation(len(slot))][:, :12]
    return feature, slot, slot // HEADS, {"pooled": comparable(pooled, 8, 0), "statistics": comparable(shuffled, 8, 0)}


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    feature, slot, layer, representations = _planted()
    return compare_representations(representations, {"head": slot, "layer": layer}, feature, SETTINGS)


def test_pooled_maps_that_separate_heads_recover_them_and_shuffled_rows_sit_at_chance(comparison):
    value, low, high = comparison.accuracy["pooled"]
    assert value > 0.95 and low > 0.9
    value, low, high = comparison.accuracy["statistics"]
    assert comparison.chance == pytest.approx(1 / (LAYERS * HEADS))
    assert low <= comparison.chance <= high and high < 0.3


def test_the_table_holds_each_clusterings_agreement_and_the_representations_with_one_another(comparison):
    table = comparison.table.set_index(["representation", "clustering", "against", "metric"])["value"]
    assert table["pooled", "kmeans", "head", "nmi"] > 0.9 and table["pooled", "kmeans", "head", "ari"] > 0.8
    assert table["statistics", "kmeans", "head", "nmi"] < 0.2
    assert table["pooled", "kmeans", "statistics", "nmi"] < 0.2  # the shuffled rows cluster unlike the maps
    assert table[CHANCE, KNN, "head", "accuracy"] == comparison.chance
    assert {"kmeans", "dbscan", KNN} == set(comparison.table["clustering"])
    assert comparison.rows == FEATURES * LAYERS * HEADS


def test_a_feature_never_sits_on_both_sides_of_a_fold():
    """A feature's maps nearly identical whatever the head: where the feature's other maps were in training, a
    map's nearest neighbour would be one of them, always another head (no hit at all, as plain KFold shows);
    with feature-grouped folds the nearest rows are other features', hitting the head about one time in HEADS."""
    rng = np.random.default_rng(1)
    feature = np.repeat(np.arange(200), HEADS)
    head = np.tile(np.arange(HEADS), 200)
    X = np.repeat(rng.normal(scale=10, size=(200, 4)), HEADS, axis=0) + head[:, None] * 0.01
    leaking = np.zeros(len(X), bool)
    for train, test in KFold(5, shuffle=True, random_state=0).split(X):
        leaking[test] = KNeighborsClassifier(n_neighbors=1).fit(X[train], head[train]).predict(X[test]) == head[test]
    assert leaking.mean() < 0.02
    assert 0.15 < neighbour_hits(X, head, feature, neighbours=1).mean() < 0.35


def test_comparable_standardises_narrow_descriptors_and_projects_wide_ones():
    rng = np.random.default_rng(2)
    narrow = comparable(rng.normal(3, 5, size=(200, 4)), 8, 0)
    assert narrow.shape == (200, 4) and np.allclose(narrow.std(axis=0), 1, atol=1e-5)
    assert comparable(rng.normal(size=(200, 30)), 8, 0).shape == (200, 8)


def test_undefined_statistics_take_their_columns_mean():
    from tasks.research.representations import comparable

    X = np.array([[1.0, np.nan, np.nan], [3.0, 4.0, np.nan], [5.0, 8.0, np.nan]])
    reduced = comparable(X, 5, seed=0)
    assert np.isfinite(reduced).all()
    assert reduced[0, 1] == 0.0, "the mean of its column: standardised to 0"
    assert (reduced[:, 2] == 0).all(), "a column with no value at all: 0"
