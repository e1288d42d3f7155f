"""kube-scheduler's scheduling queue (pkg/scheduler/backend/queue), modelled: the active queue, per-pod backoff and
the unschedulable pods.

- pods are tried in the order they became active;
- a pod a plugin rejected waits among the unschedulable pods until a cluster event that one of the plugins that
  rejected it says may help (``simulator.kube_scheduler.queueing``) moves it back, or until it has waited there
  5 minutes (the flush every 30 s); a pod no plugin rejected (a PreBind or bind failure) goes straight to
  backoff;
- backoff is per pod, 1 s doubling to 10 s with its attempts; a pod moved back before its backoff ends waits it
  out first.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Generator
from typing import Any

import simpy

from simulator import engine
from simulator.kube_scheduler import queueing

Key = tuple[str, str]
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
UNSCHEDULABLE_FLUSH = 300.0  # podMaxInUnschedulablePodsDuration
FLUSH_PERIOD = 30.0


class SchedulingQueue:
    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.active: collections.deque[Key] = collections.deque()
        self._queued: set[Key] = set()
        self.backoff: dict[Key, float] = {}  # key -> when it may be tried again
        self.unschedulable: dict[Key, float] = {}  # key -> since when
        self._parked_at: dict[Key, int] = {}  # key -> the event sequence number when it was parked
        self._rejected: dict[Key, tuple[frozenset[str], frozenset[Key]]] = {}  # key -> (rejectors, its claims)
        self._events: list[tuple[int, queueing.Event, Key | None]] = []  # this instant's, not yet applied
        self._seq = 0
        self.moves = collections.Counter[str]()  # pods moved back, by event
        self.attempts: collections.Counter[Key] = collections.Counter()  # failed attempts per pod
        self._wake: simpy.Event | None = None
        self._move_pending = False

    def start(self) -> None:
        """Start the periodic flush of pods unschedulable for too long (a simpy process)."""
        self.env.process(self._flush_loop())

    def add(self, key: Key) -> None:
        """The pod is active: tried after the ones already there."""
        if key in self._queued:
            return
        self._queued.add(key)
        self.active.append(key)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def pop(self) -> Generator[simpy.Event, Any, Key]:
        """The next active pod, waiting for one if there is none (``key = yield from queue.pop()``)."""
        while not self.active:
            self._wake = self.env.event()
            yield self._wake
            self._wake = None
        key = self.active.popleft()
        self._queued.discard(key)
        return key

    def forget(self, key: Key) -> None:
        """The pod is gone or placed: no backoff, not unschedulable."""
        self.unschedulable.pop(key, None)
        self._parked_at.pop(key, None)
        self._rejected.pop(key, None)
        self.backoff.pop(key, None)

    def park(self, key: Key, rejectors: frozenset[str], claims: frozenset[Key]) -> None:
        """An attempt failed: backoff grows, and the pod waits among the unschedulable ones for an event one of
        ``rejectors`` cares about (about ``claims``, for a claim's own event), or goes to backoff at once if no
        plugin rejected it."""
        self.attempts[key] += 1
        exponent = min(self.attempts[key] - 1, 16)
        self.backoff[key] = self.env.now + min(MAX_BACKOFF, INITIAL_BACKOFF * 2**exponent)
        self._rejected[key] = (rejectors, claims)
        if not rejectors:  # an error, not a rejection: straight to the backoff queue
            self._retry(key)
            return
        self.unschedulable[key] = float(self.env.now)
        self._parked_at[key] = self._seq

    def note(self, event: queueing.Event, claim: Key | None = None) -> None:
        """Note a cluster event; the events of one instant are applied to the unschedulable pods together, each
        only to the pods parked before it (upstream moves the pods that are parked when the event arrives)."""
        self._seq += 1
        if not self.unschedulable:
            return
        self._events.append((self._seq, event, claim))
        if not self._move_pending:
            self._move_pending = True
            engine.later(self.env, 0, self._move_all)

    def _move_all(self) -> None:
        self._move_pending = False
        events, self._events = self._events, []
        last = events[-1][0]
        for key in list(self.unschedulable):
            parked = self._parked_at.get(key, 0)
            rejected = self._rejected.get(key)
            if parked >= last or rejected is None:
                continue
            after = [(e, c) for seq, e, c in events if seq > parked]
            moved_by = queueing.requeued_by(rejected[0], after, rejected[1])
            if moved_by is not None:
                self.moves[moved_by.value] += 1
                del self.unschedulable[key]
                self._parked_at.pop(key, None)
                self._retry(key)

    def _retry(self, key: Key) -> None:
        ready_at = self.backoff.get(key, 0.0)
        if ready_at <= self.env.now:
            self.backoff.pop(key, None)
            self.add(key)
        else:
            engine.later(self.env, ready_at - self.env.now, lambda: self._retry_if_waiting(key))

    def _retry_if_waiting(self, key: Key) -> None:
        if key in self.backoff and key not in self._queued:
            self.backoff.pop(key, None)
            self.add(key)

    def _flush_loop(self) -> engine.Process:
        while True:
            yield self.env.timeout(FLUSH_PERIOD)
            # parked in time order (a pod leaves before it is parked again): the expired ones come first
            expired = list(
                itertools.takewhile(
                    lambda k: self.env.now - self.unschedulable[k] > UNSCHEDULABLE_FLUSH, self.unschedulable
                )
            )
            for key in expired:
                del self.unschedulable[key]
                self._parked_at.pop(key, None)
                self.moves["UnschedulableTimeout"] += 1
                self._retry(key)
