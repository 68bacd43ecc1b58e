"""Row schema, shard publishing, manifests, dataset.json guard, verified reads (local and fsspec memory://)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from records import shard_details, synthetic_record
from small_disk import on_small_disk

from tasks.storage.dataset import DatasetMismatchError, ensure_dataset_record, newest_complete, read_dataset_record
from tasks.storage.location import Location
from tasks.storage.reading import read_shard
from tasks.storage.records import Manifest, RecordError, head_js_sum
from tasks.storage.rows import pooled_matrix, row_schema, rows_table
from tasks.storage.shards import (
    ShardError,
    publish_shard,
    published_manifests,
    remove_stale_staging,
    staging_dir,
)

STATS = ("entropy", "cls_mass")
LAYERS, HEADS, DIM = 3, 4, 8


def _rows(first_feature: int, n: int, dtype: str = "float32") -> pa.Table:
    """Rows whose embedding and statistics encode their own (feature, layer, head)."""
    features = np.arange(first_feature, first_feature + n)
    grid = np.stack(np.meshgrid(features, np.arange(LAYERS), np.arange(HEADS), indexing="ij"), -1)
    embeddings = np.repeat(grid.reshape(-1, 3).astype(np.float32), [3, 3, 2], axis=1)
    stats = grid[..., 1:].astype(np.float32)  # (n, layers, heads, 2): layer and head
    return rows_table(row_schema(DIM, dtype, STATS), features, [f"q{f // 2}" for f in features],
                      features % 2, embeddings, stats)


def test_rows_are_in_feature_layer_head_order_with_their_own_values():
    table = _rows(10, 5)
    assert table.num_rows == 5 * LAYERS * HEADS
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    keys = np.stack([table[c].to_numpy() for c in ("feature_id", "layer", "head")], 1)
    assert len({tuple(k) for k in keys}) == table.num_rows
    assert (np.lexsort(keys.T[::-1]) == np.arange(table.num_rows)).all()
    embeddings = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    assert (embeddings[:, 0] == keys[:, 0]).all() and (embeddings[:, 3] == keys[:, 1]).all()
    assert (embeddings[:, 6] == keys[:, 2]).all()
    assert (table["entropy"].to_numpy() == keys[:, 1]).all() and (table["cls_mass"].to_numpy() == keys[:, 2]).all()
    assert table["question_id"].to_pylist()[:LAYERS * HEADS + 1] == ["q5"] * (LAYERS * HEADS) + ["q5"]
    assert (table["span"].to_numpy() == keys[:, 0] % 2).all()


def test_float16_storage():
    table = _rows(0, 2, dtype="float16")
    assert table.schema.field("embedding").type == pa.list_(pa.float16(), DIM)
    assert np.stack(table["embedding"].to_numpy(zero_copy_only=False))[5, 0] == 0


def test_pooled_maps_sit_beside_the_embedding_row_for_row():
    features, statistics = np.arange(3), np.arange(3 * LAYERS * HEADS, dtype=np.float32).reshape(3, LAYERS, HEADS, 1)
    rows = 3 * LAYERS * HEADS
    pooled = np.arange(rows * 4, dtype=np.float16).reshape(rows, 4)
    args = (features, ["q"] * 3, features, np.zeros((rows, DIM), np.float32), statistics)
    table = rows_table(row_schema(DIM, "float32", ("entropy",), 4), *args, pooled)
    assert table.column_names[5:] == ["embedding", "pooled", "entropy"]
    assert table.schema.field("pooled").type == pa.list_(pa.float16(), 4)
    assert (pooled_matrix(table) == pooled).all() and pooled_matrix(table).dtype == np.float16
    assert (table["entropy"].to_numpy() == statistics.reshape(-1)).all()
    assert pooled_matrix(rows_table(row_schema(DIM, "float32", ("entropy",)), *args)) is None
    with pytest.raises(ValueError, match="pooled maps missing"):
        rows_table(row_schema(DIM, "float32", ("entropy",), 4), *args)
    with pytest.raises(ValueError, match="pooled maps given"):
        rows_table(row_schema(DIM, "float32", ("entropy",)), *args, pooled)
    with pytest.raises(ValueError, match="35 pooled maps for 3 features"):
        rows_table(row_schema(DIM, "float32", ("entropy",), 4), *args, pooled[1:])


def test_head_divergences_sum_over_manifests_and_only_where_every_one_has_them():
    def manifest(values: list[list[float]] | None, features: int | None) -> Manifest:
        return Manifest(**shard_details(), shard=0, file="f", rows=1, bytes=1, sha256="0", published="now",
                        head_js=values, head_js_features=features)

    total, features = head_js_sum([manifest([[0, 1], [1, 0]], 3), manifest([[0, 0.5], [0.5, 0]], 2)])
    assert features == 5 and total.dtype == np.float64 and (total == [[0, 1.5], [1.5, 0]]).all()
    assert head_js_sum([manifest([[0, 1], [1, 0]], 3), manifest(None, None)]) is None
    assert head_js_sum([]) is None
    with pytest.raises(RecordError, match="shard-000000.json: field 'head_js': .*not a square matrix"):
        Manifest.parse(manifest(None, None).to_json() | {"head_js": [[0, 1], [1]]}, "shard-000000.json")


def _publish(dest: Location, index: int, table: pa.Table, fingerprint: str = "fp") -> Manifest:
    with staging_dir(dest) as staging:
        local = staging / "x.parquet"
        pq.write_table(table, local)
        return publish_shard(dest, index, local, table.schema, table.num_rows, shard_details(fingerprint))


@pytest.fixture(params=["local", "memory"])
def dest(request, tmp_path):
    url = str(tmp_path / "dataset") if request.param == "local" else f"memory://bucket-{uuid.uuid4().hex}/dataset"
    return Location.open(url)


def test_publish_then_read_round_trip(dest):
    tables = {i: _rows(i * 4, 4) for i in range(3)}
    for index, table in tables.items():
        manifest = _publish(dest, index, table)
        assert manifest.rows == table.num_rows and manifest.fingerprint == "fp"
    assert sorted(published_manifests(dest, "fp")) == [0, 1, 2]
    assert published_manifests(dest, "other") == {}
    for index, table in tables.items():
        assert read_shard(dest, index).equals(table)
    leftovers = [p for p in dest.fs.find(dest.root) if "partial" in p]
    assert leftovers == []


def test_a_shard_without_manifest_is_not_visible(dest):
    _publish(dest, 0, _rows(0, 2))
    dest.fs.pipe_file(dest.path("shard-000001.parquet"), b"PAR1 half an upload")
    assert sorted(published_manifests(dest, "fp")) == [0]
    with pytest.raises(ShardError, match="shard-000001 is not published"):
        read_shard(dest, 1)


def test_a_corrupt_shard_is_named(dest):
    _publish(dest, 0, _rows(0, 2))
    data = bytearray(dest.fs.cat_file(dest.path("shard-000000.parquet")))
    data[100] ^= 0xFF
    dest.fs.pipe_file(dest.path("shard-000000.parquet"), bytes(data))
    with pytest.raises(ShardError, match="shard-000000.parquet does not match its manifest's sha256"):
        read_shard(dest, 0)


def test_a_shard_with_the_wrong_row_count_is_not_published(dest):
    table = _rows(0, 2)
    with staging_dir(dest) as staging:
        pq.write_table(table, staging / "x.parquet")
        with pytest.raises(ShardError, match=f"{table.num_rows} rows written, expected 999"):
            publish_shard(dest, 0, staging / "x.parquet", table.schema, 999, shard_details())
    assert not dest.fs.exists(dest.path("shard-000000.parquet"))
    assert published_manifests(dest, "fp") == {}


def test_a_crash_while_writing_leaves_nothing_behind(tmp_path):
    dest = Location.open(str(tmp_path / "dataset"))
    table = _rows(0, 4)
    with pytest.raises(KeyboardInterrupt):
        with staging_dir(dest) as staging, pq.ParquetWriter(staging / "x.parquet", table.schema) as writer:
            writer.write_table(table.slice(0, 10))
            raise KeyboardInterrupt
    assert os.listdir(dest.root) == []


FULL_AT_THE_MANIFEST = """
import json, sys
from pathlib import Path
import pyarrow.parquet as pq
sys.path[:0] = [sys.argv[3], str(Path(sys.argv[3]).parent)]
from test_shards import _rows
from records import shard_details
from tasks.storage.location import Location
from tasks.storage.reading import read_shard
from tasks.storage.shards import publish_shard, staging_dir

