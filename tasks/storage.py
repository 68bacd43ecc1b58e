"""Where data lives: fsspec locations (local paths, file://, gs://, s3://, memory://), their credentials,
which storage faults are worth retrying, and the check that a destination can be written before work starts.

Credentials come from the environment the way Google Cloud and AWS users already have them (application
default credentials, GOOGLE_APPLICATION_CREDENTIALS, AWS_PROFILE, AWS_* variables, ~/.aws), or from a Prefect
block named by the user ('gcp-credentials/NAME', 'aws-credentials/NAME'), which applies to the URLs of its own
cloud. Configs only ever hold the block's name: secrets stay out of flow parameters, dataset.json and logs."""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from prefect.tasks import exponential_backoff

from tasks.errors import InputError

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# Connection-level failures of the HTTP stacks under gcsfs and s3fs (aiohttp, botocore), matched by class name
# anywhere in the exception's class hierarchy, so that neither library must be installed to classify them.
TRANSIENT_CLASSES = {
    "ClientConnectionError", "ClientPayloadError", "ServerDisconnectedError", "ServerTimeoutError",
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ResponseStreamingError", "IncompleteReadError", "FSTimeoutError",
}
BLOCK_KINDS = {"gcp-credentials": ("gs", "gcs"), "aws-credentials": ("s3", "s3a")}


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


def retrying(call: Callable, *args, attempts: int = 4, delay: float = 1.0):
    """`call(*args)`, tried again after a transient fault with exponential backoff (delay, 2 x delay, ...),
    for code that runs outside Prefect's task retries (Dask workers)."""
    for attempt in range(attempts):
        try:
            return call(*args)
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(delay * 2 ** attempt)


def cache_dir() -> Path:
    """Where downloaded weights and models are kept (override with ATLAS_CACHE)."""
    return Path(os.environ.get("ATLAS_CACHE", Path.home() / ".cache" / "squad-attention-atlas"))


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: the task failed on a transient fault."""
    return is_transient(state.result(raise_on_failure=False))


# Prefect task options for work that touches storage: up to 3 retries of transient faults, 5 s, 10 s, 20 s
# apart (with jitter); permanent faults fail at once.
RETRIES = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=5), retry_jitter_factor=0.5,
               retry_condition_fn=retry_if_transient)


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def _block_kind(credentials: str) -> str:
    kind, _, name = credentials.partition("/")
    if kind not in BLOCK_KINDS or not name:
        raise InputError(f"credentials '{credentials}': expected a Prefect block as 'gcp-credentials/NAME' or "
                         "'aws-credentials/NAME'")
    return kind


def _load_block(credentials: str):
    kind, name = _block_kind(credentials), credentials.partition("/")[2]
    try:
        if kind == "gcp-credentials":
            from prefect_gcp import GcpCredentials as block_class
        else:
            from prefect_aws import AwsCredentials as block_class
    except ImportError as exc:
        raise InputError(f"credentials '{credentials}': install the cloud extra (pip install "
                         f"'squad-attention-atlas[cloud]') to use Prefect credential blocks ({exc})") from exc
    try:
        return block_class.load(name)
    except ValueError as exc:
        raise InputError(f"credentials '{credentials}': no such Prefect block ({exc})") from exc


@functools.lru_cache(maxsize=16)
def _block_options(credentials: str) -> tuple[tuple[str, object], ...]:
    block = _load_block(credentials)
    if credentials.startswith("gcp-credentials/"):
        info = block.service_account_info.get_secret_value() if block.service_account_info else None
        token = dict(info) if info else (str(block.service_account_file) if block.service_account_file else None)
        options = {"token": token, "project": block.project}
    else:
        client = block.aws_client_parameters
        client_kwargs = {"endpoint_url": client.endpoint_url} if client and client.endpoint_url else {}
        options = {"key": block.aws_access_key_id,
                   "secret": block.aws_secret_access_key.get_secret_value() if block.aws_secret_access_key else None,
                   "token": block.aws_session_token.get_secret_value() if block.aws_session_token else None,
                   "profile": block.profile_name, "client_kwargs": client_kwargs or None}
    return tuple((key, value) for key, value in options.items() if value is not None)


def storage_options(url: str, credentials: str | None) -> dict:
    """fsspec options for `url`: none (the environment's credentials) unless `credentials` names a Prefect
    block for the URL's cloud."""
    if credentials is None or protocol_of(url) not in BLOCK_KINDS[_block_kind(credentials)]:
        return {}
    return dict(_block_options(credentials))


def _secrets(options: dict) -> list[str]:
    values: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict):
            values += _secrets(value)
        elif isinstance(value, str) and key in {"secret", "token", "private_key", "key", "private_key_id"}:
            values.append(value)
    return [v for v in values if len(v) >= 4]


