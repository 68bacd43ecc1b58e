"""The comparison on planted datasets (identical but for known heads), its refusals, the flow's outputs and the
demo's wiring on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from damage import damage
from pages import decoded_points, page_data
from planted import CHANGED, FAST, HEADS, SEP_RISE, write_dataset
from tiny import TINY

from flows.cli import main as atlas
from tasks.cluster.resources import MemoryBudget
from tasks.cluster.sample import SampleSpec
from tasks.compare.alignment import open_pair
from tasks.compare.demo import DEMO_B, DEMO_MODEL, demo_configs
from tasks.compare.explorer import maps_unavailable
from tasks.compare.findings import CompareFinding, changed_heads_finding, compare_findings, smallest_p
from tasks.compare.paired import read_pairs
from tasks.compare.summary import CompareSummary
from tasks.config import CompareConfig, ExtractConfig, FinetuneConfig
from tasks.errors import InputError
from tasks.groups import Projection
from tasks.storage.location import Location
from tasks.storage.shards import ShardError


def _planted(heads: pd.DataFrame) -> np.ndarray:
    return np.array([(layer, head) in CHANGED for layer, head in zip(heads["layer"], heads["head"])])


def _heads(table: pd.DataFrame, column: str) -> set[tuple[int, int]]:
    return {(r.layer, r.head) for r in table[table[column]].itertuples()}


def test_exactly_the_planted_heads_are_flagged_as_shifted_and_migrating(comparison):
    _, rows, result = comparison
    heads = result.heads
    assert len(rows) == 40 * 3 * HEADS and (heads["rows"] == 40).all()
    assert _heads(heads, "changed") == CHANGED
    assert _heads(heads, "migrated") == CHANGED
    planted = _planted(heads)
    assert (heads.loc[planted, "migration"] == 1).all() and (heads.loc[~planted, "migration"] == 0).all()
    assert heads.loc[planted, "cosine_distance"].min() > 100 * heads.loc[~planted, "cosine_distance"].max()
    assert heads.loc[planted, "energy_p"].max() < 0.01 < heads.loc[~planted, "energy_p"].min()


def test_statistic_changes_have_intervals_around_the_planted_rise_and_roles_follow(comparison):
    _, _, result = comparison
    heads = result.heads
    planted = _planted(heads)
    moved = heads[planted]
    assert ((moved["delta_sep_mass_low"] < SEP_RISE) & (SEP_RISE < moved["delta_sep_mass_high"])).all()
    assert (moved["delta_sep_mass_low"] > SEP_RISE - 0.01).all()
    assert heads.loc[~planted, "delta_sep_mass"].abs().max() < 0.005
    assert list(moved["roles_gained"]) == ["[SEP]"] * len(CHANGED) and (moved["roles_lost"] == "").all()
    assert (heads.loc[~planted, ["roles_gained", "roles_lost"]] == "").all().all()
    assert (moved["pattern_a"] == "heterogeneous").all() and (moved["pattern_b"] == "vertical").all()
    assert (heads.loc[~planted, "pattern_shift"] == 0).all()


def test_layer_aggregates_and_findings_point_at_the_last_layer(comparison):
    cfg, _, result = comparison
    layers = result.layers
    assert list(layers["changed_heads"]) == [0, 0, 2] and list(layers["migrated_heads"]) == [0, 0, 2]
    assert layers["displacement"].idxmax() == 2 and layers["migration"].idxmax() == 2
    assert list(layers["migration"]) == [0, 0, 0.5]
    assert layers.loc[2, "delta_sep_mass_low"] > 0.15 and layers.loc[:1, "delta_sep_mass"].abs().max() < 0.005
    findings = {f.key: f for f in compare_findings(result, cfg)}
    assert findings[CompareFinding.DEPTH].text.startswith("The last third of the layers changed most")
    depth, changed = findings[CompareFinding.DEPTH], findings[CompareFinding.CHANGED_HEADS]
    assert 0 < depth.low <= depth.value <= depth.high
    assert "2 of 12 heads changed" in changed.text and "L2H1" in changed.text and "L2H3" in changed.text
    assert findings[CompareFinding.MIGRATION].value == pytest.approx(2 / 12)
    assert "sep_mass in layer 2" in findings[CompareFinding.STATISTIC].text


def test_too_few_features_to_flag_any_head_is_said_beside_the_zero():
    assert smallest_p(4, 1000) == 1 / 8 and smallest_p(40, 200) == 1 / 201
    heads = pd.DataFrame({"layer": [0, 1], "head": [0, 0], "changed": [False, False], "energy_distance": [0.1, 0.2]})
    few = changed_heads_finding(heads, 4, CompareConfig())
    assert few.text.startswith("0 of 2 heads changed") and "With 4 features a head's p-value cannot go below 0.125" in few.text
    assert "cannot go below" not in changed_heads_finding(heads, 40, CompareConfig()).text


REFUSALS = {
    "source": (dict(sha256="1" * 64), "made from another SQuAD file (source sha256 111111111111..."),
    "grid": (dict(layers=2), "a grid of 2 layers x 4 heads against 3 x 4"),
    "features": (dict(features=20), "shards [0] published against [0, 1]"),
    "questions": (dict(question_prefix="x"), "feature 0 has question_id 'x0' against 'q0'"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_a_pair_of_other_features_is_refused_in_one_line_before_anything_starts(case, planted, tmp_path, capsys):
    changes, fragment = REFUSALS[case]
    other = write_dataset(tmp_path / "other", moved=True, **changes)
    out = tmp_path / "compare"
    assert atlas(["compare", "--a", planted[0], "--b", other, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {other} does not hold the same features as {planted[0]}")
    assert fragment in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".compare*"))


@pytest.mark.parametrize("kind", ["truncated file", "damaged trailing magic", "manifest not JSON"])
def test_a_damaged_shard_of_either_dataset_is_named(kind, planted, tmp_path):
    b = shutil.copytree(planted[1], tmp_path / "b")
    named = damage(Location.open(str(b)), 1, kind)
    with pytest.raises(ShardError, match=f"^{b}: {named}"):
        pair = open_pair(planted[0], str(b), None, None)
        read_pairs(pair, SampleSpec(), Projection(pca_components=5, pca_fit_rows=1000), MemoryBudget(2**30))


def test_maps_of_a_dataset_whose_config_this_version_cannot_rebuild_are_left_out_with_the_reason(planted, tmp_path):
    cfg = CompareConfig(a=planted[0], b=str(tmp_path / "b"))
    shutil.copytree(planted[1], cfg.b)
    assert maps_unavailable(cfg, open_pair(cfg.a, cfg.b, None, None)) is None
    record = json.loads((Path(cfg.b) / "dataset.json").read_text())
    record["config"]["scaling"] = "a newer scaling"
    (Path(cfg.b) / "dataset.json").write_text(json.dumps(record))
    why = maps_unavailable(cfg, open_pair(cfg.a, cfg.b, None, None))
    assert why.startswith(f"{cfg.b}: the config in dataset.json cannot be rebuilt by this version of the code "
                          "(scaling: ")
    assert "\n" not in why


def test_the_flow_writes_every_output_and_replaces_them_whole(planted, prefect_server, tmp_path):
    from flows.compare import main

    out = tmp_path / "compare"
    flags = ["--a", planted[0], "--b", planted[1], "--out", str(out), "--permutations", "200", "--bootstrap", "50",
             "--explorer-points", "100", "--explorer-maps", "0"]  # planted datasets have no model to recompute maps
    (out / "stale").mkdir(parents=True)
    result = main(flags)
    assert result["report"] == str(out / "report.html")
    heads, layers = pd.read_parquet(out / "compare.parquet"), pd.read_parquet(out / "layers.parquet")
    assert len(heads) == 12 and len(layers) == 3
    pd.testing.assert_frame_equal(pd.read_csv(out / "compare.csv")[["layer", "head", "changed"]],
                                  heads[["layer", "head", "changed"]])
    summary = CompareSummary.model_validate(json.loads((out / "summary.json").read_text()))
    assert summary.changed_heads == summary.migrated_heads == ["L2H1", "L2H3"]
    assert summary.migrating_share == pytest.approx(2 / 12, abs=1e-4) and summary.rows == 480
    assert summary.a.dataset == planted[0] and [f.key for f in summary.findings][:3] == ["depth", "changed_heads", "migration"]
    page = (out / "report.html").read_text()
    assert all(f.text.split(":")[0].replace("'", "&#x27;") in page for f in summary.findings)
    assert page.count("data:image/png;base64,") == len(list((out / "figures").glob("*.png"))) == 3
    explorer = page_data(out / "explorer.html")
    assert pd.DataFrame(explorer["heads_table"]["columns"])["displacement"].tolist() == \
        pytest.approx(heads["displacement"].tolist())
    assert decoded_points(explorer)["model"].value_counts().to_dict() == {"A": 50, "B": 50}
    assert not (out / "stale").exists() and not list(tmp_path.glob(".compare*"))



def test_the_flow_and_the_command_refuse_an_out_over_a_dataset(planted, prefect_server, tmp_path, capsys,
                                                                 monkeypatch):
    from flows.compare import compare

    b = shutil.copytree(planted[1], tmp_path / "data" / "b")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match=f"^--out {b}: is the dataset folder {b}"):
        compare(CompareConfig(a=planted[0], b=str(b), out=str(b), **FAST))
    assert atlas(["compare", "--a", planted[0], "--b", str(b), "--out", str(tmp_path / "data")]) == 2
    monkeypatch.chdir(tmp_path)
    assert atlas(["compare", "--out", "outputs"]) == 2  # the demo writes its datasets under outputs/
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 2 and lines[0].startswith(f"error: --out {tmp_path / 'data'}: holds the dataset folder {b}; ")
    assert lines[1].startswith("error: --out outputs: holds the dataset folder outputs/dataset; ")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_the_demo_fine_tunes_then_extracts_both_models_and_compares_them(prefect_server, tmp_path):
    from flows.compare import compare, demo_datasets

    assert demo_configs(CompareConfig()) == (ExtractConfig(new_version=True),
                                             FinetuneConfig(max_steps=4, out=DEMO_MODEL), DEMO_B)
    extraction = ExtractConfig(**TINY, dest=str(tmp_path / "a"), shards=[0])
    tuning = FinetuneConfig(model="tiny-random-bert", max_length=48, doc_stride=24, max_steps=2, batch_size=8,
                            learning_rate=1e-2, precision="fp32", out=str(tmp_path / "tuned"))
    a, b = demo_datasets(extraction, tuning, str(tmp_path / "b"))
    assert json.loads((Path(b) / "dataset.json").read_text())["config"]["model"] == str(tmp_path / "tuned")
    result = compare(CompareConfig(a=a, b=b, out=str(tmp_path / "compare"), k=4, **FAST))
    summary = result["summary"]
    assert summary["rows"] == 60 * 8 and summary["b"]["model"] == str(tmp_path / "tuned")
    moved = pd.read_parquet(tmp_path / "compare" / "compare.parquet")
    assert (moved["displacement"] > 0).all(), "fine-tuning at lr 1e-2 moves every head's maps"
    maps = pd.DataFrame(page_data(tmp_path / "compare" / "explorer.html")["maps"])
    top = {(r.layer, r.head) for r in moved.nlargest(3, "displacement").itertuples()}
    assert set(zip(maps["layer"], maps["head"])) == top and maps["feature"].nunique() == 2
    assert sorted(maps["caption"].unique()) == [f"A: {TINY['model']}", f"B: {tmp_path / 'tuned'}"]
    assert (maps.groupby("caption").size() == 3 * 2).all()


def test_the_compare_deployment_points_at_the_flow_with_a_valid_config():
    import yaml
    from tiny import REPO

    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    deployment = deployments["compare"]
    assert deployment["entrypoint"] == "flows/compare.py:compare"
    config = CompareConfig(**deployment["parameters"]["config"])
    assert (config.a, config.b, config.out) == ("outputs/dataset", DEMO_B, "outputs/compare")
