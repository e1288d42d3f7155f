"""The simpy side of the runtime: simulated time as the services' ``Clock``, watch delivery after a modelled
latency, and work queues that stand in for ``topolvm.runtime.Reconciler``.

Services stay synchronous and decide; these only decide *when*. A ``WorkQueue`` takes one name at a time, as the
real reconciler's single worker does, lets the handler run at once (its state changes happen then) and keeps the
queue busy for the time the handler is modelled to take, retrying with the runtime's capped backoff.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import heapq
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

import simpy
import simpy.core
import simpy.events

from topolvm.kube import store
from topolvm.services import node

EPOCH = 1_800_000_000.0  # simulated time 0, as seconds since the Unix epoch (timestamps in objects)
Process = Generator[simpy.Event, Any, Any]


class SimClock:
    """``ports.Clock`` over the simpy environment."""

    def __init__(self, env: simpy.Environment, epoch: float = EPOCH) -> None:
        self.env = env
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + float(self.env.now)


class SimEnvironment(simpy.Environment):
    """simpy's environment that remembers the event it scheduled last, so a watch delivery can join the
    deliveries of an earlier write of the same instant when nothing was scheduled in between (see
    ``WatchDispatcher``)."""

    last_scheduled: simpy.Event | None = None

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        # simpy binds its event constructors (timeout, event, process...) to the instance for speed, but only
        # those of the instance's own class: bind the base class's too.
        for name, attribute in vars(simpy.Environment).items():
            if isinstance(attribute, simpy.core.BoundClass):
                setattr(self, name, getattr(self, name))

    def schedule(
        self, event: simpy.Event, priority: simpy.events.EventPriority = simpy.events.NORMAL, delay: float = 0
    ) -> None:
        # simpy's own body, inlined: every event passes here, and a call to super() would cost more than the
        # timers this saves (tests/sim/test_engine.py holds it to simpy's order)
        heapq.heappush(self._queue, (self._now + delay, priority, next(self._eid), event))
        self.last_scheduled = event


class InOrder:
    """Delivers events to their listeners in order, also when a listener's own writes cause more (they queue
    behind the ones being delivered): ``store.Deliveries`` for one thread, without its locks."""

    def __init__(self) -> None:
        self._queue: collections.deque[store.Delivery] = collections.deque()
        self._busy = False

    def __call__(self, batch: list[store.Delivery]) -> None:
        queue = self._queue
        queue.extend(batch)
        if self._busy:
            return
        self._busy = True
        try:
            while queue:
                listener, event = queue.popleft()
                listener(event)
        finally:
            self._busy = False


class WatchDispatcher:
    """``InMemoryCluster`` dispatcher: every event reaches its watchers ``latency`` seconds after the write, in
    order. With no latency, events are delivered at once (in order), as by the default dispatcher.

    Writes of one instant share one timer while nothing else is scheduled between them (on a
    ``SimEnvironment``): their deliveries then happen exactly where separate timers would have put them, one
    after the other at the same time and before anything scheduled later, for a fraction of the events."""

    def __init__(self, env: simpy.Environment, latency: float) -> None:
        self.env = env
        self.latency = latency
        self._now = InOrder()
        self.delivered = 0
        self._timer: simpy.Event | None = None
        self._timer_batches: list[list[store.Delivery]] = []
        self._timer_set_at = -1.0

    def __call__(self, batch: list[store.Delivery]) -> None:
        self.delivered += len(batch)
        if self.latency <= 0:
            self._now(batch)
            return
        env = self.env
        if (
            self._timer is not None
            and getattr(env, "last_scheduled", None) is self._timer
            and self._timer_set_at == env.now
        ):
            self._timer_batches.append(batch)
            return
        batches = self._timer_batches = [batch]
        self._timer = timer = env.timeout(self.latency)
        self._timer_set_at = env.now
        timer.callbacks.append(lambda _event: self._deliver(batches))

    def _deliver(self, batches: list[list[store.Delivery]]) -> None:
        for batch in batches:
            self._now(batch)


def later(env: simpy.Environment, delay: float, action: Callable[[], None]) -> None:
    """Run ``action`` after ``delay`` simulated seconds (a callback, not a process: cheap at scale)."""
    if delay <= 0:
        action()
        return
    timer = env.timeout(delay)
    timer.callbacks.append(lambda _event: action())


class _Start(simpy.Event):
    """An event that runs ``action`` first thing at the instant it is made, as a process's start does (simpy's
    ``Initialize``: already triggered, scheduled URGENT), for a callback that stands in for a process."""

    def __init__(self, env: simpy.Environment, action: Callable[[simpy.Event], None]) -> None:
        self.env = env
        self.callbacks: list[Callable[[simpy.Event], None]] = [action]
        self._value: Any = None
        self._ok = True
        env.schedule(self, simpy.events.URGENT)


class WorkQueue:
    """A deduplicating queue served by one simulated worker (``topolvm.runtime.Reconciler``'s counterpart).

    ``handle(name)`` returns the outcome and the seconds the work is modelled to take; RETRY re-adds the name
    after 0.05 s doubling per failure, capped at ``max_backoff`` (the runtime's rule).

    The worker is a chain of callbacks, not a simpy process: it wakes on the same events (its start, a wake-up
    when idle, the end of each busy period) at the same instants in the same order as the process it replaces,
    without a generator to resume at each (a run has one per node and handles a few names per volume).
    """

    def __init__(
        self,
        env: simpy.Environment,
        handle: Callable[[str], tuple[node.Outcome, float]],
        *,
        max_backoff: float = 30.0,
    ) -> None:
        self.env = env
        self._handle = handle
        self._max_backoff = max_backoff
        self._items: dict[str, None] = {}
        self._failures: collections.Counter[str] = collections.Counter()
        self._wake: simpy.Event | None = None
        self.stopped = False
        self.handled = 0
        _Start(env, self._work)

    def add(self, name: str) -> None:
        if self.stopped:
            return
        self._items[name] = None
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def stop(self) -> None:
        self.stopped = True
        self._items.clear()
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()  # let the worker end

    def __len__(self) -> int:
        return len(self._items)

    def _work(self, _event: simpy.Event) -> None:
        """The worker: handle names until the queue is empty (then wait for ``add``) or a handler keeps it busy
        (then go on when that time has passed)."""
        self._wake = None
        env = self.env
        while not self.stopped:
            if not self._items:
                self._wake = env.event()
                self._wake.callbacks.append(self._work)
                return
            name = next(iter(self._items))
            del self._items[name]
            outcome, busy = self._handle(name)
            self.handled += 1
            if outcome is node.Outcome.RETRY:
                self._failures[name] += 1
                later(
                    env,
                    min(self._max_backoff, 0.05 * 2 ** self._failures[name]),
                    functools.partial(self.add, name),
                )
            else:
                self._failures.pop(name, None)
            if busy > 0:
                env.timeout(busy).callbacks.append(self._work)
                return


GC_YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


class _Collector:
    """The collector setting shared by the runs of this process (a Dask worker may run several at once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved: tuple[int, int, int] = gc.get_threshold()

    def enter(self) -> None:
        with self.lock:
            if self.users == 0:
                self.saved = gc.get_threshold()
                gc.set_threshold(GC_YOUNG_THRESHOLD, self.saved[1], self.saved[2])
            self.users += 1

    def leave(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                gc.set_threshold(*self.saved)
                gc.unfreeze()


_collector = _Collector()


@contextlib.contextmanager
def quiet_collector() -> Iterator[Callable[[], None]]:
    """Keep Python's cyclic garbage collector from rescanning the simulated world over and over.

    A run builds millions of long-lived objects (nodes, volumes, objects in the cluster) and makes almost no
    cyclic garbage, yet the default thresholds rescan the whole heap again and again (a quarter of a run's time
    at 5,000 nodes). Inside this block young collections run less often, and the yielded ``settle()`` moves what
    is alive into the collector's permanent generation (``gc.freeze``), so later full collections look only at
    objects made since; call it when a phase ends (set-up, each chunk of simulated time). Nothing is left
    uncollected for good: on leaving, objects are unfrozen and the thresholds restored (nested and concurrent
    runs share one setting). Changes only when memory is reclaimed, never what a run computes.
    """
    _collector.enter()
    try:
        yield gc.freeze
    finally:
        _collector.leave()
