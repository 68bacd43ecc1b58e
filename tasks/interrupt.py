"""One signal ends a command-line run: SIGINT (a terminal's Ctrl-C, to the whole process group, or to the pid) or
SIGTERM. SIGTERM becomes an exception in the main thread as SIGINT does, so that every `finally` and context
manager on the way out runs; long loops on worker threads call `raise_if_interrupted()` and stop too. Then the
run ends with one line on stderr and status 128 + the signal's number, without waiting on threads that cannot
stop (a library call that never returns to Python).

The signal is seen the moment it arrives, whichever Python handler is installed then (Prefect's flow engine
installs its own SIGTERM handler while a flow runs): the C-level handler writes its number to a wakeup socket
that a daemon thread reads."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

MESSAGE = "interrupted: the run stopped; re-run the same command to resume"
# How long, after a signal, the run waits for its worker threads to finish their clean-up (they stop at their next
# `raise_if_interrupted()`) before it exits anyway.
WORKER_GRACE_SECONDS = 10.0


class Interrupted(KeyboardInterrupt):
    """The run received SIGINT or SIGTERM: raised in the main thread for SIGTERM, and on worker threads by
    `raise_if_interrupted()`."""


_received: list[int] = []
_stopping = threading.Event()


def raise_if_interrupted() -> None:
    """Raises Interrupted once the run received a signal: for loops on worker threads, which no signal reaches."""
    if _stopping.is_set():
        raise Interrupted(signal.Signals(_received[0]).name)


class _QuietTracebacks(logging.Filter):
    """Once the run is stopping, log records keep their message but lose their traceback: every thread that
    unwinds logs the same interruption."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _stopping.is_set() or isinstance(record.exc_info, tuple) and _is_signal(record.exc_info[1]):
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _quiet_handlers() -> None:
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for handler in {handler for log in loggers for handler in getattr(log, "handlers", [])}:
        if not any(isinstance(f, _QuietTracebacks) for f in handler.filters):
            handler.addFilter(_QuietTracebacks())


def _on_signal(number: int) -> None:
    if not _received:
        _received.append(number)
    _stopping.set()
    _quiet_handlers()


def _watch(receiver: socket.socket) -> None:
    with receiver:
        while data := receiver.recv(64):  # empty once the run's `signals_end_the_run` block is over
            for number in data:
                if number in (signal.SIGINT, signal.SIGTERM):
                    _on_signal(number)


def _raise_in_main_thread(number: int, frame: FrameType | None) -> None:
    _on_signal(number)
    raise KeyboardInterrupt if number == signal.SIGINT else Interrupted(signal.Signals(number).name)


def _is_signal(error: BaseException | None) -> bool:
    """Whether an exception is how a signal surfaces: KeyboardInterrupt, or Prefect's TerminationSignal."""
    return isinstance(error, KeyboardInterrupt) or getattr(error, "signal", None) in (signal.SIGINT, signal.SIGTERM)


_default_thread_hook = threading.excepthook


def _quiet_thread_exceptions(args: threading.ExceptHookArgs) -> None:
    if not _stopping.is_set():
        _default_thread_hook(args)


def wait_for_workers(grace: float = WORKER_GRACE_SECONDS) -> None:
    """After a signal, waits (at most `grace` seconds in all) for the threads that would keep the process alive;
    without a signal, returns at once."""
    if not _stopping.is_set():
        return
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))


@contextmanager
def signals_end_the_run() -> Iterator[None]:
    """Runs the body so that SIGINT or SIGTERM ends the process: the exception unwinds the body, the worker threads
    get `WORKER_GRACE_SECONDS` to stop, then one line on stderr and `os._exit(128 + signal)` (threads still busy
    in a library call do not hold the process); a second signal ends the waiting. Must be entered in the main
    thread."""
    receiver, sender = socket.socketpair()
    sender.setblocking(False)
    previous_fd = signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
    previous = {number: signal.signal(number, _raise_in_main_thread) for number in (signal.SIGINT, signal.SIGTERM)}
    _quiet_handlers()
    threading.excepthook = _quiet_thread_exceptions
    threading.Thread(target=_watch, args=(receiver,), name="signal-watch", daemon=True).start()
    try:
        yield
    except BaseException as error:
        # Prefect's SIGTERM handler raises before the watcher may have seen the signal: a moment to see it.
        if not (_stopping.is_set() or _is_signal(error) and _stopping.wait(1.0)):
            raise
        _exit_interrupted()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(previous_fd)
        sender.close()
        threading.excepthook = _default_thread_hook


def _exit_interrupted() -> None:
    try:
        wait_for_workers()
    except BaseException:  # a second signal: stop waiting
        pass
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    print(MESSAGE, file=sys.stderr, flush=True)
    os._exit(128 + _received[0])
