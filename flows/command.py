"""How a flow runs from the command line (`atlas COMMAND`, `python flows/NAME.py`): on the Prefect API that the
settings name (PREFECT_API_URL), else on a temporary server that the run starts and stops itself; one signal
(SIGINT or SIGTERM) ends the run promptly, after its clean-up, with the server stopped last (tasks.interrupt,
tasks.prefect_server)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import BaseModel

from tasks.cli import run_or_exit
from tasks.interrupt import signals_end_the_run, wait_for_workers
from tasks.prefect_server import TemporaryServer

Result = TypeVar("Result")
# How long the logs and events still queued for the API may take to be sent before the temporary server stops.
SEND_TIMEOUT_SECONDS = 10.0


def _send_what_is_queued() -> None:
    """Sends the logs and events that Prefect's background workers still hold, as Prefect's test harness does
    before it stops its server: sent after the server stopped, they fail with connection errors for a minute."""
    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=SEND_TIMEOUT_SECONDS, at_exit=False)


@contextmanager
def prefect_api() -> Iterator[None]:
    """The run's Prefect API: the configured one, else a temporary server for the block (also for the processes
    the run starts, such as Dask workers), stopped after the run's worker threads have ended and what they logged
    was sent."""
    if PREFECT_API_URL.value():
        yield
        return
    with TemporaryServer() as server, temporary_settings({PREFECT_API_URL: server.api_url}):
        os.environ["PREFECT_API_URL"] = server.api_url
        try:
            yield
        finally:
            wait_for_workers()
            _send_what_is_queued()
            del os.environ["PREFECT_API_URL"]


def run_command(flow: Callable[..., Result], *configs: BaseModel, check: Callable[..., None], checked: bool = False
                ) -> Result:
    """Runs a flow from the command line: inputs checked first (tasks.cli.run_or_exit) unless `checked` (the
    `atlas` command checks them before it imports the flow), then the flow on its Prefect API; SIGINT or SIGTERM
    ends the process with one line, status 130 or 143."""
    def on_the_api(*configs: BaseModel) -> Result:
        with prefect_api():
            return flow(*configs)

    with signals_end_the_run():
        return run_or_exit(on_the_api, *configs, check=None if checked else check)
