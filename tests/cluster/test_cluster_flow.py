"""Sampling, key alignment, report and the cluster / full flows, on real datasets written to disk."""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from damage import DAMAGES, damage
from records import shard_details, synthetic_record
from tiny import REPO, TINY

from flows.cluster import cluster
from flows.full import full
from flows.importance import importance
from tasks.cluster.cpu import CpuBackend
from tasks.compute.clusters import dask_cluster
from tasks.cluster.resources import MemoryBudget
from tasks.cluster.run import run_clustering
from tasks.cluster.sample import (
    SampleSpec,
    load_sample,
)
from tasks.config import ClusterConfig, ExtractConfig, ImportanceConfig
from tasks.errors import InputError
from tasks.groups import Projection
from tasks.report.tables import label_parts
from tasks.research.study import UNAVAILABLE
from tasks.storage.dataset import dataset_record, ensure_dataset_record
from tasks.storage.location import Location
from tasks.storage.reading import read_shard
from tasks.storage.rows import KEY_COLUMNS, embedding_matrix, row_schema, rows_table
from tasks.storage.shards import ShardError, publish_shard, select_manifests, staging_dir
from tasks.storage.writer import ShardFileWriter

LAYERS, HEADS, DIM, STATS = 6, 4, 16, ["entropy", "cls_mass"]
CENTRES = np.random.default_rng(5).normal(size=(3, DIM - 3)) * 10


def _write_dataset(path: Path, n_features: int = 60, shard_size: int = 25, format_2: bool = True) -> str:
    """A dataset whose rows cluster by layer % 3 and whose last 3 dimensions encode (feature, layer, head); its
    shards in row groups of 4 features (format 2), or as one plain Parquet file (format 1's reading path)."""
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
        args = (features, [f"q{f}" for f in features], np.zeros(len(features)), vectors, stats)
        details = shard_details("synthetic", (int(features[0]), int(features[-1]) + 1))
        with staging_dir(dest) as staging:
            if format_2:
                writer = ShardFileWriter(staging / "s.parquet", schema, group_features=4)
                writer.write(*args)
                details["row_groups"] = writer.close()
            else:
                pq.write_table(rows_table(schema, *args), staging / "s.parquet")
            publish_shard(dest, index, staging / "s.parquet", schema, len(grid), details)
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


def _sample(client, dataset, spec, shards=None, fit_rows=300, components=5, budget=MemoryBudget(2**30)):
    """The sample, its keys spilled beside the dataset."""
    location = Location.open(dataset)
    keys = Path(dataset).parent / "keys"
    keys.mkdir(exist_ok=True)
    return load_sample(client, location, select_manifests(location, dataset_record(location), shards), spec,
                       Projection(pca_components=components, pca_fit_rows=fit_rows), standardize=False, dim=DIM,
                       budget=budget, keys=keys)


def _raw_vectors(dataset: str) -> dict[tuple[int, int, int], np.ndarray]:
    """Every row's stored vector by (feature, layer, head)."""
    location = Location.open(dataset)
    tables = [read_shard(location, i) for i in range(3)]
    vectors = np.concatenate([embedding_matrix(t) for t in tables])
    keys = np.concatenate([np.stack([t[c].to_numpy() for c in ("feature_id", "layer", "head")], 1) for t in tables])
    return {tuple(k): v for k, v in zip(keys.tolist(), vectors)}


@pytest.mark.parametrize("spec", [SampleSpec("first", None), SampleSpec("first", 4), SampleSpec("random", fraction=0.3, seed=2),
                                  SampleSpec("all")])
def test_every_projected_vector_stays_with_its_keys(client, dataset, spec):
    sample = _sample(client, dataset, spec)
    keys = sample.rows[["feature_id", "layer", "head"]].to_numpy()
    assert sample.dim == DIM and sum(sample.part_rows) == len(sample.rows) == len(sample.reduced)
    raw = _raw_vectors(dataset)
    stored = np.stack([raw[tuple(k)] for k in keys.tolist()])
    assert (_decoded_keys(stored) == keys).all()
    np.testing.assert_allclose(sample.reduced, sample.reducer.transform(stored), rtol=1e-5, atol=1e-5)
    assert (sample.rows["entropy"] == sample.rows["layer"]).all() and (sample.rows["cls_mass"] == sample.rows["head"]).all()
    parts = pa.concat_tables(sample.key_tables())
    assert (np.stack([parts[c].to_numpy() for c in ("feature_id", "layer", "head")], 1) == keys).all()


