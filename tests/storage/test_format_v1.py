"""Datasets written by format 1's and format 3's code (tests/data/dataset-v1 and dataset-v3: tiny-random-bert,
shards 0 and 1 of the embedded sample, float16) stay readable, and today's code, given the same config, makes the
same rows: the same keys, embeddings up to float16 rounding and the same values of their statistics (format 3
adds role statistics and format 4 pooled maps, and the fingerprint names both, so each has a new one), with
format 4's pooled maps and head divergences beside them."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pyarrow as pa
import pytest
from tiny import REPO

from tasks.config import ExtractConfig
from tasks.extract.descriptors import POOLED_SIZE
from tasks.extract.plan import ExtractionPlan, plan_extraction, prepare_destination, resolve, resolve_compile
from tasks.extract.shard import extract_shard
from tasks.storage import head_js_sum, pooled_matrix
from tasks.storage.dataset import dataset_record
from tasks.storage.location import Location
from tasks.storage.reading import read_rows, read_shard
from tasks.storage.records import FORMAT
from tasks.storage.rows import embedding_matrix
from tasks.storage.shards import published_manifests

FIXTURE = REPO / "tests" / "data" / "dataset-v1"
FINGERPRINT = "72664a41b9ab177c"
SHARD_0_ROWS_SHA256 = "27569fabe42da8dc8654d342a41dbff1501949883eccdd76a0979eeb5e219cf2"
FIXTURE_V3, FINGERPRINT_V3 = REPO / "tests" / "data" / "dataset-v3", "ee123f4f5ae978e8"
CONFIG = dict(source="embedded", model="tiny-random-bert", max_length=48, doc_stride=24, shard_size=4, shards=[0, 1],
              precision="fp32", compile="off", dtype="float16")


def rows_sha256(table: pa.Table) -> str:
    """A hash of a shard's rows as decoded: every key, embedding value and statistic."""
    digest = hashlib.sha256()
    for name in table.column_names:
        if name == "embedding":
            data = embedding_matrix(table).tobytes()
        elif name == "question_id":
            data = "\0".join(table[name].to_pylist()).encode()
        else:
            data = table[name].to_numpy().tobytes()
        digest.update(name.encode() + data)
    return digest.hexdigest()


@pytest.fixture
def old(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "old")
    return Location.open(str(tmp_path / "old"))


@pytest.fixture
def old_v3(tmp_path):
    shutil.copytree(FIXTURE_V3, tmp_path / "old-v3")
    return Location.open(str(tmp_path / "old-v3"))


@pytest.fixture(scope="module")
def today(tmp_path_factory) -> tuple[ExtractConfig, ExtractionPlan, Location]:
    """Today's code run on CONFIG: its config, plan and dataset."""
    cfg = resolve(ExtractConfig(dest=str(tmp_path_factory.mktemp("today") / "new"), **CONFIG))
    plan = plan_extraction(cfg)
    destination = prepare_destination(cfg, plan)
    cfg = resolve_compile(cfg.model_copy(update={"dest": destination.url}), 0)
    for shard in plan.shards:
        extract_shard(cfg, shard, plan.record, show_progress=False)
    return cfg, plan, Location.open(cfg.dest)


def test_a_format_1_dataset_reads(old):
    record = dataset_record(old)
    assert record.format == "squad-attention-atlas/1" and record.fingerprint == FINGERPRINT
    assert (record.model.layers, record.model.heads, record.encoder.dim) == (2, 4, 2048)
    manifests = published_manifests(old, FINGERPRINT)
    assert sorted(manifests) == [0, 1] and manifests[1].features == (4, 8)
    table = read_shard(old, 0)
    assert table.num_rows == manifests[0].rows == 4 * 8
    assert rows_sha256(table) == SHARD_0_ROWS_SHA256


def test_a_format_3_dataset_reads_without_the_descriptors(old_v3):
    record = dataset_record(old_v3)
    assert record.format == "squad-attention-atlas/3" and record.fingerprint == FINGERPRINT_V3
    manifests = published_manifests(old_v3, FINGERPRINT_V3)
    table = read_shard(old_v3, 0)
    assert table.num_rows == manifests[0].rows == 4 * 8 and "pooled" not in table.column_names
    assert pooled_matrix(table) is None and head_js_sum(manifests.values()) is None
    assert embedding_matrix(table).shape == (32, 2048)
    unasked = pa.concat_tables(read_rows(old_v3, manifests[0], exclude=("pooled",)))
    assert unasked.equals(table)


def _same_rows(new: pa.Table, before: pa.Table, statistics: list[str]) -> None:
    for key in ("feature_id", "question_id", "span", "layer", "head"):
        assert new[key].equals(before[key])
    np.testing.assert_allclose(embedding_matrix(new), embedding_matrix(before), rtol=2e-3, atol=1e-3)
    for name in statistics:
        np.testing.assert_allclose(new[name].to_numpy(), before[name].to_numpy(), rtol=1e-4, atol=1e-6)


def test_todays_code_makes_the_same_rows(old, today):
    _, plan, new = today
    assert plan.fingerprint != FINGERPRINT and plan.record.format == FORMAT
    assert set(dataset_record(old).statistics) < set(plan.record.statistics)
    for shard in plan.shards:
        _same_rows(read_shard(new, shard.index), read_shard(old, shard.index), dataset_record(old).statistics)


def test_todays_code_makes_format_3s_rows_and_adds_the_descriptors(old_v3, today):
    _, plan, new = today
    assert plan.fingerprint != FINGERPRINT_V3 and plan.record.statistics == dataset_record(old_v3).statistics
    manifests = published_manifests(new, plan.fingerprint)
    for shard in plan.shards:
        table = read_shard(new, shard.index)
        _same_rows(table, read_shard(old_v3, shard.index), plan.record.statistics)
        assert pooled_matrix(table).shape == (table.num_rows, POOLED_SIZE ** 2)
        assert manifests[shard.index].head_js_features == shard.n_features
    total, features = head_js_sum(manifests.values())
    assert total.shape == (8, 8) and features == 8
