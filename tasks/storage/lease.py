"""One run at a time owns a destination: the lease object `.atlas-lease.json` in it names the run that holds it
(host, pid, a random token, the command) and carries a heartbeat that a daemon thread renews while the run lives.
A lease whose heartbeat is older than its `stale_after`, or whose owner is gone from this host, is taken over.

Every change of the lease is atomic and conditional on the version last read (tasks.storage.lease_object), and
after each write the lease is read back and its token compared, so that two runs never both hold it."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from tasks.errors import InputError
from tasks.storage.faults import retrying
from tasks.storage.lease_object import LeaseChanged, LeaseObject, lease_object
from tasks.storage.location import Location
from tasks.storage.records import LeaseRecord

HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 60.0

log = logging.getLogger(__name__)


class DestinationBusyError(InputError):
    """Another live run holds the destination's lease, or took it over from this run."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _age(record: LeaseRecord) -> float:
    """Seconds since the lease's last heartbeat, by this machine's clock."""
    return (datetime.now(timezone.utc) - datetime.fromisoformat(record.heartbeat)).total_seconds()


def _owner_gone(record: LeaseRecord) -> bool:
    """The lease's owner ran on this host and its process no longer exists."""
    if record.host != socket.gethostname():
        return False
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _owner(record: LeaseRecord) -> str:
    return f"host {record.host} pid {record.pid} (command {record.command}, heartbeat {_age(record):.0f} s ago)"


@dataclass
class Lease:
    """A lease this run holds, renewed every `heartbeat` seconds by a daemon thread until released."""

    lease: LeaseObject
    record: LeaseRecord
    version: str
    heartbeat: float
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _renewer: threading.Thread | None = None

    def _start(self) -> None:
        self._renewer = threading.Thread(target=self._renew_until_released, name="atlas-lease", daemon=True)
        self._renewer.start()

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.heartbeat):
            renewed = self.record.model_copy(update={"heartbeat": _now()})
            try:
                self.version = _written(self.lease, renewed, self.version)
                self.record = renewed
            except LeaseChanged:
                self.lost = True
                log.error("%s: another run took the lease over: this run no longer owns the destination",
                          self.lease.dest.url)
                return
            except Exception as exc:  # a storage fault: try again at the next heartbeat
                log.warning("%s: cannot renew the lease (%s: %s); trying again in %g s", self.lease.dest.url,
                            type(exc).__name__, " ".join(str(exc).split())[:200], self.heartbeat)

    def release(self) -> None:
        """Stops renewing and removes the lease, unless another run took it over. A storage fault is logged, not
        raised (the run's own outcome stands): the lease left behind goes stale."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.lost:
            return
        try:
            retrying(self.lease.delete, self.version, what=f"removing {self.lease.path}")
        except LeaseChanged:
            pass  # taken over since the last renewal, or removed by a retried request that had succeeded
        except Exception as exc:
            log.warning("%s: cannot remove the lease (%s: %s); it goes stale %g s after its last heartbeat",
                        self.lease.dest.url, type(exc).__name__, " ".join(str(exc).split())[:200],
                        self.record.stale_after)


def _read(lease: LeaseObject) -> tuple[bytes, str] | None:
    return retrying(lease.read, what=f"reading {lease.path}")


def _written(lease: LeaseObject, record: LeaseRecord, version: str | None) -> str:
    """Writes `record` over `version` (creates it where None) and returns its version, read back; LeaseChanged
    where another run's token is there. A refused write whose lease holds this token had taken effect before a
    client retried it."""
    try:
        if version is None:
            retrying(lease.create, record, what=f"writing {lease.path}")
        else:
            retrying(lease.replace, record, version, what=f"writing {lease.path}")
    except LeaseChanged:
        pass  # decided by the token read back
    found = _read(lease)
    if found is None or LeaseRecord.parse(found[0], lease.path).token != record.token:
        raise LeaseChanged(lease.path)
    return found[1]


def _live(record: LeaseRecord) -> bool:
    """The lease's heartbeat is recent and its owner not known to be gone."""
    return _age(record) <= record.stale_after and not _owner_gone(record)


def _holder(lease: LeaseObject, found: tuple[bytes, str]) -> LeaseRecord | None:
    """The record of the lease found where its owner lives, or None where it may be taken over (said in a log
    line)."""
    record = LeaseRecord.parse(found[0], lease.path)
    if _live(record):
        return record
    log.warning("%s: taking over the lease of %s: its owner is gone or its heartbeat is stale", lease.dest.url,
                _owner(record))
    return None


def _busy(dest: Location, record: LeaseRecord) -> DestinationBusyError:
    return DestinationBusyError(f"{dest.url} is in use by {_owner(record)}; wait for it or pass --wait")


def acquire(dest: Location, wait: bool = False, command: str | None = None, heartbeat: float = HEARTBEAT_SECONDS,
            stale_after: float = STALE_AFTER_SECONDS) -> Lease:
    """Takes the lease of `dest` and starts renewing it. Where a live run holds it: DestinationBusyError naming
    that run, or with `wait` a log line and a wait until the lease is free (released, stale or its owner gone)."""
    lease = lease_object(dest)
    started = _now()
    mine = LeaseRecord(host=socket.gethostname(), pid=os.getpid(), token=uuid.uuid4().hex,
                       command=command or shlex.join(sys.argv), started=started, heartbeat=started,
                       stale_after=stale_after)
    announced = False
    while True:
        found = _read(lease)
        holder = None if found is None else _holder(lease, found)
        if holder is not None:
            if not wait:
                raise _busy(dest, holder)
            if not announced:
                log.info("%s is in use by %s; waiting for it", dest.url, _owner(holder))
                announced = True
            time.sleep(heartbeat)
            continue
        mine = mine.model_copy(update={"heartbeat": _now()})
        try:
            held = Lease(lease, mine, _written(lease, mine, None if found is None else found[1]), heartbeat)
        except LeaseChanged:
            continue  # another run changed the lease meanwhile: look again
        held._start()
        return held


def check_free(dest: Location) -> None:
    """DestinationBusyError where a live run holds the lease of `dest` (a check before a run starts; the run
    itself takes the lease, after its own check that the destination can be written)."""
    lease = lease_object(dest)
    try:
        found = lease.read()
    except Exception:  # a destination that cannot be read: the run's check says why, in one line
        return
    holder = None if found is None else LeaseRecord.parse(found[0], lease.path)
    if holder is not None and _live(holder):
        raise _busy(dest, holder)


@contextlib.contextmanager
def destination_lease(dest: Location, wait: bool = False, heartbeat: float = HEARTBEAT_SECONDS) -> Iterator[Lease]:
    """Holds the lease of `dest` for the block (see `acquire`); released on every way out of it. A block that
    ends after another run took the lease over is a DestinationBusyError: both may have written there."""
    held = acquire(dest, wait, heartbeat=heartbeat)
    try:
        yield held
    finally:
        held.release()
    if held.lost:
        raise DestinationBusyError(f"{dest.url}: another run took the lease over while this run wrote (no "
                                   f"heartbeat for {held.record.stale_after:g} s); run again to check the dataset")