def test_pca_is_fitted_on_a_seeded_sample_of_fit_rows_and_both_formats_read_alike(client, dataset, tmp_path):
    sample = _sample(client, dataset, SampleSpec("all"), fit_rows=300)
    assert sample.fit_rows == 300 and len(sample.rows) == 60 * LAYERS * HEADS
    assert sample.reducer.explained_variance_ratio[:2].sum() > 0.9, "the three layer groups span two components"
    old = _sample(client, _write_dataset(tmp_path / "format-1", format_2=False), SampleSpec("all"), fit_rows=300)
    pd.testing.assert_frame_equal(old.rows, sample.rows)
    selective = _sample(client, dataset, SampleSpec("first", 4))
    assert selective.bytes_read < 0.3 * sample.bytes_read, "4 of 25 features a shard: one row group of each"
    whole = _sample(client, str(tmp_path / "format-1"), SampleSpec("first", 4))
    assert whole.bytes_read >= old.bytes_read * 0.99, "format 1 shards are read whole"


def test_the_pca_memory_check_counts_the_rows_there_not_the_fit_rows_asked(client, dataset):
    rows = 60 * LAYERS * HEADS
    need = 3 * rows * DIM * 8  # the PCA fit's float64 copies of every row: fewer rows than --pca-fit-rows
    sample = _sample(client, dataset, SampleSpec("all"), fit_rows=20_000, budget=MemoryBudget(need + 1))
    assert sample.fit_rows == rows
    with pytest.raises(InputError, match=rf"^sample: PCA fit: {rows:,} rows need about .*--pca-fit-rows$"):
        _sample(client, dataset, SampleSpec("all"), fit_rows=20_000, budget=MemoryBudget(need - 1))


def test_more_pca_components_than_the_data_has_are_capped_in_one_log_line(client, dataset, caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.cluster.reducer"):
        sample = _sample(client, dataset, SampleSpec("first", 1), components=5000)
    assert sample.reduced.shape[1] == DIM
    (record,) = [r for r in caplog.records if "--pca-components" in r.getMessage()]
    assert record.getMessage() == (f"--pca-components 5000 capped at {DIM}: a PCA fitted on {3 * LAYERS * HEADS} "
                                   f"rows of {DIM} dimensions has at most {DIM} components")


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


def test_clusterings_follow_the_rows_in_any_order(client, dataset):
    sample = _sample(client, dataset, SampleSpec("random", fraction=0.5, seed=1))
    order = np.random.default_rng(9).permutation(len(sample.rows))
    shuffled = replace(sample, rows=sample.rows.iloc[order].reset_index(drop=True), reduced=sample.reduced[order])
    config = ClusterConfig(k=3, pca_components=5, k_max=4, recluster_k=2, min_samples_grid=[5])
    run = run_clustering(CpuBackend(client), shuffled, config, MemoryBudget(2**30))
    table = pd.crosstab(run.labels["kmeans"], shuffled.rows["layer"].to_numpy() % 3)
    assert ((table > 0).sum(axis=1) == 1).all() and ((table > 0).sum(axis=0) == 1).all(), "one cluster per layer group"
    largest = pd.Series(run.labels["kmeans"]).value_counts().idxmax()
    assert ((run.labels["kmeans_r1"] != -1) == (run.labels["kmeans"] == largest)).all()
    assert run.params["dbscan"]["method"] == "exact" and run.params["dbscan"]["knee_sample"] == len(order)


def test_the_label_parts_are_written_from_the_sample_after_its_dask_cluster_has_closed(dataset):
    with dask_cluster(backend="cpu", n_workers=1, processes=False) as compute:
        sample = _sample(compute.client, dataset, SampleSpec("random", fraction=0.5, seed=1))
    labels = np.arange(len(sample.rows))
    parts = list(label_parts(sample, {"kmeans": labels}))
    assert [shard for shard, _ in parts] == sample.part_shards == [0, 1, 2]
    table = pa.concat_tables(part for _, part in parts)
    assert table.column_names == [*KEY_COLUMNS, "kmeans"]
    for column in ("feature_id", "layer", "head"):
        np.testing.assert_array_equal(table[column].to_numpy(), sample.rows[column].to_numpy())
    assert table["question_id"].to_pylist() == [f"q{f}" for f in sample.rows["feature_id"]]
    np.testing.assert_array_equal(table["kmeans"].to_numpy(), labels)


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
    for name in ["k_search.csv", "k_search.parquet", "dbscan_grid.csv", "dbscan_grid.parquet",
                 "pca_variance.csv", "centres_kmeans.npy", "centres_kmeans_r1.npy", "summary.json", "explorer.html"]:
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "labels.parquet").iterdir()) == [f"part-{i:06d}.parquet" for i in range(3)]
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
    assert page.index("<h2 id='Findings'>") < page.index("<h2 id='PCA'>")  # the report opens with the findings
    assert [f["key"] for f in summary["findings"]][:3] == ["dominant-cluster", "small-clusters", "satellites"]
    assert all(html.escape(f["text"]) in page for f in summary["findings"])
    assert "contexts and answerability unknown" in page  # this dataset has no source file behind it
    # a dataset of an older format: no pooled maps nor head JS sums, so no comparison, and the report says so
    assert html.escape(UNAVAILABLE) in page and "<h2 id='Representations and the map of heads'>" not in page
    assert not (out / "representations.parquet").exists() and not (out / "head_distances.parquet").exists()
    assert not {"representations", "head-distances"} & {f["key"] for f in summary["findings"]}
    heads = pd.read_parquet(out / "heads.parquet")
    assert len(heads) == LAYERS * HEADS and (heads["rows"] == 60).all()
    assert {"mean_cls_mass", "roles", "consistency_dbscan", "dominant_kmeans"} <= set(heads.columns)
    assert "pattern" not in heads  # patterns need the role statistics, which this dataset lacks
    assert set(pd.read_parquet(out / "stability.parquet")["clustering"]) == {"kmeans", "dbscan", "kmeans_r1"}
    # the sections' figures, and the heads' consistency grid (no pattern grid without the role statistics)
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 4 + 3 * 2 + 1 == len(list((out / "figures").glob("*.png")))
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "mean_entropy" in page and "mean_layer" in page
    assert not list(tmp_path.glob(".clusters.*")), "no staging folder left behind"


