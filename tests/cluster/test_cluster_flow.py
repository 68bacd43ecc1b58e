"""Sampling, key alignment, report and the cluster / full flows, on real datasets written to disk."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from records import shard_details, synthetic_record

from flows.cluster import cluster
from flows.full import full
from tasks.cluster.cpu import CpuBackend
from tasks.cluster.dask_cluster import dask_cluster
from tasks.cluster.run import run_clustering
from tasks.cluster.sample import (
    Sample,
    SampleSpec,
    load_sample,
    select_manifests,
)
from tasks.config import ClusterConfig, ExtractConfig
from tasks.errors import InputError
from tasks.report.tables import labels_frame
from tasks.storage.dataset import dataset_record, ensure_dataset_record
from tasks.storage.location import Location
from tasks.storage.rows import row_schema, rows_table
from tasks.storage.shards import ShardError, publish_shard, staging_dir

LAYERS, HEADS, DIM, STATS = 6, 4, 16, ["entropy", "cls_mass"]
CENTRES = np.random.default_rng(5).normal(size=(3, DIM - 3)) * 10


def _write_dataset(path: Path, n_features: int = 60, shard_size: int = 25) -> str:
    """A dataset whose rows cluster by layer % 3 and whose last 3 dimensions encode (feature, layer, head)."""
    dest = Location.open(str(path))
    ensure_dataset_record(dest, synthetic_record("synthetic", LAYERS, HEADS, STATS, -(-n_features // shard_size)))
    schema = row_schema(DIM, "float32", STATS)
    rng = np.random.default_rng(0)
    for index, start in enumerate(range(0, n_features, shard_size)):
        features = np.arange(start, min(start + shard_size, n_features))
        grid = np.stack(np.meshgrid(features, np.arange(LAYERS), np.arange(HEADS), indexing="ij"), -1).reshape(-1, 3)
        vectors = np.hstack([CENTRES[grid[:, 1] % 3] + rng.normal(scale=0.5, size=(len(grid), DIM - 3)),
                             grid * np.array([1e-3, 1e-2, 1e-2])])
        stats = np.stack([grid[:, 1], grid[:, 2]], -1).reshape(len(features), LAYERS, HEADS, 2)
        table = rows_table(schema, features, [f"q{f}" for f in features], np.zeros(len(features)), vectors, stats)
        with staging_dir(dest) as staging:
            pq.write_table(table, staging / "s.parquet")
            publish_shard(dest, index, staging / "s.parquet", schema, table.num_rows,
                          shard_details("synthetic", (int(features[0]), int(features[-1]) + 1)))
    return str(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _write_dataset(tmp_path_factory.mktemp("synthetic") / "dataset")


@pytest.fixture(scope="module")
def client():
    with dask_cluster(backend="cpu", n_workers=2) as compute:
        yield compute.client


def _decoded_keys(vectors: np.ndarray) -> np.ndarray:
    return np.round(vectors[:, -3:] / np.array([1e-3, 1e-2, 1e-2])).astype(int)


def _sample(client, dataset, spec, shards=None):
    location = Location.open(dataset)
    return load_sample(client, location, select_manifests(location, dataset_record(location), shards), spec)


@pytest.mark.parametrize("spec", [SampleSpec("first", None), SampleSpec("first", 4), SampleSpec("random", fraction=0.3, seed=2)])
def test_every_sampled_vector_stays_with_its_keys(client, dataset, spec):
    sample = _sample(client, dataset, spec)
    keys = sample.rows[["feature_id", "layer", "head"]].to_numpy()
    assert sample.dim == DIM and sum(sample.part_rows) == len(sample.rows)
    assert (_decoded_keys(sample.gather(client)) == keys).all()
    assert (sample.rows["entropy"] == sample.rows["layer"]).all() and (sample.rows["cls_mass"] == sample.rows["head"]).all()


def test_first_features_of_each_shard(client, dataset):
    sample = _sample(client, dataset, SampleSpec("first", 4))
    assert sorted(sample.rows["feature_id"].unique()) == [0, 1, 2, 3, 25, 26, 27, 28, 50, 51, 52, 53]
    assert len(sample.rows) == 12 * LAYERS * HEADS


def test_random_fraction_is_seeded_and_independent_of_which_shards_are_read(client, dataset):
    spec = SampleSpec("random", fraction=0.3, seed=2)
    everything = _sample(client, dataset, spec)
    assert 0.25 < len(everything.rows) / (60 * LAYERS * HEADS) < 0.35
    again = _sample(client, dataset, spec)
    pd.testing.assert_frame_equal(everything.rows, again.rows)
    shard_one = _sample(client, dataset, spec, shards=[1])
    in_one = everything.rows[(everything.rows.feature_id >= 25) & (everything.rows.feature_id < 50)]
    assert in_one.reset_index(drop=True).equals(shard_one.rows)
    other_seed = _sample(client, dataset, SampleSpec("random", fraction=0.3, seed=3))
    assert not other_seed.rows[["feature_id", "layer", "head"]].equals(everything.rows[["feature_id", "layer", "head"]])


def test_labels_stay_joined_to_feature_layer_and_head_after_shuffling_and_reclustering(client, dataset):
    sample = _sample(client, dataset, SampleSpec("random", fraction=0.5, seed=1))
    order = np.random.default_rng(9).permutation(len(sample.rows))
    vectors = sample.gather(client)[order]
    shuffled = Sample.scatter(client, sample.rows.iloc[order], vectors, n_parts=3)
    config = ClusterConfig(k=3, pca_components=5, k_max=4, recluster_k=2, min_samples_grid=[5], pca_fit_rows=300)
    _, run = run_clustering(CpuBackend(client), shuffled, config)
    labels = labels_frame(shuffled, run.labels)
    assert (labels[["feature_id", "layer", "head"]].to_numpy() == _decoded_keys(vectors)).all()
    table = pd.crosstab(labels["kmeans"], labels["layer"] % 3)
    assert ((table > 0).sum(axis=1) == 1).all() and ((table > 0).sum(axis=0) == 1).all(), "one cluster per layer group"
    largest = labels["kmeans"].value_counts().idxmax()
    assert ((labels["kmeans_r1"] != -1) == (labels["kmeans"] == largest)).all()


def test_bad_dataset_arguments_are_named(client, dataset, tmp_path):
    with pytest.raises(InputError, match="no dataset.json: not a dataset folder"):
        dataset_record(Location.open(str(tmp_path)))
    with pytest.raises(InputError, match=r"shards \[7\] are not published \(published: \[0, 1, 2\]\)"):
        select_manifests(Location.open(dataset), dataset_record(Location.open(dataset)), [1, 7])


def test_cluster_flow_writes_every_output(prefect_server, dataset, tmp_path):
    out = tmp_path / "clusters"
    config = ClusterConfig(dataset=dataset, out=str(out), pca_components=5, k_max=6, exemplars=0, n_workers=2,
                           backend="cpu", min_samples_grid=[5, 10])
    result = cluster(config)
    assert Path(result["report"]) == out / "report.html"
    for name in ["labels.parquet", "k_search.csv", "k_search.parquet", "dbscan_grid.csv", "dbscan_grid.parquet",
                 "pca_variance.csv", "centres_kmeans.npy", "centres_kmeans_r1.npy", "summary.json"]:
        assert (out / name).is_file(), name
    labels = pd.read_parquet(out / "labels.parquet")
    assert list(labels.columns) == ["feature_id", "question_id", "span", "layer", "head", "kmeans", "dbscan", "kmeans_r1"]
    assert len(labels) == 60 * LAYERS * HEADS and not labels.duplicated(["feature_id", "layer", "head"]).any()
    assert (labels["question_id"] == "q" + labels["feature_id"].astype(str)).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chosen_k"] == 3 and summary["clusterings"]["kmeans"]["clusters"] == 3
    assert np.load(out / "centres_kmeans.npy").shape == (3, 5)
    assert len(pd.read_csv(out / "dbscan_grid.csv")) == 5 * 2
    page = (out / "report.html").read_text()
    for title in ["PCA", "KMeans k search", "DBSCAN eps search", "kmeans", "dbscan", "kmeans_r1"]:
        assert f"<h2 id='{title}'>" in page
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 4 + 3 * 2 == len(list((out / "figures").glob("*.png")))
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "mean_entropy" in page and "mean_layer" in page
    assert not list(tmp_path.glob(".clusters.*")), "no staging folder left behind"


def _copy(dataset: str, to: Path) -> Path:
    to.mkdir(parents=True)
    for path in Path(dataset).iterdir():
        (to / path.name).write_bytes(path.read_bytes())
    return to


def test_a_corrupt_or_missing_shard_fails_the_run_or_is_skipped_by_name(prefect_server, dataset, tmp_path):
    broken = _copy(dataset, tmp_path / "broken")
    data = bytearray((broken / "shard-000001.parquet").read_bytes())
    data[200] ^= 0xFF
    (broken / "shard-000001.parquet").write_bytes(bytes(data))
    (broken / "shard-000002.parquet").unlink()
    config = ClusterConfig(dataset=str(broken), out=str(tmp_path / "clusters"), pca_components=5, k_max=4,
                           exemplars=0, n_workers=2, backend="cpu", min_samples_grid=[5])
    with pytest.raises(ShardError, match=r"shard-00000[12].parquet (does not match its manifest's sha256|is missing)"):
        cluster(config)
    assert not (tmp_path / "clusters").exists(), "nothing written by a failed run"
    result = cluster(config.model_copy(update={"on_bad_shard": "skip"}))
    summary = json.loads((tmp_path / "clusters" / "summary.json").read_text())
    assert summary["shards"] == [0] == result["summary"]["shards"]
    assert "does not match its manifest's sha256" in summary["skipped_shards"]["1"]
    assert "shard-000002.parquet is missing" in summary["skipped_shards"]["2"]
    labels = pd.read_parquet(tmp_path / "clusters" / "labels.parquet")
    assert set(labels["feature_id"]) == set(range(25))
    assert "skipped_shards" in (tmp_path / "clusters" / "report.html").read_text()


def test_newest_clusters_the_most_recent_complete_version(prefect_server, dataset, tmp_path):
    root = _copy(dataset, tmp_path / "root")
    newer = _copy(dataset, root / "versions" / "newer")
    record = json.loads((newer / "dataset.json").read_text())
    (newer / "dataset.json").write_text(json.dumps({**record, "created": "9999-01-01T00:00:00+00:00"}))
    (newer / "shard-000002.json").unlink()  # incomplete: not a candidate yet
    config = ClusterConfig(dataset=str(root), newest=True, out=str(tmp_path / "clusters"), pca_components=5,
                           k_max=3, exemplars=0, n_workers=2, backend="cpu", min_samples_grid=[5])
    assert cluster(config)["summary"]["dataset"] == str(root)
    (newer / "shard-000002.json").write_text((root / "shard-000002.json").read_text())
    assert cluster(config)["summary"]["dataset"] == f"{root}/versions/newer"


def test_full_flow_end_to_end_on_a_tiny_config(prefect_server, tmp_path):
    extraction = ExtractConfig(dest=str(tmp_path / "dataset"), model="tiny-random-bert", max_length=48, doc_stride=24,
                               shard_size=80, precision="fp32", bert_batch=16, encoder_batch=128)
    clustering = ClusterConfig(out=str(tmp_path / "clusters"), pca_components=8, k_max=5, exemplars=2, n_workers=2,
                               backend="cpu", top_clusters=3, min_samples_grid=[5])
    result = full(extraction, clustering)
    out = tmp_path / "clusters"
    assert result["report"] == str(out / "report.html")
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(labels) == result["extraction"]["rows"]
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"kmeans_exemplars", "dbscan_heatmaps", "pca_variance", "k_search", "dbscan_grid"} <= figures
