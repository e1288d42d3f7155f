"""Running until told to stop, in the sidecars' main threads (``topolvm.sidecars.registrar``, ``.livenessprobe``).

CPython runs a Python signal handler only in the main thread, and only when that thread next executes bytecode.
The kernel may deliver SIGTERM to any thread that does not block it (the HTTP server's thread, say); a main
thread asleep in an untimed ``Event.wait`` then never runs the handler and the process ignores SIGTERM until
kubelet kills it. That happened here in about 2 of 15 runs of the livenessprobe's SIGTERM test, so the main
thread waits in short slices instead.
"""

from __future__ import annotations

import threading

# How long a SIGTERM can wait for the main thread to notice it.
SLICE_SECONDS = 0.2


def wait(stop: threading.Event) -> None:
    """Return once ``stop`` is set, waking every ``SLICE_SECONDS`` so pending signal handlers run."""
    while not stop.wait(SLICE_SECONDS):
        pass
