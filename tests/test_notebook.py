"""The notebook API on a real dataset (tests/data/dataset-v1) and the `atlas` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tiny import REPO

from tasks.errors import InputError
from tasks.notebook import embeddings, open_dataset, open_record
from tasks.storage.location import Location
from tasks.storage.reading import read_shard

DATASET = str(REPO / "tests" / "data" / "dataset-v1")


def test_open_dataset_reads_chosen_shards_columns_and_features():
    record = open_record(DATASET)
    rows_per_feature = record.model.layers * record.model.heads
    whole = open_dataset(DATASET)
    assert whole.num_rows == 8 * rows_per_feature
    part = open_dataset(DATASET, shards=[1], columns=["feature_id", "layer", "head", "entropy"], features_per_shard=2)
    assert part.column_names == ["feature_id", "layer", "head", "entropy"]
    assert sorted(set(part["feature_id"].to_pylist())) == [4, 5] and part.num_rows == 2 * rows_per_feature
    vectors = embeddings(open_dataset(DATASET, shards=[0], columns=["embedding"]))
    assert vectors.shape == (4 * rows_per_feature, 2048) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, embeddings(read_shard(Location.open(DATASET), 0)))
    frame = open_dataset(DATASET, columns=["layer", "entropy"]).to_pandas()
    assert frame.groupby("layer")["entropy"].mean().shape == (record.model.layers,)


def test_unpublished_shards_are_named():
    with pytest.raises(InputError, match=r"shards \[5\] are not published \(published: \[0, 1\]\)"):
        open_dataset(DATASET, shards=[0, 5])


def test_atlas_command_lists_and_dispatches_its_sub_commands():
    def atlas(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, cwd=REPO,
                              timeout=300)

    listing = atlas("--help")
    assert listing.returncode == 0 and all(name in listing.stdout for name in ["extract", "cluster", "full", "finetune"])
    unknown = atlas("nonsense")
    assert unknown.returncode == 2 and "unknown command 'nonsense'" in unknown.stderr
    cluster_help = atlas("cluster", "--help")
    assert cluster_help.returncode == 0 and "usage: atlas cluster" in cluster_help.stdout
    assert "--role-threshold" in cluster_help.stdout
