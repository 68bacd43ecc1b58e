"""The cluster and compare configs are nested by concern (sampling, PCA, roles, intervals, DBSCAN, findings,
compute) and still take, dump and show their fields flat: the flags, prefect.yaml and Prefect's parameters keep
one name each."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from tasks.cli import config_parser, configs_from_args, leaves
from tasks.config import ClusterConfig, CompareConfig, ImportanceConfig
from tasks.groups import Grouped, RoleRules
from tasks.research.study import StudySettings
from tiny import REPO

# one value a leaf, none its default: what a flat config of today names, field by field
CLUSTER_FLAT = {
    "dataset": "d", "credentials": "aws-credentials/x", "newest": True, "on_bad_shard": "skip", "out": "o",
    "shards": [1, 2], "sample": "random", "features_per_shard": 7, "fraction": 0.25, "seed": 3, "standardize": True,
    "pca_components": 9, "pca_fit_rows": 500, "k": 5, "k_min": 3, "k_max": 6, "silhouette_sample": 100,
    "kmeans_rows": 1000, "knee_sample": 200, "dbscan_exact_rows": 300, "dbscan_core_sample": 400,
    "memory_budget": 1.5, "eps": 0.7, "min_samples": 4, "eps_grid": [0.5, 0.9], "min_samples_grid": [4, 8],
    "recluster_k": 3, "recluster_depth": 2, "exemplars": 1, "top_clusters": 2, "explorer_points": 50,
    "representation_rows": 600,
    "role_threshold": 0.4, "mixed_threshold": 0.1, "block_threshold": 0.6, "qa_statistic": "sep_mass", "importance": "i",
    "bootstrap": 20, "permutations": 30, "stability_resamples": 3, "dominant_share": 0.6, "qa_alpha": 0.01,
    "small_clusters": 4, "scheduler": "tcp://h:8786", "backend": "cpu", "n_workers": 2, "worker_kind": "threads",
}
COMPARE_FLAT = {
    "a": "x", "b": "y", "credentials": "gcp-credentials/x", "out": "o", "shards": [0], "sample": "first",
    "features_per_shard": 2, "fraction": 0.5, "seed": 1, "pca_components": 4, "pca_fit_rows": 40, "k": 3,
    "kmeans_rows": 100, "distance_rows": 10, "bootstrap": 11, "permutations": 12, "alpha": 0.1,
    "role_threshold": 0.3, "mixed_threshold": 0.15, "block_threshold": 0.7, "memory_budget": 2.0,
    "explorer_points": 10, "explorer_maps": 1, "demo_steps": 2,
}


@pytest.mark.parametrize("model, flat", [(ClusterConfig, CLUSTER_FLAT), (CompareConfig, COMPARE_FLAT)])
def test_a_flat_config_of_every_leaf_validates_to_the_same_values_and_dumps_flat(model, flat):
    assert set(flat) == set(leaves(model))
    config = model(**flat)
    assert config.model_dump() == flat
    assert model.model_validate_json(config.model_dump_json()) == config
    nested = {name: value.model_dump() if name in model.groups() else value for name, value in config}
    assert model(**nested) == config


def test_groups_are_built_once_and_flat_fields_override_a_given_group():
    config = ClusterConfig(**CLUSTER_FLAT)
    assert config.roles == RoleRules(role_threshold=0.4, mixed_threshold=0.1, block_threshold=0.6)
    assert (config.sampling.sample, config.pca.pca_fit_rows, config.density.eps_grid) == ("random", 500, [0.5, 0.9])
    assert (config.intervals.permutations, config.compute.backend, config.findings.qa_alpha) == (30, "cpu", 0.01)
    assert ClusterConfig(roles=RoleRules(mixed_threshold=0.1), role_threshold=0.3).roles == \
        RoleRules(role_threshold=0.3, mixed_threshold=0.1)
    settings = StudySettings.of(config)
    assert settings.rules is config.roles and settings.thresholds is config.findings
    assert (settings.resampling.bootstrap, settings.resampling.permutations, settings.resampling.seed) == (20, 30, 3)


@pytest.mark.parametrize("model", [ClusterConfig, CompareConfig])
def test_every_leaf_is_one_flag_and_unknown_fields_are_refused(model):
    names = [leaf for name in model.model_fields for leaf in (
        model.groups()[name].model_fields if name in model.groups() else [name])]
    assert len(names) == len(set(names)) == len(leaves(model))
    with pytest.raises(ValidationError):
        model(no_such_field=1)
    with pytest.raises(ValidationError):
        model(roles={"no_such_field": 1})


def test_a_group_default_set_by_its_config_is_the_flags_default():
    assert ClusterConfig().intervals.permutations == 10_000 and CompareConfig().intervals.permutations == 1000
    assert leaves(CompareConfig)["permutations"][1] == 1000
    assert "(default: 1000)" in config_parser([CompareConfig], "compare").format_help().replace("\n", " ")
    (config,) = configs_from_args([CompareConfig], "compare", ["--permutations", "50", "--role-threshold", "0.3"])
    assert (config.intervals.permutations, config.roles.role_threshold) == (50, 0.3)


def test_a_bad_value_of_a_nested_field_names_its_flag(capsys):
    with pytest.raises(SystemExit):
        configs_from_args([ClusterConfig], "cluster", ["--fraction", "2"])
    assert "error: --fraction: Input should be less than or equal to 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        configs_from_args([ClusterConfig], "cluster", ["--eps", "-1", "--shards", "1"])
    assert "error: --eps: Input should be greater than 0" in capsys.readouterr().err


@pytest.mark.parametrize("model", [ClusterConfig, CompareConfig])
def test_the_json_schema_that_prefect_shows_and_enforces_lists_the_flat_fields(model):
    schema = model.model_json_schema()
    assert list(schema["properties"]) == list(leaves(model))
    assert schema["additionalProperties"] is False
    assert schema["properties"]["role_threshold"]["default"] == 0.5
    assert schema["properties"]["permutations"]["default"] == model().intervals.permutations


def test_prefect_yamls_parameters_validate_to_the_values_they_name():
    deployments = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    cluster = ClusterConfig(**deployments["cluster"]["parameters"]["config"])
    assert (cluster.dataset, cluster.newest, cluster.out) == ("outputs/dataset", True, "outputs/clusters")
    gpu = ClusterConfig(**deployments["full-gpu"]["parameters"]["clustering"])
    assert gpu.compute.backend == "gpu" and gpu.model_dump() == {**ClusterConfig().model_dump(), "backend": "gpu"}
    compare = CompareConfig(**deployments["compare"]["parameters"]["config"])
    assert compare.model_dump() == {**CompareConfig().model_dump(), **deployments["compare"]["parameters"]["config"]}
    for name in ("importance", "importance-gpu"):
        importance = ImportanceConfig(**deployments[name]["parameters"]["config"])
        assert importance.model_dump() == {**ImportanceConfig().model_dump(), **deployments[name]["parameters"]["config"]}
    assert ImportanceConfig(**deployments["importance-gpu"]["parameters"]["config"]).model == (
        deployments["finetune-gpu"]["parameters"]["config"]["out"]), "it scores what finetune-gpu publishes"


def test_prefect_validates_a_flat_parameter_dict_into_the_nested_config():
    from prefect.utilities.callables import parameter_schema

    from flows.cluster import cluster

    schema = parameter_schema(cluster.fn).model_dump()
    assert set(schema["properties"]["config"]["default"]) == set(leaves(ClusterConfig))
    parameters = cluster.validate_parameters({"config": {"pca_components": 5, "backend": "cpu"}})
    assert parameters["config"] == ClusterConfig(pca_components=5, backend="cpu")
    assert issubclass(ClusterConfig, Grouped)

