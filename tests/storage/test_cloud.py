"""Extraction and clustering against object storage on 127.0.0.1: GCS and S3 end to end, injected faults,
runs killed at chosen moments, permissions, and credentials from Prefect blocks that never leak."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import uuid

import fsspec
import pandas as pd
import pytest
from small_disk import on_small_disk
from storage_servers import FaultProxy, MotoServer
from tiny import REPO, TINY, assert_same_rows, dataset_tables, run_flow, tiny_flags

from flows.cluster import cluster
from flows.extract import extract
from tasks.config import ClusterConfig, ExtractConfig
from tasks.storage.faults import StorageError
from tasks.storage.location import Location

ENDPOINT_VARIABLE = {"gs": "STORAGE_EMULATOR_HOST", "s3": "AWS_ENDPOINT_URL"}


@pytest.fixture(autouse=True)
def _server(prefect_server):
    yield


def _objects(url: str) -> list[str]:
    location = Location.open(url)
    return sorted(p.rsplit("/", 1)[-1] for p in location.fs.find(location.root))


@pytest.mark.parametrize("protocol", ["gs", "s3"])
def test_a_location_sees_what_others_wrote_after_it_listed_the_folder(protocol, object_stores):
    """Listings are never served from a cache: a re-run, a scheduled job or a worker that listed a dataset
    before must still see the shards published since."""
    url = f"{protocol}://atlas/{uuid.uuid4().hex}/dataset"
    mine = Location.open(url)
    mine.write_json("shard-000000.json", {"shard": 0})
    assert mine.fs.glob(mine.path("*.json")) == [mine.path("shard-000000.json")]
    another_process = fsspec.filesystem(protocol, skip_instance_cache=True)
    another_process.pipe_file(mine.path("shard-000001.json"), b'{"shard": 1}')
    assert mine.read_json("shard-000001.json") == {"shard": 1}
    assert len(mine.fs.glob(mine.path("*.json"))) == 2


@pytest.mark.parametrize("protocol", ["gs", "s3"])
def test_extraction_and_clustering_on_object_storage(protocol, object_stores, reference, tmp_path):
    url = f"{protocol}://atlas/{uuid.uuid4().hex}/dataset"
    summary = extract(ExtractConfig(dest=url, **TINY))
    assert summary["dest"] == url and summary["extracted_now"] == len(reference)
    assert_same_rows(dataset_tables(url), reference)
    shards = [f"shard-{i:06d}.{ext}" for i in range(len(reference)) for ext in ("json", "parquet")]
    assert _objects(url) == sorted(["dataset.json", *shards]), "no probe, staging or partial objects"
    assert extract(ExtractConfig(dest=url, **TINY))["extracted_now"] == 0

    out = tmp_path / "clusters"
    result = cluster(ClusterConfig(dataset=url, out=str(out), pca_components=5, k_max=4, exemplars=1,
                                   top_clusters=2, n_workers=2, backend="cpu", min_samples_grid=[5]))
    labels = pd.read_parquet(out / "labels.parquet")
    assert len(labels) == sum(t.num_rows for t in reference.values())
    assert result["summary"]["dataset"] == url and (out / "figures" / "kmeans_exemplars.png").is_file()


@pytest.mark.parametrize("protocol", ["gs", "s3"])
def test_injected_resets_and_503s_are_retried_and_the_dataset_equals_the_fault_free_one(
        protocol, object_stores, reference):
    url = f"{protocol}://atlas/{uuid.uuid4().hex}/dataset"
    with FaultProxy(object_stores[protocol].url, fault_rate=0.3, seed=3) as proxy:
        result = run_flow("extract.py", "--dest", url, *tiny_flags(), **{ENDPOINT_VARIABLE[protocol]: proxy.url})
    assert result.returncode == 0, result.stderr[-3000:]
    assert proxy.faults["503"] >= 3 and proxy.faults["reset"] >= 3, proxy.faults
    assert_same_rows(dataset_tables(url), reference)


def test_an_upload_failing_past_the_clients_retries_is_retried_without_computing_the_shard_again(
        object_stores, reference):
    """The store answers 503 to the first PUTs of shard 1's Parquet file, more than the S3 client retries (s3fs
    tries each request 5 times here, botocore once: AWS_MAX_ATTEMPTS=1)."""
    url = f"s3://atlas/{uuid.uuid4().hex}/dataset"
    refused: list[str] = []

    def refuse_the_first_uploads(method: str, path: str) -> str | None:
        if method == "PUT" and path.split("?")[0].endswith("shard-000001.parquet") and len(refused) < 7:
            refused.append(path)
            return "503"
        return None

    with FaultProxy(object_stores["s3"].url, hook=refuse_the_first_uploads) as proxy:
        result = run_flow("extract.py", "--dest", url, *tiny_flags(), AWS_ENDPOINT_URL=proxy.url, AWS_MAX_ATTEMPTS="1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert len(refused) == 7
    assert "Retry 1/" not in output, "the shard task was not run again"
    assert output.count("shard-000001: 480 rows computed") == 1, output[-3000:]
    assert re.search(r"publishing shard-000001 .*trying again in", output), output[-3000:]
    assert_same_rows(dataset_tables(url), reference)


def test_an_upload_failing_past_every_retry_ends_the_run_in_one_line_without_computing_the_shard_again(
        object_stores):
    url = f"s3://atlas/{uuid.uuid4().hex}/dataset"

    def refuse_every_upload(method: str, path: str) -> str | None:
        return "503" if method == "PUT" and path.split("?")[0].endswith("shard-000001.parquet") else None

    with FaultProxy(object_stores["s3"].url, hook=refuse_every_upload) as proxy:
        result = run_flow("extract.py", "--dest", url, *tiny_flags(shards="1"), AWS_ENDPOINT_URL=proxy.url,
                          AWS_MAX_ATTEMPTS="1")
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: {url}: cannot publish shard-000001: the storage still fails after every retry ("), output[-3000:]
    assert output.count("shard-000001: 480 rows computed") == 1 and "Retry 1/" not in output, output[-3000:]
    assert _objects(url) == ["dataset.json"]


def _killed_at(url: str, endpoint: str, upstream: str, target: str) -> tuple[list[tuple[str, str]], int]:
    """Runs the extraction through a proxy that SIGKILLs it when it sends a write whose path ends with
    `target`, before that write reaches the store. Returns the requests seen and the exit code."""
    running: dict = {}

    def kill_on_target(method: str, path: str) -> str | None:
        if method in ("PUT", "POST") and path.split("?")[0].endswith(target) and "process" in running:
            os.kill(running["process"].pid, signal.SIGKILL)
            return "drop"
        return None

    with FaultProxy(upstream, hook=kill_on_target) as proxy:
        running["process"] = run_flow("extract.py", "--dest", url, *tiny_flags(), wait=False,
                                      **{endpoint: proxy.url})
        running["process"].wait()
    return proxy.requests, running["process"].returncode


@pytest.mark.parametrize("target, published_data", [("shard-000001.parquet", False), ("shard-000001.json", True)],
                         ids=["mid-upload", "between-data-and-manifest"])
def test_a_run_killed_while_publishing_resumes_to_exactly_the_right_rows(target, published_data, object_stores,
                                                                        reference):
    url = f"s3://atlas/{uuid.uuid4().hex}/dataset"
    requests, code = _killed_at(url, "AWS_ENDPOINT_URL", object_stores["s3"].url, target)
    assert code == -signal.SIGKILL and any(path.split("?")[0].endswith(target) for _, path in requests)
    left = _objects(url)
    assert "shard-000001.json" not in left and ("shard-000001.parquet" in left) == published_data
    rerun = run_flow("extract.py", "--dest", url, *tiny_flags())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_rows(dataset_tables(url), reference)


def test_a_run_killed_mid_shard_resumes_to_exactly_the_right_rows(tmp_path, reference):
    dest = tmp_path / "dataset"
    process = run_flow("extract.py", "--dest", str(dest), *tiny_flags(), wait=False)
    process.wait_until(lambda: bool(list(dest.glob(".partial-*/shard-000001.parquet"))), "shard 1 being written")
    process.kill()
    assert not (dest / "shard-000001.json").exists() and list(dest.glob(".partial-*"))
    rerun = run_flow("extract.py", "--dest", str(dest), *tiny_flags())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_rows(dataset_tables(str(dest)), reference)
    assert not list(dest.glob(".*partial*")), "what the killed run left is cleared"


def test_a_full_disk_ends_the_run_in_one_line_leaving_nothing_half_written_and_the_next_run_resumes(
        tmp_path, reference):
    """The destination on a 1 MB filesystem: the first shard does not fit. Then the filesystem grows and the same
    command runs again."""
    from prefect.settings import PREFECT_API_URL

    disk, dest = tmp_path / "disk", tmp_path / "disk" / "dataset"
    extract = shlex.join([sys.executable, str(REPO / "flows" / "extract.py"), "--dest", str(dest), *tiny_flags()])
    script = (f"{extract} 2> {tmp_path}/first.err; echo $? > {tmp_path}/first.rc; cp -a {dest} {tmp_path}/left; "
              f"mount -o remount,size=256m {disk} && {extract} 2> {tmp_path}/rerun.err; "
              f"echo $? > {tmp_path}/rerun.rc; cp -a {dest} {tmp_path}/final")
    done = on_small_disk(disk, "1m", script, {"PREFECT_API_URL": PREFECT_API_URL.value() or ""})
    assert done.returncode == 0, done.stderr
    first = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "2", first[-3000:]
    assert "Traceback" not in first, first[-3000:]
    errors = [line for line in first.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.match(rf"error: {dest}: cannot write shard-\d{{6}}: no space left on device \(",
                                         errors[0]), first[-3000:]
    left = [p.name for p in (tmp_path / "left").iterdir()]
    assert "dataset.json" in left and not [n for n in left if n.startswith("shard-") or "partial" in n], left
    assert (tmp_path / "rerun.rc").read_text().strip() == "0", (tmp_path / "rerun.err").read_text()[-3000:]
    assert_same_rows(dataset_tables(str(tmp_path / "final")), reference)


@pytest.fixture(scope="module")
def locked_s3():
    """An S3 server that checks credentials: bucket 'locked', a user who may write, and one who may only read."""
    with MotoServer(authenticated_after=7) as server:
        server.client("s3").create_bucket(Bucket="locked")
        writer = server.user("writer", "locked", ["s3:*"])
        reader = server.user("reader", "locked", ["s3:GetObject", "s3:ListBucket"])
        yield server, writer, reader


def _as(server: MotoServer, user: dict) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": user["key"], "AWS_SECRET_ACCESS_KEY": user["secret"],
            "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.mark.parametrize("who", ["read-only user", "wrong secret"])
def test_no_permission_fails_at_once_with_one_clear_error_and_writes_nothing(who, locked_s3, tmp_path):
    server, writer, reader = locked_s3
    user = reader if who == "read-only user" else {**writer, "secret": "not-the-SECRET-4242"}
    url = f"s3://locked/{uuid.uuid4().hex}"
    result = run_flow("extract.py", "--dest", url, *tiny_flags(model="no-such-org/no-such-model"),
                      **_as(server, user))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith(f"error: {url}: cannot write: permission denied or credentials rejected ("), \
        "about storage, before the (unknown) model is loaded"
    assert user["secret"] not in result.stderr + result.stdout
    assert server.client("s3", **writer).list_objects_v2(Bucket="locked").get("KeyCount") == 0


def test_credentials_from_prefect_blocks_are_used_and_never_shown(locked_s3, tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect_aws import AwsCredentials

    server, writer, reader = locked_s3
    for name, user in [("atlas-writer", writer), ("atlas-reader", reader)]:
        AwsCredentials(aws_access_key_id=user["key"], aws_secret_access_key=user["secret"],
                       aws_client_parameters={"endpoint_url": server.url}).save(name, overwrite=True)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-user")  # the environment's credentials would be refused
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    url = f"s3://locked/{uuid.uuid4().hex}/dataset"
    state = extract(ExtractConfig(dest=url, credentials="aws-credentials/atlas-writer", **TINY), return_state=True)
    summary = state.result()
    assert summary["extracted_now"] >= 3
    out = tmp_path / "clusters"
    cluster(ClusterConfig(dataset=url, credentials="aws-credentials/atlas-reader", out=str(out), pca_components=5,
                          k_max=3, exemplars=0, n_workers=2, backend="cpu", min_samples_grid=[5]))
    assert len(pd.read_parquet(out / "labels.parquet")) == summary["rows"]

    secrets = [writer["secret"], reader["secret"]]
    dataset = Location.open(url, {"key": writer["key"], "secret": writer["secret"],
                                  "client_kwargs": {"endpoint_url": server.url}})
    written = [dataset.fs.cat_file(p).decode() for p in dataset.fs.find(dataset.root) if p.endswith(".json")]
    written += [p.read_text() for p in out.iterdir() if p.suffix in (".json", ".html")]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[run.id])))]
        artifacts = [json.dumps(a.data, default=str) for a in client.read_artifacts()]
    shown = "\n".join([*written, *logs, *artifacts, json.dumps(run.parameters, default=str)])
    assert logs and artifacts and "aws-credentials/atlas-writer" in shown
    assert not [s for s in secrets if s in shown]

    with pytest.raises(StorageError, match=r"cannot write: permission denied") as error:
        extract(ExtractConfig(dest=f"s3://locked/{uuid.uuid4().hex}", credentials="aws-credentials/atlas-reader",
                              **TINY))
    assert reader["secret"] not in str(error.value)
