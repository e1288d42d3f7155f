"""What every daemon's main does the same way: log format, and stopping on SIGTERM/SIGINT.

Used by ``topolvm-lvmd`` and the commands in ``topolvm.cmd``; stdlib only.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from types import FrameType

log = logging.getLogger("topolvm")
# How long a SIGTERM can wait for the main thread to notice it (``wait``).
SLICE_SECONDS = 0.2


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def parse_listen(address: str) -> tuple[str, int]:
    """(host, port) of a Go-style listen address: ``:8000`` ("" host: every interface), ``127.0.0.1:8000``,
    ``[::1]:8000``. ValueError when it is none."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not a listen address: {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (call from the main thread)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def wait(stop: threading.Event, timeout: float | None = None) -> bool:
    """``stop.wait(timeout)`` for a daemon's main thread, waking every ``SLICE_SECONDS`` so signal handlers run.

    CPython runs a Python signal handler only in the main thread, when it next executes bytecode. The kernel
    may deliver SIGTERM to any thread that does not block it (a gRPC or HTTP server's); a main thread asleep in
    an untimed ``Event.wait`` then never runs the handler and the process ignores SIGTERM until kubelet kills
    it (seen in about 2 of 15 runs of the livenessprobe's SIGTERM test)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = SLICE_SECONDS if deadline is None else min(SLICE_SECONDS, deadline - time.monotonic())
        if stop.wait(max(remaining, 0.0)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
