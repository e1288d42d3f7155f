"""topolvm.process.wait: a daemon's main thread waits for its stop event in slices, so a signal handler runs even
when the kernel delivered the signal to another thread."""

from __future__ import annotations

import os
import signal
import threading
import time

from topolvm import process


def test_returns_true_once_set_and_false_on_timeout() -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert process.wait(stop) is True
    started = time.monotonic()
    assert process.wait(threading.Event(), 0.5) is False
    assert 0.5 <= time.monotonic() - started < 2.0


def test_sigterm_delivered_to_another_thread_still_stops_the_main_thread() -> None:
    """Every thread but one blocks SIGTERM; the signal lands on that one, a worker. An untimed Event.wait in the
    main thread would sleep through the handler; process.wait notices it within a slice."""
    stop = process.stop_on_signals()
    try:
        ready = threading.Event()

        def worker() -> None:
            ready.set()
            time.sleep(3)

        main_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            thread = threading.Thread(target=worker, daemon=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, main_mask)  # the worker is born unblocked...
            thread.start()
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # ...and only it may take the signal
            ready.wait(5)
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_SETMASK, main_mask)  # the handler runs in the main thread
            started = time.monotonic()
            assert process.wait(stop, 5) is True
            assert time.monotonic() - started < 2
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, main_mask)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
