"""Storage faults: which are worth retrying (resets, timeouts, 408/429/5xx), which mean a full disk, and a retry
loop for code outside Prefect."""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Iterator

from tasks.errors import InputError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


# Connection-level failures of the HTTP stacks under gcsfs and s3fs (aiohttp, botocore), matched by class name
# anywhere in the exception's class hierarchy, so that neither library must be installed to classify them.
TRANSIENT_CLASSES = {
    "ClientConnectionError", "ClientPayloadError", "ServerDisconnectedError", "ServerTimeoutError",
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ResponseStreamingError", "IncompleteReadError", "FSTimeoutError",
}


class StorageError(InputError):
    """A permanent storage fault (bad URL, missing bucket, no permission, rejected credentials); the message
    names the URL and the cause."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and those it was raised from or during, nearest first."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries: gcsfs HttpError.code, aiohttp .status, botocore .response."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    for name in ("code", "status"):
        value = getattr(exc, name, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def is_transient(exc: BaseException) -> bool:
    """Faults worth retrying: resets, timeouts, 408/429/5xx. Not bad input, missing objects, permissions."""
    for cause in _causes(exc):
        if isinstance(cause, (InputError, PermissionError, FileNotFoundError)):
            return False
        if isinstance(cause, (ConnectionError, TimeoutError)):
            return True
        if any(kind.__name__ in TRANSIENT_CLASSES for kind in type(cause).__mro__):
            return True
        status = _status(cause)
        if status is not None:
            return status in TRANSIENT_STATUS
    return False


def is_precondition_failed(exc: BaseException) -> bool:
    """A conditional write or delete refused because the object changed: HTTP 412, or 409 (S3's conflicting
    conditional requests)."""
    return any(_status(cause) in (409, 412) for cause in _causes(exc))


def is_disk_full(exc: BaseException) -> bool:
    """No space left on the device, or the user's disk quota reached."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def retrying(call: Callable, *args, attempts: int = 4, delay: float = 1.0, what: str | None = None):
    """`call(*args)`, tried again after a transient fault with exponential backoff (delay, 2 x delay, ...), each
    retry logged as `what` (the call's name where None), for code that runs outside Prefect's task retries (Dask
    workers) or that must not repeat the work before it (a shard's upload)."""
    for attempt in range(attempts):
        try:
            return call(*args)
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            wait = delay * 2 ** attempt
            log.warning("%s: transient fault (%s: %s); trying again in %g s (attempt %d of %d)",
                        what or call.__name__, type(exc).__name__, " ".join(str(exc).split())[:200], wait,
                        attempt + 2, attempts)
            time.sleep(wait)
