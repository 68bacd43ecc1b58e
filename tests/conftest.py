"""Shared fixtures: offline environment, one Prefect test server per session, tiny models, the sample."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest  # noqa: E402

from tasks.attention import TINY_RANDOM_MODEL, load_qa_model  # noqa: E402
from tasks.squad import load_squad  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect API server for the session, with its own PREFECT_HOME."""
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: str(tmp_path_factory.mktemp("prefect-home"))}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


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
