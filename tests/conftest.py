"""Shared fixtures: offline environment, one Prefect test server per session, tiny models, the sample."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The GCS emulator speaks plain HTTP without auth: no gRPC bucket probe, anonymous access (read by fsspec at import).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("FSSPEC_GS_TOKEN", "anon")
os.environ.setdefault("FSSPEC_GS_PROJECT", "atlas-test")

import pytest  # noqa: E402
from pages import browser, page  # noqa: E402, F401 (explorer pages in chromium; a test module provides `run`)

from tasks.extract.qa_model import TINY_RANDOM_MODEL, load_qa_model  # noqa: E402
from tasks.squad.load import load_squad  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect API server for the session, with its own PREFECT_HOME."""
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: str(tmp_path_factory.mktemp("prefect-home"))}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(scope="session")
def object_stores():
    """A GCS emulator and an S3 server on 127.0.0.1, each with a bucket 'atlas', and the environment pointing
    gcsfs and s3fs at them the way users point them at the real clouds. Yields {'gs': ..., 's3': ...}."""
    import fsspec
    from storage_servers import GcsEmulator, MotoServer

    with GcsEmulator() as gcs, MotoServer() as s3:
        env = {"STORAGE_EMULATOR_HOST": gcs.url, "AWS_ENDPOINT_URL": s3.url, "AWS_ACCESS_KEY_ID": "test",
               "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            s3.client("s3").create_bucket(Bucket="atlas")
            fsspec.filesystem("gs").mkdir("atlas")
            yield {"gs": gcs, "s3": s3}
        finally:
            for key, value in saved.items():
                if value is None:
                    del os.environ[key]
                else:
                    os.environ[key] = value


@pytest.fixture(scope="session")
def reference(tmp_path_factory, prefect_server):
    """A fault-free extraction of the tiny config to a local folder, its shards: what every interrupted, killed or
    faulted run must reproduce."""
    from tiny import TINY, dataset_tables

    from flows.extract import extract
    from tasks.config import ExtractConfig

    dest = tmp_path_factory.mktemp("reference") / "dataset"
    extract(ExtractConfig(dest=str(dest), **TINY))
    return dataset_tables(str(dest))


@pytest.fixture(scope="session")
def tiny_qa():
    return load_qa_model(TINY_RANDOM_MODEL, seed=0)


@pytest.fixture(scope="session")
def tokenizer(tiny_qa):
    return tiny_qa.tokenizer


@pytest.fixture(scope="session")
def sample():
    return load_squad("embedded")


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (no range requests, like many real servers).
    Yields (folder, base_url, requested_paths)."""
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            requested.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_port}", requested
    finally:
        server.shutdown()
        server.server_close()
