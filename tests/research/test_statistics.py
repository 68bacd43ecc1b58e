"""Resampling on planted data: bootstrap intervals cover the planted value, permutation tests find the planted
difference only, Benjamini-Hochberg matches its definition."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tasks.research.statistics import (
    benjamini_hochberg,
    bootstrap_interval,
    column_means,
    feature_codes,
    normalised_entropy,
    permutation_pvalues,
)


def test_bootstrap_interval_covers_the_planted_mean_and_narrows_with_more_features():
    rng = np.random.default_rng(0)
    widths, covered = [], 0
    for trial in range(20):
        features = np.repeat(np.arange(400), 3)  # three rows a feature, the feature-level value shared
        values = np.repeat(rng.normal(2.0, 1.0, 400), 3)
        codes = feature_codes(features)
        estimate, low, high = bootstrap_interval(lambda w: values @ w / w.sum(), codes, 200, seed=trial)
        covered += low <= 2.0 <= high
        widths.append(high - low)
    assert covered >= 16  # a 95% interval misses the truth in about 1 of 20 trials
    few, few_values = np.repeat(np.arange(25), 3), np.repeat(rng.normal(2, 1, 25), 3)
    _, low, high = bootstrap_interval(lambda w: few_values @ w / w.sum(), feature_codes(few), 200, seed=0)
    assert high - low > 2 * np.mean(widths)


def test_bootstrap_resamples_features_not_rows():
    features = np.repeat(np.arange(50), 10)
    values = np.repeat(np.arange(50) % 2, 10).astype(float)  # constant within a feature
    _, low, high = bootstrap_interval(lambda w: values @ w / w.sum(), feature_codes(features), 300, seed=1)
    # rows resampled one by one would give a width of about 4 * sqrt(0.25 / 500) = 0.09; features give about 0.28
    assert high - low > 0.2


def test_permutation_test_finds_only_the_planted_difference():
    rng = np.random.default_rng(3)
    groups = rng.random(300) < 0.4
    values = rng.normal(size=(300, 5))
    values[groups, 2] += 0.8
    values[::7, 4] = np.nan  # a test with missing rows
    difference, p = permutation_pvalues(values, groups, 500, seed=0)
    assert difference[2] == pytest.approx(values[groups, 2].mean() - values[~groups, 2].mean())
    assert p[2] == pytest.approx(1 / 501)
    assert np.all(p[[0, 1, 3, 4]] > 0.01)
    assert not np.isnan(p[4])


def test_benjamini_hochberg_on_planted_p_values():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5])
    q = benjamini_hochberg(p)
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.5 (m = 5): 0.025, 0.025, 0.05, 0.05, 0.5 after the running minimum
    np.testing.assert_allclose(q[[3, 0, 2, 1, 5]], [0.025, 0.025, 0.05, 0.05, 0.5])
    assert np.isnan(q[4])


def test_normalised_entropy_is_zero_for_one_value_and_one_for_even():
    np.testing.assert_allclose(normalised_entropy(np.array([[5, 0, 0, 0], [2, 2, 2, 2]]), axis=1), [0, 1])
    assert np.isnan(normalised_entropy(np.zeros((1, 3)), axis=1)[0])


def test_a_statistic_undefined_in_every_resample_gives_nan_bounds_without_a_warning():
    codes = np.repeat(np.arange(6), 3)
    values = np.where(np.arange(18) % 2 == 0, np.nan, np.arange(18.0))[:, None].repeat(2, axis=1)
    values[:, 1] = np.nan  # the second column is never defined
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate, low, high = bootstrap_interval(lambda w: column_means(values * w[:, None]), codes, 50, 0)
    assert estimate[0] == np.nanmean(values[:, 0]) and low[0] <= estimate[0] <= high[0]
    assert np.isnan([estimate[1], low[1], high[1]]).all()
