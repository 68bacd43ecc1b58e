"""The lease object of a destination (`.atlas-lease.json`) and its conditional changes on each store, so that
two runs never both hold a lease: on local disk each read-compare-write runs under an exclusive lock of the folder
(flock); on GCS under `ifGenerationMatch` (0 to create); on S3 under `If-None-Match: *` to create and `If-Match:
ETag` to replace and delete. Other fsspec filesystems check the version first, which is not atomic."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator

from tasks.storage.faults import is_precondition_failed
from tasks.storage.location import Location
from tasks.storage.records import LeaseRecord

LEASE_NAME = ".atlas-lease.json"


def _encode(record: LeaseRecord) -> bytes:
    return json.dumps(record.to_json(), indent=2, sort_keys=True).encode()


class LeaseChanged(Exception):
    """The lease object is not the version a conditional change expected (another run changed or removed it)."""


class LeaseObject:
    """The lease object of a destination on any fsspec filesystem, versioned by its content's hash. Plain fsspec
    has no conditional writes: here a change checks the version first, which is not atomic (local disk, GCS and
    S3 have their own subclasses that are)."""

    def __init__(self, dest: Location) -> None:
        self.dest = dest
        self.path = dest.path(LEASE_NAME)

    def read(self) -> tuple[bytes, str] | None:
        """The lease's bytes and version, or None where there is none."""
        try:
            data = self.dest.fs.cat_file(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data, hashlib.sha256(data).hexdigest()

    def create(self, record: LeaseRecord) -> None:
        """Writes the lease where there is none; LeaseChanged where there is one."""
        with _changed_on_refusal():
            self.dest.fs.pipe_file(self.path, _encode(record), mode="create")

    def replace(self, record: LeaseRecord, version: str) -> None:
        """Writes the lease over `version`; LeaseChanged where the lease is another version or gone."""
        self._expect(version)
        self.dest.fs.pipe_file(self.path, _encode(record))

    def delete(self, version: str) -> None:
        """Removes the lease at `version`; LeaseChanged where it is another version or gone."""
        self._expect(version)
        self.dest.fs.rm_file(self.path)

    def _expect(self, version: str) -> None:
        found = self.read()
        if found is None or found[1] != version:
            raise LeaseChanged(self.path)


@contextlib.contextmanager
def _changed_on_refusal() -> Iterator[None]:
    """Turns a store's refusal of a conditional request (or a missing object) into LeaseChanged."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, (FileExistsError, FileNotFoundError)) or is_precondition_failed(exc):
            raise LeaseChanged(str(exc)) from None
        raise


class _LocalLease(LeaseObject):
    """On local disk: each change under an exclusive lock of the folder, written by a rename. A folder that the
    lease made is removed with it where it is empty by then."""

    made_folder = False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        folder = os.open(self.dest.root, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)

    def create(self, record: LeaseRecord) -> None:
        self.made_folder = not os.path.isdir(self.dest.root)
        os.makedirs(self.dest.root, exist_ok=True)
        with self._locked():
            if os.path.exists(self.path):
                raise LeaseChanged(self.path)
            self.dest.write_json(LEASE_NAME, record.to_json())

    def replace(self, record: LeaseRecord, version: str) -> None:
        with self._locked():
            self._expect(version)
            self.dest.write_json(LEASE_NAME, record.to_json())

    def delete(self, version: str) -> None:
        with self._locked():
            self._expect(version)
            os.remove(self.path)
        if self.made_folder:
            with contextlib.suppress(OSError):
                os.rmdir(self.dest.root)


class _GcsLease(LeaseObject):
    """On GCS: versions are generations; every change is conditional on one (`ifGenerationMatch`)."""

    def read(self) -> tuple[bytes, str] | None:
        try:
            generation = self.dest.fs.info(self.path)["generation"]
            return self.dest.fs.cat_file(self.path), str(generation)
        except FileNotFoundError:
            return None

    def create(self, record: LeaseRecord) -> None:
        self.replace(record, "0")

    def replace(self, record: LeaseRecord, version: str) -> None:
        fs = self.dest.fs
        bucket, key, _ = fs.split_path(self.path)
        with _changed_on_refusal():
            fs.call("POST", f"{fs._location}/upload/storage/v1/b/{{}}/o", bucket, uploadType="media", name=key,
                    ifGenerationMatch=version, data=_encode(record), json_out=True,
                    headers={"Content-Type": "application/octet-stream"})

    def delete(self, version: str) -> None:
        bucket, key, _ = self.dest.fs.split_path(self.path)
        with _changed_on_refusal():
            self.dest.fs.call("DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=version)


class _S3Lease(LeaseObject):
    """On S3: versions are ETags; creating is conditional on no object (`If-None-Match: *`), every other change
    on the ETag (`If-Match`)."""

    def read(self) -> tuple[bytes, str] | None:
        try:
            etag = self.dest.fs.info(self.path)["ETag"]
            return self.dest.fs.cat_file(self.path), etag
        except FileNotFoundError:
            return None

    def replace(self, record: LeaseRecord, version: str) -> None:
        with _changed_on_refusal():
            self.dest.fs.pipe_file(self.path, _encode(record), IfMatch=version)

    def delete(self, version: str) -> None:
        bucket, key, _ = self.dest.fs.split_path(self.path)
        with _changed_on_refusal():
            self.dest.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=version)


def lease_object(dest: Location) -> LeaseObject:
    """The lease object of `dest`, with the conditional changes its filesystem offers."""
    protocols = {dest.fs.protocol} if isinstance(dest.fs.protocol, str) else set(dest.fs.protocol)
    if dest.is_local:
        return _LocalLease(dest)
    if protocols & {"gs", "gcs"}:
        return _GcsLease(dest)
    if protocols & {"s3", "s3a"}:
        return _S3Lease(dest)
    return LeaseObject(dest)
