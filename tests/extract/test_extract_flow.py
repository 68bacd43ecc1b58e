"""The extraction flow end to end on a real Prefect server: shards, resume, caching, guards, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tiny import ROWS_PER_FEATURE, TINY, run_flow

from flows.extract import extract
from tasks.config import ExtractConfig
from tasks.extract.maps import STATISTICS
from tasks.squad.features import tokenize
from tasks.squad.load import load_squad
from tasks.storage.dataset import DatasetMismatchError
from tasks.storage.location import Location
from tasks.storage.reading import read_shard


@pytest.fixture(autouse=True)
def _server(prefect_server):
    yield


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, prefect_server, tokenizer):
    dest = tmp_path_factory.mktemp("runs") / "dataset"
    config = ExtractConfig(dest=str(dest), **TINY)
    summary = extract(config)
    features = tokenize(load_squad("embedded").examples, tokenizer, 48, 24, 64)
    return config, summary, features


def _shards(dest: str) -> dict[int, pa.Table]:
    destination = Location.open(dest)
    count = destination.read_json("dataset.json")["shards"]["count"]
    return {i: read_shard(destination, i) for i in range(count)}


def _state(dest: str) -> dict[str, tuple[int, str]]:
    """Modification time and content of every file, to prove what a re-run did not touch."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in Path(dest).iterdir()}


def test_every_feature_layer_and_head_has_exactly_one_row(first_run):
    config, summary, features = first_run
    tables = _shards(config.dest)
    assert len(tables) == summary["shards"] == -(-len(features) // 60) >= 3
    table = pa.concat_tables(tables.values())
    assert table.num_rows == summary["rows"] == len(features) * ROWS_PER_FEATURE
    keys = {(f, layer, h) for f, layer, h in zip(*(table[c].to_pylist() for c in ("feature_id", "layer", "head")))}
    assert len(keys) == table.num_rows
    assert {k[0] for k in keys} == set(range(len(features)))
    rows_of = table["feature_id"].to_numpy()[::ROWS_PER_FEATURE]
    assert table["question_id"].to_pylist()[::ROWS_PER_FEATURE] == [features.question_id[f] for f in rows_of]
    assert (table["span"].to_numpy()[::ROWS_PER_FEATURE] == features.span[rows_of]).all()
    embeddings = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    assert embeddings.shape == (table.num_rows, 2048) and np.isfinite(embeddings).all()
    assert len(np.unique(embeddings[:, :8], axis=0)) > table.num_rows // 2, "maps give distinct embeddings"
    for name in STATISTICS:
        values = table[name].to_numpy(zero_copy_only=False)  # nulls read as NaN
        if name.startswith("answer_"):  # null where the window holds no gold answer
            assert np.isfinite(values).any() and table[name].null_count == np.isnan(values).sum()
        else:
            assert np.isfinite(values).all(), name
    assert (table["diag_mass"].to_numpy() <= 1).all() and (table["entropy"].to_numpy() >= 0).all()


def test_dataset_record_describes_the_run(first_run):
    config, summary, features = first_run
    record = json.loads((Path(config.dest) / "dataset.json").read_text())
    assert record["fingerprint"] == summary["fingerprint"]
    assert record["config"]["max_length"] == 48 and record["config"]["scaling"] == "map"
    assert record["model"]["layers"] == 2 and record["model"]["heads"] == 4
    assert record["encoder"]["weights"] == "random-seed0"
    assert record["source"]["features"] == len(features)
    for index in range(summary["shards"]):
        manifest = json.loads((Path(config.dest) / f"shard-{index:06d}.json").read_text())
        assert manifest["fingerprint"] == record["fingerprint"]


def test_a_rerun_skips_published_shards(first_run):
    config, summary, _ = first_run
    before = _state(config.dest)
    again = extract(config)
    assert again["extracted_now"] == 0 and again["rows"] == summary["rows"]
    assert _state(config.dest) == before


def test_a_shard_whose_manifest_is_missing_is_redone_and_only_it(first_run, tmp_path):
    config, summary, _ = first_run
    dest = tmp_path / "copy"
    dest.mkdir()
    for path in Path(config.dest).iterdir():
        (dest / path.name).write_bytes(path.read_bytes())
    expected = _shards(str(dest))
    (dest / "shard-000001.json").unlink()  # killed between data and manifest ...
    (dest / "shard-000001.parquet").write_bytes(b"PAR1 half written")  # ... with a partial upload
    untouched = {k: v for k, v in _state(str(dest)).items() if not k.startswith("shard-000001")}
    rerun = extract(config.model_copy(update={"dest": str(dest)}))
    assert rerun["extracted_now"] == 1
    after = _state(str(dest))
    assert {k: v for k, v in after.items() if not k.startswith("shard-000001")} == untouched
    assert _shards(str(dest))[1].equals(expected[1])


def test_shard_tasks_on_two_dask_workers_give_the_same_dataset(first_run, tmp_path):
    config, summary, _ = first_run
    on_dask = config.model_copy(update={"dest": str(tmp_path / "dask"), "runner": "dask", "backend": "cpu",
                                        "n_workers": 2})
    result = extract(on_dask)
    assert result["fingerprint"] == summary["fingerprint"] and result["extracted_now"] == summary["shards"]
    tables, expected = _shards(on_dask.dest), _shards(config.dest)
    assert sorted(tables) == sorted(expected)
    for index, table in tables.items():
        assert table.equals(expected[index]), f"shard {index}"


def test_another_config_into_the_same_destination_is_refused(first_run):
    config, _, _ = first_run
    before = _state(config.dest)
    with pytest.raises(DatasetMismatchError, match=r"differs in: config.scaling"):
        extract(config.model_copy(update={"scaling": "faithful"}))
    assert _state(config.dest) == before


def test_only_the_chosen_shards(tmp_path):
    config = ExtractConfig(dest=str(tmp_path / "dataset"), shards=[1], **TINY)
    summary = extract(config)
    assert summary["shards"] == 1
    assert sorted(p.name for p in Path(config.dest).glob("shard-*")) == ["shard-000001.json", "shard-000001.parquet"]


def test_faithful_modes_run_end_to_end(first_run, tmp_path):
    config, _, _ = first_run
    faithful = config.model_copy(update={"dest": str(tmp_path / "f"), "scaling": "faithful", "bn_mode": "faithful",
                                         "shards": [0], "dtype": "float16"})
    extract(faithful)
    table = read_shard(Location.open(faithful.dest), 0)
    assert table.schema.field("embedding").type.value_type == pa.float16()
    map_mode = _shards(config.dest)[0]
    assert table["feature_id"].equals(map_mode["feature_id"])
    assert not np.allclose(np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32),
                           np.stack(map_mode["embedding"].to_numpy(zero_copy_only=False)), rtol=1e-2)