disk, report = Path(sys.argv[1]), {}
dest, table = Location.open(str(disk / "dataset")), _rows(0, 40)
with staging_dir(dest) as staging:
    pq.write_table(table, staging / "x.parquet")
    with open(disk / "filler", "wb", buffering=0) as filler:  # the rest of the disk, to its last page
        try:
            while True:
                filler.write(b"x" * 4096)
        except OSError:
            pass
    try:
        publish_shard(dest, 0, staging / "x.parquet", table.schema, table.num_rows, shard_details())
    except Exception as exc:
        report["error"] = [type(exc).__name__, str(exc)]
    report["left"] = sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))
    (disk / "filler").unlink()
    publish_shard(dest, 0, staging / "x.parquet", table.schema, table.num_rows, shard_details())
report["read back"] = read_shard(dest, 0).equals(table)
Path(sys.argv[2]).write_text(json.dumps(report))
"""


def test_a_full_disk_at_the_manifest_leaves_no_manifest_less_shard_and_no_partial_manifest(tmp_path):
    """The shard's Parquet file fits on the disk, its manifest does not; after that, space is freed and the same
    staged file is published."""
    disk, report = tmp_path / "disk", tmp_path / "report.json"
    script = shlex.join([sys.executable, "-c", FULL_AT_THE_MANIFEST, str(disk), str(report),
                         os.path.dirname(__file__)])
    done = on_small_disk(disk, "1m", script)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(report.read_text())
    kind, message = result["error"]
    assert kind == "StorageError", result["error"]
    assert message.startswith(f"{disk}/dataset: cannot write shard-000000.json: no space left on device ("), message
    staged = [name for name in result["left"] if name.startswith("dataset/.partial-")]
    assert sorted(set(result["left"]) - set(staged)) == ["dataset", "filler"], "no shard file, no partial manifest"
    assert len(staged) == 2 and staged[1].endswith("/x.parquet"), "the staged file is back for another try"
    assert result["read back"]


def test_staging_left_by_a_killed_process_is_removed(tmp_path):
    dest = Location.open(str(tmp_path / "dataset"))
    _publish(dest, 0, _rows(0, 2))
    killed = tmp_path / "dataset" / ".partial-abc123"
    killed.mkdir()
    (killed / "shard-000001.parquet").write_bytes(b"PAR1 partial")
    (tmp_path / "dataset" / ".shard-000001.json.partial-0a1b").write_bytes(b'{"half": ')
    remove_stale_staging(dest)
    assert sorted(os.listdir(dest.root)) == ["shard-000000.json", "shard-000000.parquet"]


def test_dataset_record_guards_against_mixing_configs(dest):
    record = synthetic_record("aaa", config={"scaling": "map", "max_length": 384})
    assert ensure_dataset_record(dest, record) == dest
    written = dest.read_json("dataset.json")
    assert ensure_dataset_record(dest, record) == dest  # the same config may resume
    other = synthetic_record("bbb", config={"scaling": "faithful", "max_length": 384})
    with pytest.raises(DatasetMismatchError, match=r"fingerprint aaa.*bbb \(differs in: config.scaling\).*"
                                                   r"--new-version to write it to .*/versions/bbb"):
        ensure_dataset_record(dest, other)
    assert dest.read_json("dataset.json") == written
    assert written["created"], "the creation time is recorded"
    assert read_dataset_record(dest).model_copy(update={"created": None}) == record


def test_a_new_version_goes_beside_the_first_and_the_newest_complete_one_is_found(dest):
    first = synthetic_record("aaa", config={"scaling": "map"})
    second = synthetic_record("bbb", config={"scaling": "faithful"})
    ensure_dataset_record(dest, first)
    version = ensure_dataset_record(dest, second, new_version=True)
    assert version.url == f"{dest.url}/versions/bbb" and version.read_json("dataset.json")["fingerprint"] == "bbb"
    assert ensure_dataset_record(dest, second, new_version=True) == version, "a re-run resumes the version"
    assert dest.read_json("dataset.json")["fingerprint"] == "aaa", "the first dataset is left as it was"
    with pytest.raises(ShardError, match="no complete dataset"):
        newest_complete(dest)
    _publish(dest, 0, _rows(0, 2), fingerprint="aaa")
    assert newest_complete(dest) == dest, "the only complete one"
    _publish(version, 0, _rows(0, 2), fingerprint="bbb")
    assert newest_complete(dest) == version, "both complete: the newer"