def _copy(dataset: str, to: Path) -> Path:
    to.mkdir(parents=True)
    for path in Path(dataset).iterdir():
        (to / path.name).write_bytes(path.read_bytes())
    return to



def _contents(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_the_flows_refuse_an_out_over_their_dataset_before_any_work(prefect_server, dataset, tmp_path):
    """Deployment runs skip the command line: the flows check --out themselves."""
    copied = _copy(dataset, tmp_path / "data" / "dataset")
    before = _contents(tmp_path)
    for out, relation in ((copied, "is"), (tmp_path / "data", "holds")):
        with pytest.raises(InputError, match=f"^--out {out}: {relation} the dataset folder {copied}"):
            cluster(ClusterConfig(dataset=str(copied), out=str(out), n_workers=1, backend="cpu"))
    with pytest.raises(InputError, match=f"^--out {tmp_path / 'new'}: is the dataset folder {tmp_path / 'new'}"):
        full(ExtractConfig(**TINY, dest=str(tmp_path / "new")), ClusterConfig(out=str(tmp_path / "new")))
    assert _contents(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_rerun_replaces_its_own_outputs_through_a_symlinked_out(prefect_server, dataset, tmp_path):
    target, link = tmp_path / "disk" / "clusters", tmp_path / "clusters"
    target.mkdir(parents=True)
    link.symlink_to(target, target_is_directory=True)
    config = ClusterConfig(dataset=dataset, out=str(link), pca_components=5, exemplars=0, n_workers=2,
                           backend="cpu", min_samples_grid=[5])
    searched = []
    for k_max in (4, 3):
        result = cluster(config.model_copy(update={"k_max": k_max}))
        assert result["report"] == str(link / "report.html")
        assert link.is_symlink() and Path(os.readlink(link)) == target
        searched.append(len(pd.read_csv(target / "k_search.csv")))
    assert searched[0] > searched[1], "the second run's outputs replaced the first's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters", "disk"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["clusters"], "no staging folder left behind"


def test_a_corrupt_or_missing_shard_fails_the_run_or_is_skipped_by_name(prefect_server, dataset, tmp_path):
    broken = _copy(dataset, tmp_path / "broken")
    data = bytearray((broken / "shard-000001.parquet").read_bytes())
    data[200] ^= 0xFF
    (broken / "shard-000001.parquet").write_bytes(bytes(data))
    (broken / "shard-000002.parquet").unlink()
    config = ClusterConfig(dataset=str(broken), out=str(tmp_path / "clusters"), pca_components=5, k_max=4,
                           exemplars=0, n_workers=2, backend="cpu", min_samples_grid=[5])
    with pytest.raises(ShardError, match=r"shard-00000[12].parquet (does not match its manifest|is missing)"):
        cluster(config)
    assert not (tmp_path / "clusters").exists(), "nothing written by a failed run"
    state = cluster(config.model_copy(update={"on_bad_shard": "skip"}), return_state=True)
    result = state.result()
    summary = json.loads((tmp_path / "clusters" / "summary.json").read_text())
    assert summary["shards"] == [0] == result["summary"]["shards"]
    assert "does not match its manifest" in summary["skipped_shards"]["1"]
    assert "shard-000002.parquet is missing" in summary["skipped_shards"]["2"]
    labels = pd.read_parquet(tmp_path / "clusters" / "labels.parquet")
    assert set(labels["feature_id"]) == set(range(25))
    page = (tmp_path / "clusters" / "report.html").read_text()
    top = page[: page.index("<h2 id='Findings'>")]  # visible text before the findings, not only the raw JSON
    for shard, why in (1, "does not match its manifest"), (2, "shard-000002.parquet is missing"):
        assert re.search(rf"<li>Shard {shard} was skipped \(--on-bad-shard skip\): [^<]*{re.escape(why)}", top)
        assert f"- Shard {shard} was skipped (--on-bad-shard skip): " in _findings_artifact(state)


def _findings_artifact(state) -> str:
    """The markdown of the cluster-findings artifact of a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["cluster-findings"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return artifact.data


def _atlas_cluster(dataset: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    """`atlas cluster` in a fresh process on the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    command = [sys.executable, "-m", "flows.cli", "cluster", "--dataset", str(dataset), "--out", str(out),
               "--pca-components", "5", "--k-max", "4", "--exemplars", "0", "--n-workers", "2", "--backend", "cpu",
               "--min-samples-grid", "5", *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value() or ""}
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=out.parent, timeout=900)


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_shard_ends_the_run_in_one_line_naming_it(prefect_server, dataset, tmp_path, kind):
    broken = _copy(dataset, tmp_path / "broken")
    named = damage(Location.open(str(broken)), 1, kind)
    done = _atlas_cluster(broken, tmp_path / "clusters")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken}: {named}"), done.stderr[-3000:]
    assert not (tmp_path / "clusters").exists(), "nothing written by a failed run"