def test_cli_help_lists_the_config_flags():
    result = run_flow("extract.py", "--help")
    assert result.returncode == 0
    for flag in ExtractConfig.model_fields:
        assert f"--{flag.replace('_', '-')}" in result.stdout
    assert "{map,faithful}" in result.stdout


def test_cli_bad_input_is_one_clear_error_and_writes_nothing(tmp_path):
    bad = tmp_path / "train.json"
    bad.write_text('{"data": [{"title": "T", "paragraphs": [{"context": "", "qas": []}]}]}')
    dest = tmp_path / "dataset"
    result = run_flow("extract.py", "--source", str(bad), "--dest", str(dest), "--model", "tiny-random-bert")
    assert result.returncode != 0
    assert f"error: {bad}: data[0] ('T') paragraphs[0].context: empty context" in result.stderr
    assert not dest.exists()


def test_cli_invalid_flag_value_names_the_flag(tmp_path):
    result = run_flow("extract.py", "--max-length", "8", "--dest", str(tmp_path / "d"))
    assert result.returncode == 2 and "--max-length" in result.stderr
    result = run_flow("extract.py", "--max-length", "64", "--dest", str(tmp_path / "d"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--doc-stride (128) must be smaller than --max-length (64)" in result.stderr
    assert not (tmp_path / "d").exists()


def test_transient_faults_are_retried_and_bad_input_is_not():
    from prefect import flow, task

    from flows.retries import retry_if_transient
    from tasks.squad.load import SquadFormatError

    attempts: list[str] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient)
    def flaky(error: Exception) -> str:
        attempts.append(type(error).__name__)
        if len(attempts) == 1:
            raise error
        return "done"

    @flow
    def run(error: Exception) -> str:
        return flaky(error)

    assert run(ConnectionResetError("reset by peer")) == "done"
    assert attempts == ["ConnectionResetError", "ConnectionResetError"]
    attempts.clear()
    with pytest.raises(SquadFormatError):
        run(SquadFormatError("bad.json: missing key 'data'"))
    assert attempts == ["SquadFormatError"]
