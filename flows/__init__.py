"""The Prefect flows. Importing the package makes Prefect show the `tasks` package's log lines with its own
(unless PREFECT_LOGGING_EXTRA_LOGGERS says otherwise), and makes Prefect's run loggers log an input error
(tasks.errors.InputError: a bad file, flag or dataset) as its one line, without a traceback, so that a
deployment run that fails on bad input says why in one line; every other exception keeps its traceback. It also
turns Prefect's telemetry off unless the environment says otherwise (tasks.prefect_server.telemetry_off): every
flow file imports this package before Prefect."""

from __future__ import annotations

import logging
import os

from tasks.errors import InputError
from tasks.prefect_server import telemetry_off


class InputErrorsInOneLine(logging.Filter):
    """Drops the traceback of a log record about an InputError and states the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(error, InputError):
            record.exc_info, record.exc_text = None, None
            record.msg, record.args = "input error: %s", (error,)
        return True


telemetry_off()
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")  # tasks log outside runs too
logging.getLogger("tasks").setLevel(logging.INFO)
for _name in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(_name).addFilter(InputErrorsInOneLine())