def test_every_kind_of_damaged_shard_is_skipped_and_named(prefect_server, tmp_path):
    """One dataset, shard 0 whole and each later shard damaged in another way, clustered with
    --on-bad-shard skip: the run clusters shard 0 and names every other shard and why."""
    dataset = Path(_write_dataset(tmp_path / "dataset", n_features=8 * (1 + len(DAMAGES)), shard_size=8))
    location = Location.open(str(dataset))
    named = {index: damage(location, index, kind) for index, kind in enumerate(DAMAGES, start=1)}
    done = _atlas_cluster(dataset, tmp_path / "clusters", "--on-bad-shard", "skip")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    summary = json.loads((tmp_path / "clusters" / "summary.json").read_text())
    assert summary["shards"] == [0] and sorted(map(int, summary["skipped_shards"])) == sorted(named)
    for index, name in named.items():
        assert summary["skipped_shards"][str(index)].startswith(f"{dataset}: {name}"), (index, name)
        assert f"shard {index} skipped: {dataset}: {name}" in done.stderr
    assert set(pd.read_parquet(tmp_path / "clusters" / "labels.parquet")["feature_id"]) == set(range(8))


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
    extraction = ExtractConfig(dest=str(tmp_path / "dataset"), source="embedded", model="tiny-random-bert",
                               max_length=48, doc_stride=24, shard_size=80, precision="fp32", bert_batch=16,
                               encoder_batch=128)
    # the heads' importance to the same model, joined to the atlas (--importance)
    importance(ImportanceConfig(model="tiny-random-bert", dev="embedded", max_length=48, doc_stride=24,
                                precision="fp32", out=str(tmp_path / "importance"), pruning_steps=2, random_orders=1))
    clustering = ClusterConfig(out=str(tmp_path / "clusters"), pca_components=8, k_max=5, exemplars=2, n_workers=2,
                               backend="cpu", top_clusters=3, min_samples_grid=[5],
                               importance=str(tmp_path / "importance"))
    result = full(extraction, clustering)
    out = tmp_path / "clusters"
    assert result["report"] == str(out / "report.html")
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(labels) == result["extraction"]["rows"]
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"kmeans_exemplars", "dbscan_heatmaps", "pca_variance", "k_search", "dbscan_grid"} <= figures
    assert {"heads_roles", "heads_consistency", "heads_importance"} <= figures  # format 3 has the role statistics
    heads = pd.read_parquet(out / "heads.parquet")
    scored = pd.read_parquet(tmp_path / "importance" / "importance.parquet")
    assert heads.merge(scored, on=["layer", "head"], suffixes=("", "_run")).eval("importance == importance_run").all()
    assert '"f1_drop"' in (out / "explorer.html").read_text()  # a colour of the explorer's heads grid
    assert {"pattern", "roles", "qa_difference", "qa_q", "mean_answer_from_question"} <= set(heads.columns)
    assert heads["qa_p"].between(0, 1).all() and heads["mean_answer_from_question"].notna().all()
    findings = {f["key"]: f for f in result["clustering"]["findings"]}
    assert {"dominant-cluster", "consistency", "roles", "agreement", "qa-heads", "stability",
            "importance-consistency", "representations", "head-distances"} <= set(findings)
    # a format-4 dataset: pooled maps and head divergences, so the representations and the map of the heads
    representations = pd.read_parquet(out / "representations.parquet")
    assert {"embedding", "pooled", "statistics"} <= set(representations["representation"])
    distances = pd.read_parquet(out / "head_distances.parquet")
    assert len(distances) == 8 * 7 // 2 and distances[["js", "embedding", "pooled"]].notna().all().all()
    assert findings["dominant-cluster"]["low"] <= findings["dominant-cluster"]["value"] <= findings["dominant-cluster"]["high"]
    assert "unknown" not in (out / "report.html").read_text()  # the source file is known: contexts, answerability


