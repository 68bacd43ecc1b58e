"""The planted datasets (identical but for known heads) and their comparison, shared by the compare tests."""

from __future__ import annotations

import pytest
from planted import FAST, write_dataset

from tasks.cluster.resources import MemoryBudget
from tasks.cluster.sample import SampleSpec
from tasks.compare.alignment import open_pair
from tasks.compare.paired import read_pairs
from tasks.compare.tables import compare_rows
from tasks.config import CompareConfig


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    return write_dataset(folder / "a", moved=False), write_dataset(folder / "b", moved=True)


@pytest.fixture(scope="module")
def comparison(planted):
    cfg = CompareConfig(a=planted[0], b=planted[1], **FAST)
    pair = open_pair(cfg.a, cfg.b, None, None)
    rows = read_pairs(pair, SampleSpec(), cfg.pca, MemoryBudget(2**30))
    return cfg, rows, compare_rows(rows, pair.statistics, pair.layers, pair.heads, cfg)
