"""The temporary Prefect API server of a command-line run where PREFECT_API_URL is unset, started by the run
itself instead of by Prefect, so that the run decides when it stops: last, after the flow's clean-up.

It is the server Prefect's own ephemeral mode starts (the same uvicorn command and settings), but in its own
session, so that a terminal's Ctrl-C (SIGINT to the foreground process group) reaches the run and not the server,
and with the parent-death signal set (Linux prctl PR_SET_PDEATHSIG, SIGTERM), so that a run killed with SIGKILL
does not leave it running. Importing this module does not import Prefect."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

# Telemetry off unless the user says otherwise: offline, the server logs an error for every telemetry attempt.
# pyproject.toml says the same, but Prefect reads it only with the repository root as the working directory.
TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
# What Prefect's ephemeral mode sets for its server (prefect.server.api.server.SubprocessASGIServer): no UI.
EPHEMERAL = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
STARTUP_TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT = 60.0
PR_SET_PDEATHSIG = 1


def telemetry_off() -> None:
    """Sets TELEMETRY_OFF in this process's environment where the user has not set those variables; must run
    before Prefect is imported (its client reads DO_NOT_TRACK then)."""
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


class ServerError(RuntimeError):
    """The temporary server did not start."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with(parent: int) -> Callable[[], None]:
    """preexec_fn of the server: SIGTERM when the thread that started it ends (the run's main thread), and an
    exit where the run already ended before the request was in place. Linux only; elsewhere a no-op."""
    prctl = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None  # looked up before the fork

    def arm() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:
                os._exit(1)
    return arm


class TemporaryServer:
    """A Prefect API server on 127.0.0.1 for the lifetime of a `with` block: started and healthy on entry,
    stopped on exit (SIGTERM, then SIGKILL after `stop_timeout` seconds)."""

    def __init__(self, stop_timeout: float = 5.0) -> None:
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _spawn(self) -> subprocess.Popen:
        self.port = _free_port()
        prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
                   "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "error", "--lifespan", "on"]
        env = {**TELEMETRY_OFF, **os.environ, **EPHEMERAL}
        return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with(os.getpid()))

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        """Starts the server and waits until it answers (a new port where the chosen one was taken meanwhile)."""
        timeout = float(os.environ.get(STARTUP_TIMEOUT_VARIABLE) or DEFAULT_STARTUP_TIMEOUT)
        deadline = time.monotonic() + timeout
        self.process = self._spawn()
        while not self._healthy():
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"the temporary Prefect server did not answer within {timeout:g} s (set "
                                  f"{STARTUP_TIMEOUT_VARIABLE} to wait longer, or PREFECT_API_URL to use "
                                  "a running one)")
            if self.process.poll() is not None:  # it ended: most likely another process took the port meanwhile
                self.process = self._spawn()
            time.sleep(0.1)

    def stop(self) -> None:
        """Stops the server, if it runs."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> TemporaryServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