def test_dbscan_beyond_its_exact_rows_runs_dbscan_plus_plus_and_records_its_agreement(client, dataset):
    sample = _sample(client, dataset, SampleSpec("all"))
    config = ClusterConfig(pca_components=5, k_max=4, min_samples_grid=[5, 10], dbscan_exact_rows=500,
                           dbscan_core_sample=1000)
    run = run_clustering(CpuBackend(client), sample, config, MemoryBudget(2**30))
    params = run.params["dbscan"]
    assert params["method"] == "dbscan++" and params["core_sample"] == 1000 and set(run.grid["method"]) == {"dbscan++"}
    agreement = params["agreement_with_exact"]
    assert agreement["rows"] == 500 and agreement["core_sample"] == round(500 * 1000 / len(sample.rows))
    assert agreement["adjusted_rand"] > 0.9, agreement
    table = pd.crosstab(run.labels["dbscan"], sample.rows["layer"].to_numpy() % 3)
    assert (table.drop(index=-1, errors="ignore") > 0).sum(axis=1).max() == 1, "no DBSCAN++ cluster mixes layer groups"


def test_the_gpu_backend_runs_the_whole_clustering_with_the_engine_on_the_cpu(client, dataset):
    """Everything up to the CUDA calls: the GPU backend on CPU workers (no CUDA, no RAPIDS), its torch engine on
    the CPU device, against the CPU backend on the same sample."""
    from sklearn.metrics import adjusted_rand_score

    from tasks.cluster.gpu import GpuBackend

    sample = _sample(client, dataset, SampleSpec("all"))
    config = ClusterConfig(pca_components=5, k_max=4, min_samples_grid=[5, 10], dbscan_exact_rows=500,
                           dbscan_core_sample=1000, recluster_depth=2)
    cpu = run_clustering(CpuBackend(client), sample, config, MemoryBudget(2**30))
    gpu = run_clustering(GpuBackend(client), sample, config, MemoryBudget(2**30))
    np.testing.assert_array_equal(gpu.kth_distances, cpu.kth_distances)
    assert gpu.suggested_eps == cpu.suggested_eps
    pd.testing.assert_frame_equal(gpu.grid, cpu.grid)  # every cell: method, core sample, clusters, noise, sizes
    np.testing.assert_array_equal(gpu.labels["dbscan"], cpu.labels["dbscan"])
    assert gpu.params["dbscan"] == cpu.params["dbscan"]  # the agreement with exact DBSCAN too
    assert gpu.chosen_k == cpu.chosen_k and set(gpu.labels) == set(cpu.labels)
    for name in gpu.labels:  # KMeans and each re-clustering: Lloyd over the blocks, scikit-learn's partition
        assert adjusted_rand_score(cpu.labels[name], gpu.labels[name]) >= 0.99, name


