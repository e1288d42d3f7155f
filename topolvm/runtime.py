"""The thin runtime drivers of the real world: watches, work queues and waits, on threads.

Services decide; these only decide *when* to ask them. ``Reconciler`` feeds LogicalVolume watch events into a
deduplicating work queue served by one worker thread, retrying with capped backoff when a reconcile says RETRY.
``Waiter`` lets a CSI call block until a LogicalVolume changes (event-driven, instead of upstream's 1 s→10 s
polling). ``Background`` runs calls a CSI call must not wait for (Events) on one thread. The simulator replaces
them with simpy processes and calls the same services.
"""

from __future__ import annotations

import collections
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


class WaitTimedOut(errors.Unavailable):
    """A wait ran out of time before its check answered (the operation itself goes on)."""


class Waiter:
    """Blocks a caller until a check over the cluster answers, re-checking on every LogicalVolume event.

    Every blocked caller holds one thread of its gRPC server's fixed pool (``unix_grpc.serve``: 32), so waits are
    admitted under two caps: at most ``max_waiters`` at once, and at most ``max_waiters_per_key`` for one key —
    the node whose agent must answer. Volumes of a NotReady node can then hold a few threads but never the pool,
    and calls about other nodes (and calls that never wait, such as GetCapacity) keep being served. A wait past a
    cap is refused at once with Unavailable: the CO retries, and every call that waits is idempotent. A check that
    answers at once is never refused, so a retry of finished work always gets its answer.
    """

    def __init__(self, cluster: ports.Cluster, *, max_waiters: int = 24, max_waiters_per_key: int = 8) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._max_waiters = max_waiters
        self._max_per_key = max_waiters_per_key
        self._waiting: dict[str, int] = {}
        self._subscription = cluster.watch(resources.LOGICAL_VOLUME, self._on_event)

    def close(self) -> None:
        self._subscription.close()

    def _on_event(self, _event: resources.Event[Any]) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def waiting(self, key: str | None = None) -> int:
        """How many callers are blocked now (for ``key`` only, if given)."""
        with self._cond:
            return sum(self._waiting.values()) if key is None else self._waiting.get(key, 0)

    def _admit(self, key: str, what: str) -> None:
        with self._cond:
            total = sum(self._waiting.values())
            here = self._waiting.get(key, 0)
            if key and here >= self._max_per_key:
                raise errors.Unavailable(f"{what}: too many calls are waiting for node {key} ({here}); retry later")
            if total >= self._max_waiters:
                raise errors.Unavailable(f"{what}: too many calls are waiting ({total}, the most allowed); retry later")
            self._waiting[key] = here + 1

    def _release(self, key: str) -> None:
        with self._cond:
            left = self._waiting[key] - 1
            if left:
                self._waiting[key] = left
            else:
                del self._waiting[key]

    def wait(
        self,
        check: Callable[[], T | None],
        timeout: float,
        clock: Callable[[], float],
        *,
        key: str = "",
        what: str = "",
    ) -> T:
        """Call ``check`` now and after each event until it returns a value.

        ``key`` names what the wait depends on (a node) for the per-key cap; ``what`` starts the error messages.
        Unavailable when refused admission, WaitTimedOut after ``timeout`` seconds of ``clock``.
        """
        what = what or "wait"
        deadline = clock() + timeout
        with self._cond:
            seen = self._generation
        result = check()
        if result is not None:
            return result
        self._admit(key, what)
        try:
            while True:
                with self._cond:
                    remaining = deadline - clock()
                    if remaining <= 0:
                        raise WaitTimedOut(f"{what}: not done after {timeout:.1f}s; it goes on, retry")
                    if self._generation == seen:
                        self._cond.wait(remaining)
                    seen = self._generation
                result = check()
                if result is not None:
                    return result
        finally:
            self._release(key)


class Background:
    """Calls handed to one worker thread, in order, so the caller (a CSI call) never waits for them (an API
    write). Bounded: past ``limit`` queued calls a new one is dropped and logged, never the caller blocked."""

    def __init__(self, name: str, *, limit: int = 1000) -> None:
        self.name = name
        self.limit = limit
        self._queue: collections.deque[Callable[[], None]] = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                log.warning("%s: stopped, a call is dropped", self.name)
                return
            if len(self._queue) >= self.limit:
                log.warning("%s: %d calls queued, dropping one", self.name, len(self._queue))
                return
            self._queue.append(call)
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Run what is queued (up to ``timeout``), then end the thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if not self._queue:
                    return
                call = self._queue.popleft()
            try:
                call()
            except Exception:  # one failed call must not end the thread
                log.exception("%s: a background call failed", self.name)
