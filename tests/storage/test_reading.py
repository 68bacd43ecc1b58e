"""Format 2 shards: row groups of whole features, read selectively (only the row groups of the wanted
features, counted in bytes through fsspec), verified without holding the shard (the footer's sha256, every
page's CRC), on local disk and fsspec memory://."""

from __future__ import annotations

import shutil
import uuid

import numpy as np
import pyarrow as pa
import pytest
from damage import DAMAGES, damage
from records import shard_details
from tiny import REPO

from tasks.storage.location import Location
from tasks.storage.reading import BytesRead, read_rows, read_shard
from tasks.storage.records import Manifest
from tasks.storage.rows import pooled_matrix, row_schema, rows_table
from tasks.storage.shards import ShardError, manifest_listing, publish_shard, staging_dir
from tasks.storage.writer import ShardFileWriter

LAYERS, HEADS, DIM, FEATURES = 3, 4, 256, 40

def _write(dest: Location, first: int = 100, index: int = 0, pooled: int = 0) -> tuple[Manifest, pa.Table]:
    """Shard `index`: FEATURES features written in batches of 3 features, row groups of 4 features; with `pooled`
    maps of that many values where not 0."""
    rng = np.random.default_rng(0)
    schema = row_schema(DIM, "float32", ("entropy",), pooled)
    tables = []
    with staging_dir(dest) as staging:
        writer = ShardFileWriter(staging / "s.parquet", schema, group_features=4)
        for start in range(first, first + FEATURES, 3):
            features = np.arange(start, min(start + 3, first + FEATURES))
            rows = len(features) * LAYERS * HEADS
            args = (features, [f"q{f}" for f in features], np.zeros(len(features)),
                    rng.normal(size=(rows, DIM)).astype(np.float32), rng.random((len(features), LAYERS, HEADS, 1)),
                    rng.random((rows, pooled)).astype(np.float16) if pooled else None)
            writer.write(*args)
            tables.append(rows_table(schema, *args))
        groups = writer.close()
        table = pa.concat_tables(tables)
        details = shard_details("fp", (first, first + FEATURES)) | {"row_groups": groups}
        return publish_shard(dest, index, staging / "s.parquet", schema, table.num_rows, details), table


@pytest.fixture(params=["local", "memory"])
def dest(request, tmp_path):
    url = str(tmp_path / "dataset") if request.param == "local" else f"memory://bucket-{uuid.uuid4().hex}/dataset"
    return Location.open(url)


def test_row_groups_hold_whole_features_and_the_manifest_says_which(dest):
    manifest, table = _write(dest)
    assert [g.features for g in manifest.row_groups] == [(100 + i, 104 + i) for i in range(0, FEATURES, 4)]
    assert all(g.rows == 4 * LAYERS * HEADS for g in manifest.row_groups) and manifest.footer_sha256
    assert read_shard(dest, 0).equals(table)


def test_an_excluded_column_is_not_read(dest):
    manifest, table = _write(dest, pooled=DIM)
    whole, without = BytesRead(), BytesRead()
    assert pa.concat_tables(read_rows(dest, manifest, counter=whole)).equals(table)
    assert pooled_matrix(table).dtype == np.float16 and pooled_matrix(table).shape == (table.num_rows, DIM)
    rows = pa.concat_tables(read_rows(dest, manifest, feature_stop=120, counter=without, exclude=["pooled"]))
    assert rows.equals(table.filter(pa.compute.less(table["feature_id"], 120)).drop_columns(["pooled"]))
    assert pooled_matrix(rows) is None
    # float16 pooled maps beside float32 embeddings of the same width: a third of the bytes, half of the rows
    assert without.count < whole.count / 2 * 0.75


def test_a_feature_range_reads_its_row_groups_only(dest):
    manifest, table = _write(dest)
    counter = BytesRead()
    first = pa.concat_tables(read_rows(dest, manifest, feature_stop=110, counter=counter))
    assert first.equals(table.filter(pa.compute.less(table["feature_id"], 110)))
    selected = manifest.bytes * 10 // FEATURES  # 3 row groups of 4 features hold the 10 wanted
    assert selected < counter.count < 2 * selected, (counter.count, selected, manifest.bytes)
    everything = BytesRead()
    assert pa.concat_tables(read_rows(dest, manifest, counter=everything)).equals(table)
    assert everything.count >= manifest.bytes * 0.9
    keys = pa.concat_tables(read_rows(dest, manifest, feature_stop=102, columns=["layer", "head"]))
    assert keys.column_names == ["layer", "head"] and keys.num_rows == 2 * LAYERS * HEADS


def _flip(dest: Location, manifest: Manifest, offset: int) -> None:
    data = bytearray(dest.fs.cat_file(dest.path(manifest.file)))
    data[offset] ^= 0xFF
    dest.fs.pipe_file(dest.path(manifest.file), bytes(data))


def test_a_corrupt_page_is_found_where_it_is_read_and_named(dest):
    manifest, _ = _write(dest)
    with dest.fs.open(dest.path(manifest.file), "rb") as f:
        metadata = pa.parquet.ParquetFile(f).metadata
    page = metadata.row_group(5).column(5).data_page_offset  # the embedding column of the 6th row group
    _flip(dest, manifest, page + 200)
    assert sum(t.num_rows for t in read_rows(dest, manifest, feature_stop=120)) == 20 * LAYERS * HEADS
    with pytest.raises(ShardError, match=r"shard-000000.parquet does not match its manifest .*CRC"):
        list(read_rows(dest, manifest))


def test_a_changed_footer_is_named(dest):
    manifest, _ = _write(dest)
    _flip(dest, manifest, manifest.bytes - 20)
    with pytest.raises(ShardError, match=r"shard-000000.parquet does not match its manifest \(footer sha256\)"):
        list(read_rows(dest, manifest, feature_stop=101))


@pytest.fixture(params=["format 2, local", "format 2, memory", "format 1"])
def two_shards(request, tmp_path) -> tuple[Location, str]:
    """A dataset folder with shards 0 and 1, and its fingerprint."""
    if request.param == "format 1":
        shutil.copytree(REPO / "tests" / "data" / "dataset-v1", tmp_path / "v1")
        return Location.open(str(tmp_path / "v1")), "72664a41b9ab177c"
    local = request.param.endswith("local")
    dest = Location.open(str(tmp_path / "dataset") if local else f"memory://bucket-{uuid.uuid4().hex}/dataset")
    _write(dest, first=0, index=0)
    _write(dest, first=FEATURES, index=1)
    return dest, "fp"


@pytest.mark.parametrize("kind", DAMAGES)
def test_every_damage_is_a_shard_error_naming_the_dataset_and_the_file(two_shards, kind):
    dataset, fingerprint = two_shards
    named = damage(dataset, 1, kind)
    with pytest.raises(ShardError) as error:
        for index in (0, 1):
            read_shard(dataset, index)
    assert str(error.value).startswith(f"{dataset.url}: {named}"), str(error.value)
    manifests, damaged = manifest_listing(dataset, fingerprint)
    if named.endswith(".json"):  # the listing names the shard whose manifest cannot be read, and lists the rest
        assert sorted(manifests) == [0] and list(damaged) == [1] and str(damaged[1]) == str(error.value)
    else:
        assert sorted(manifests) == [0, 1] and damaged == {}
        with pytest.raises(ShardError, match=f"^{dataset.url}: {named}"):  # as the sample reads it
            list(read_rows(dataset, manifests[1], feature_stop=manifests[1].features[0] + 1, columns=["embedding"]))
    assert read_shard(dataset, 0).num_rows == manifests[0].rows
