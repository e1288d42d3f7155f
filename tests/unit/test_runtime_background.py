"""``runtime.Background``: calls run on its thread in order, a failing one does not stop the rest, a full queue
drops new calls instead of blocking the caller, and ``stop`` runs what is queued."""

from __future__ import annotations

import threading

from topolvm import runtime


def test_calls_run_in_order_past_a_failure_and_stop_drains() -> None:
    gate, holding = threading.Event(), threading.Event()
    done: list[int] = []
    bg = runtime.Background("t", limit=3)

    def hold() -> None:  # holds the worker while the queue fills
        holding.set()
        gate.wait(5)

    bg.submit(hold)
    assert holding.wait(5)
    bg.submit(lambda: done.append(1))

    def fail() -> None:
        raise RuntimeError("boom")

    bg.submit(fail)
    bg.submit(lambda: done.append(3))
    bg.submit(lambda: done.append(4))  # the fourth queued call: over the limit of 3, dropped
    gate.set()
    bg.stop()
    assert done == [1, 3]
    assert not bg._thread.is_alive()