def test_a_stage_over_the_memory_budget_stops_the_run_at_once_in_one_line(prefect_server, dataset, tmp_path, capsys):
    from flows.cluster import main

    with pytest.raises(SystemExit) as stopped:
        main(["--dataset", dataset, "--out", str(tmp_path / "out"), "--memory-budget", "0.00001", "--n-workers", "2",
              "--backend", "cpu"])
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r"error: sample: [a-z ]+: [\d,]+ rows need about [\d.]+ [KM]B, over the memory budget of "
                        r"10.5 KB a process \(--memory-budget\); .*", message), message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    ({"k_min": 100, "k_max": 120}, r"--k-min/--k-max: no k in 100..120 below the 72 sampled rows"),
    ({"k": 500}, r"--k: 500 clusters need more than the 72 sampled rows"),
])
def test_a_k_beyond_the_sampled_rows_is_named(client, dataset, flags, message):
    sample = _sample(client, dataset, SampleSpec("first", features_per_shard=1))
    with pytest.raises(InputError, match=message):
        run_clustering(CpuBackend(client), sample, ClusterConfig(pca_components=5, **flags), MemoryBudget(2**30))


def test_an_input_error_inside_a_run_is_logged_in_one_line(prefect_server, tmp_path, caplog):
    with pytest.raises(InputError):
        cluster(ClusterConfig(dataset=str(tmp_path / "nowhere"), out=str(tmp_path / "out")))
    errors = [r for r in caplog.records if r.name.startswith("prefect.flow_runs") and r.levelno >= logging.ERROR]
    assert errors and all(r.exc_info is None and r.exc_text is None for r in errors), "no traceback logged"
    assert any(r.getMessage().startswith("input error: ") and "no dataset.json" in r.getMessage() for r in errors)
    assert "Traceback" not in caplog.text


def test_a_dataset_whose_config_this_version_cannot_rebuild_clusters_without_exemplar_maps(prefect_server, tmp_path,
                                                                                            caplog):
    newer = _copy(str(REPO / "tests" / "data" / "dataset-v1"), tmp_path / "newer")
    record = json.loads((newer / "dataset.json").read_text())
    record["config"]["attention_kernel"] = "flash"  # a field that a newer version records
    (newer / "dataset.json").write_text(json.dumps(record))
    out = tmp_path / "clusters"
    result = cluster(ClusterConfig(dataset=str(newer), out=str(out), pca_components=5, k_max=4, exemplars=1,
                                   n_workers=2, backend="cpu", min_samples_grid=[5]))
    said = [r.getMessage() for r in caplog.records if "exemplar maps skipped" in r.getMessage()]
    assert len(said) == 1 and "attention_kernel: Extra inputs are not permitted" in said[0], said
    assert set(result["summary"]["clusterings"]) == {"kmeans", "dbscan", "kmeans_r1"}
    assert len(pd.read_parquet(out / "labels.parquet")) == 2 * 4 * 2 * 4  # every row of both shards labelled
    page = (out / "report.html").read_text()
    top = page[: page.index("<h2 id='Findings'>")]
    assert "<li>Exemplar attention maps are unavailable: " in top and "attention_kernel" in top
    assert not list((out / "figures").glob("*exemplars*")) and "Traceback" not in caplog.text


def test_atlas_checks_the_inputs_once_per_call(prefect_server, dataset, tmp_path, monkeypatch):
    """`atlas cluster` checked its inputs, then the flow file's main checked them again before the run."""
    import flows.cluster
    from flows.cli import COMMANDS, main
    from tasks.preflight import check_cluster

    calls = []

    def counted(config):
        calls.append(config.dataset)
        check_cluster(config)

    monkeypatch.setitem(COMMANDS, "cluster", COMMANDS["cluster"]._replace(check=counted))
    monkeypatch.setattr(flows.cluster, "check_cluster", counted)
    flags = ["--dataset", dataset, "--out", str(tmp_path / "clusters"), "--pca-components", "5", "--k", "3",
             "--exemplars", "0", "--backend", "cpu", "--min-samples-grid", "5", "--eps-grid", "1.0",
             "--stability-resamples", "2"]
    assert main(["cluster", *flags]) == 0
    assert calls == [dataset] and (tmp_path / "clusters" / "report.html").is_file()
