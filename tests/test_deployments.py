"""prefect.yaml deployed to a real Prefect server and run by a real process worker, as a user does it from the
README: pools, `prefect deploy --all`, a worker, a run of `full` triggered through the API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from storage_servers import free_port, wait_for_port
from tiny import REPO, TINY

PREFECT = str(Path(sys.executable).with_name("prefect"))


def _data(artifact) -> list | dict:
    """A table artifact's rows (the API returns them as JSON text)."""
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def _prefect(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A Prefect server with its own home, the work pools, every deployment of prefect.yaml, and a process
    worker on the atlas-cpu pool whose code is this checkout. Yields (api_url, environment)."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api, "PREFECT_UI_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    logs = home / "logs"
    logs.mkdir()
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=open(logs / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    worker = None
    try:
        wait_for_port(port, timeout=600)
        _prefect(env, "config", "view")  # the CLI reaches the server's settings
        for pool in ("atlas-cpu", "atlas-gpu"):
            _prefect(env, "work-pool", "create", pool, "--type", "process")
        # ATLAS_HOME set in the deploying shell to somewhere else: the runs must still find the code where the
        # worker's ATLAS_HOME says
        _prefect({**env, "ATLAS_HOME": str(home / "not-the-checkout")}, "--no-prompt", "deploy", "--all")
        worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "atlas-cpu"], cwd=home,
                                  env={**env, "ATLAS_HOME": str(REPO)},
                                  stdout=open(logs / "worker.log", "w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        yield api, env
    finally:
        for process in (worker, server):
            if process is not None:
                _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group, and SIGKILL where that is not enough in 30 s (the worker's CLI wrapper
    can hang on its shutdown)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_the_full_deployment_runs_on_a_worker_with_a_task_per_shard_artifacts_and_files(deployed, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, _ = deployed
    parameters = {
        "extraction": {**TINY, "dest": str(tmp_path / "dataset")},
        "clustering": {"out": str(tmp_path / "clusters"), "pca_components": 5, "k_max": 4, "exemplars": 1,
                       "n_workers": 2, "backend": "cpu", "min_samples_grid": [5]},
    }
    with temporary_settings({PREFECT_API_URL: api}):
        run = run_deployment("full/full", parameters=parameters, timeout=900)
        assert run.state.is_completed(), run.state
        with get_client(sync_client=True) as client:
            task_runs = client.read_task_runs()
            artifacts = {a.key: a for a in client.read_artifacts() if a.key}
            schedule = client.read_deployment_by_name("cluster/cluster").schedules

    manifests = sorted((tmp_path / "dataset").glob("shard-*.json"))
    assert len(manifests) >= 3
    shard_runs = {t.name: t for t in task_runs if t.name.startswith("shard-")}
    assert set(shard_runs) == {f"shard-{i}" for i in range(len(manifests))}
    assert all(t.state.is_completed() for t in shard_runs.values())
    assert {"check-destination", "plan-extraction", "load-sample", "cluster", "report"} <= \
        {t.name.rsplit("-", 1)[0] for t in task_runs}

    assert {"extract-progress", "extract-summary", "extract-shards", "cluster-report", "cluster-figures-findings",
            "k-search", "dbscan-grid", "cluster-sizes-kmeans"} <= set(artifacts)
    assert artifacts["extract-progress"].data == 100
    shard_table = _data(artifacts["extract-shards"])
    assert [row["shard"] for row in shard_table] == list(range(len(manifests)))
    galleries = [a.data for key, a in artifacts.items() if key.startswith("cluster-figures-")]
    assert sum(g.count("](data:image/png;base64,") for g in galleries) >= 8
    assert max(len(g.encode()) for g in galleries) <= 1_000_000  # no event refused by the server

    rows = sum(json.loads(m.read_text())["rows"] for m in manifests)
    assert len(pd.read_parquet(tmp_path / "clusters" / "labels.parquet")) == rows == sum(r["rows"] for r in shard_table)
    assert (tmp_path / "clusters" / "report.html").is_file()

    assert len(schedule) == 1 and schedule[0].slug == "daily-recluster"
    assert schedule[0].schedule.cron == "0 3 * * *" and schedule[0].schedule.timezone == "UTC"


def test_a_redeploy_keeps_the_schedule_state_the_user_set(deployed):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleUpdate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, env = deployed
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        for active in (False, True):
            deployment = client.read_deployment_by_name("cluster/cluster")
            (schedule,) = deployment.schedules
            client.update_deployment_schedule(deployment.id, schedule.id, active=active)  # as the UI's toggle
            _prefect(env, "--no-prompt", "deploy", "--all")
            (after,) = client.read_deployment_by_name("cluster/cluster").schedules
            assert (after.id, after.active, after.schedule.cron) == (schedule.id, active, "0 3 * * *")