def redact(text: str, options: dict) -> str:
    """`text` with every credential value in `options` masked."""
    for secret in _secrets(options):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Location:
    """A folder on any fsspec filesystem, with the options (credentials) it was opened with."""

    fs: fsspec.AbstractFileSystem
    root: str
    url: str
    options: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def open(cls, url: str, options: dict | None = None) -> Location:
        """`url` opened with `options`. Listings are never cached: other processes publish shards here."""
        options = options or {}
        try:
            fs, root = fsspec.core.url_to_fs(url, **{"use_listings_cache": False, **options})
        except (ValueError, ImportError, TypeError) as exc:
            raise StorageError(f"{url}: not a usable location ({redact(str(exc), options)}); "
                               "use a path, file://, gs:// or s3://") from None
        return cls(fs, root.rstrip("/"), url, options)

    @classmethod
    def at(cls, url: str, credentials: str | None) -> Location:
        """`url` opened with the credentials a Prefect block names (None: the environment's)."""
        return cls.open(url, storage_options(url, credentials))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def child(self, name: str) -> Location:
        """The folder `name` inside this one, opened with the same credentials."""
        return Location.open(f"{self.url.rstrip('/')}/{name}", self.options)

    def fault(self, action: str, exc: BaseException) -> StorageError:
        """A clear, credential-free error for a permanent fault while doing `action` here."""
        if isinstance(exc, FileNotFoundError):
            cause = "not found: the bucket or folder does not exist"
        elif isinstance(exc, PermissionError):
            cause = "permission denied or credentials rejected"
        else:
            cause = "storage error"
        detail = redact(" ".join(str(exc).split())[:300], self.options)
        return StorageError(f"{self.url}: cannot {action}: {cause} ({type(exc).__name__}: {detail})")

    def read_json(self, name: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self.path(name)))
        except FileNotFoundError:
            return None

    def write_json(self, name: str, record: dict) -> None:
        """Writes a JSON file whole: rename on local disk, one object write elsewhere."""
        data = json.dumps(record, indent=2, sort_keys=True).encode()
        if self.is_local:
            os.makedirs(self.root, exist_ok=True)
            partial = self.path(f".{name}.partial-{uuid.uuid4().hex}")
            with open(partial, "wb") as f:
                f.write(data)
            os.replace(partial, self.path(name))
        else:
            self.fs.pipe_file(self.path(name), data)

    def put_folder(self, local: Path) -> None:
        """Copies every file under the local folder `local` here, under the same relative names: a rename on
        local disk, an upload (retried on transient faults) elsewhere."""
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            target = self.path(path.relative_to(local).as_posix())
            if self.is_local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(path, target)
            else:
                retrying(self.fs.put_file, str(path), target)

    def get_folder(self, local: Path) -> None:
        """Copies every file here into the local folder `local`, under the same relative names."""
        files = [f for f in self.fs.find(self.root) if not f.rsplit("/", 1)[-1].startswith(".")]
        if not files:
            raise StorageError(f"{self.url}: no files there")
        for name in files:
            target = local / name[len(self.root):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            retrying(self.fs.get_file, name, str(target))

    def check_writable(self) -> None:
        """Fails at once, naming the URL and the cause, where this folder cannot be written: a file in the
        way, no bucket, a missing bucket, no permission, rejected credentials. Leaves nothing behind; a
        transient fault is raised as it is, for the caller's retries."""
        if self.is_local:
            path = Path(self.root)
            existing = next(p for p in (path, *path.parents) if p.exists())
            if not existing.is_dir():
                raise StorageError(f"{self.url}: cannot write: {existing} is a file, not a folder")
            if not os.access(existing, os.W_OK | os.X_OK):
                raise StorageError(f"{self.url}: cannot write: no permission to write in {existing}")
            return
        if not self.root.strip("/"):
            raise StorageError(f"{self.url}: cannot write: the URL names no bucket")
        probe = self.path(f".atlas-probe-{uuid.uuid4().hex}")
        try:
            self.fs.pipe_file(probe, b"probe")
            self.fs.cat_file(probe)
            self.fs.rm_file(probe)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise self.fault("write", exc) from None
