"""Where data lives: a folder on any fsspec filesystem (local paths, file://, gs://, s3://, memory://) with its
credentials, small JSON records written whole, folders copied, and the check that a destination can be written
before work starts."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from tasks.storage.credentials import redact, storage_options
from tasks.storage.faults import StorageError, is_disk_full, is_transient, retrying


def cache_dir() -> Path:
    """Where downloaded weights and models are kept (override with ATLAS_CACHE)."""
    return Path(os.environ.get("ATLAS_CACHE", Path.home() / ".cache" / "squad-attention-atlas"))


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
        elif is_disk_full(exc):
            cause = os.strerror(exc.errno).lower()
        elif is_transient(exc):
            cause = "the storage still fails after every retry"
        else:
            cause = "storage error"
        detail = redact(" ".join(str(exc).split())[:300], self.options)
        return StorageError(f"{self.url}: cannot {action}: {cause} ({type(exc).__name__}: {detail})")

    def read_bytes(self, name: str) -> bytes | None:
        """The file `name` here, whole, or None where there is none (for small files: records, manifests)."""
        try:
            return self.fs.cat_file(self.path(name))
        except FileNotFoundError:
            return None

    def read_json(self, name: str) -> dict | None:
        data = self.read_bytes(name)
        return None if data is None else json.loads(data)

    def write_json(self, name: str, record: dict) -> None:
        """Writes a JSON file whole: rename on local disk (a failed write leaves nothing; a full disk is a
        StorageError naming the file), one object write elsewhere."""
        data = json.dumps(record, indent=2, sort_keys=True).encode()
        if self.is_local:
            os.makedirs(self.root, exist_ok=True)
            partial = Path(self.path(f".{name}.partial-{uuid.uuid4().hex}"))
            try:
                partial.write_bytes(data)
                os.replace(partial, self.path(name))
            except BaseException as exc:
                partial.unlink(missing_ok=True)
                if is_disk_full(exc):
                    raise self.fault(f"write {name}", exc) from None
                raise
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
