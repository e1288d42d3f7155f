"""The thin runtime drivers of the real world: watches, work queues and waits, on threads.

Services decide; these only decide *when* to ask them. ``Reconciler`` feeds LogicalVolume watch events into a
deduplicating work queue served by one worker thread, retrying with capped backoff when a reconcile says RETRY.
``Waiter`` lets a CSI call block until a LogicalVolume changes (event-driven, instead of upstream's 1 s→10 s
polling). The simulator replaces both with simpy processes and calls the same services.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from topolvm import errors, ports
from topolvm.core import resources
from topolvm.services import node

log = logging.getLogger(__name__)
T = TypeVar("T")


class Reconciler:
    """Runs ``reconcile(name)`` for every event of a watch on ``kind`` (LogicalVolumes unless told otherwise, e.g.
    Nodes for node cleanup; ``match`` restricts the watch, e.g. to one node's volumes), one name at a time, until
    stopped."""

    def __init__(
        self,
        cluster: ports.Cluster,
        reconcile: Callable[[str], node.Outcome],
        *,
        kind: resources.Kind[Any] = resources.LOGICAL_VOLUME,
        match: Mapping[str, str] | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self._cluster, self._kind, self._match = cluster, kind, match
        self._reconcile = reconcile
        self._max_backoff = max_backoff
        self._cond = threading.Condition()
        self._queue: dict[str, None] = {}  # insertion-ordered set
        self._failures: dict[str, int] = {}
        self._timers: set[threading.Timer] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"reconcile-{kind.name}", daemon=True)
        self._subscription: ports.Subscription | None = None

    def start(self) -> None:
        self._thread.start()
        self._subscription = self._cluster.watch(self._kind, self._on_event, match=self._match)

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        with self._cond:
            self._stopped = True
            for timer in self._timers:
                timer.cancel()
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def enqueue(self, name: str) -> None:
        with self._cond:
            self._queue[name] = None
            self._cond.notify()

    def _on_event(self, event: resources.Event[Any]) -> None:
        self.enqueue(event.object.name)

    def _retry_later(self, name: str) -> None:
        with self._cond:
            failures = self._failures.get(name, 0) + 1
            self._failures[name] = failures
            delay = min(self._max_backoff, 0.05 * 2**failures)

            def fire() -> None:
                with self._cond:
                    self._timers.discard(timer)
                self.enqueue(name)

            timer = threading.Timer(delay, fire)
            timer.daemon = True
            self._timers.add(timer)
            timer.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                name = next(iter(self._queue))
                del self._queue[name]
            try:
                outcome = self._reconcile(name)
            except Exception:
                log.exception("reconcile %s failed", name)
                outcome = node.Outcome.RETRY
            if outcome is node.Outcome.RETRY:
                self._retry_later(name)
            else:
                with self._cond:
                    self._failures.pop(name, None)


class Waiter:
    """Blocks a caller until a check over the cluster answers, re-checking on every LogicalVolume event."""

    def __init__(self, cluster: ports.Cluster) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._subscription = cluster.watch(resources.LOGICAL_VOLUME, self._on_event)

    def close(self) -> None:
        self._subscription.close()

    def _on_event(self, _event: resources.Event[Any]) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, check: Callable[[], T | None], timeout: float, clock: Callable[[], float]) -> T:
        """Call ``check`` now and after each event until it returns a value; Unavailable after ``timeout``."""
        deadline = clock() + timeout
        while True:
            with self._cond:
                seen = self._generation
            result = check()
            if result is not None:
                return result
            with self._cond:
                remaining = deadline - clock()
                if remaining <= 0:
                    raise errors.Unavailable(f"not ready after {timeout:.0f}s; the CO will retry")
                if self._generation == seen:
                    self._cond.wait(remaining)
