"""The Prefect retry policy of every task that touches storage: transient faults only."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from tasks.storage import is_transient


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: the task failed on a transient fault."""
    return is_transient(state.result(raise_on_failure=False))


# Prefect task options for work that touches storage: up to 3 retries of transient faults, 5 s, 10 s, 20 s
# apart (with jitter); permanent faults fail at once.
RETRIES = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=5), retry_jitter_factor=0.5,
               retry_condition_fn=retry_if_transient)
