"""Delivering a changing value (lvmd's capacity) to listeners in order, without holding the caller's lock.

Producers stamp each value with a sequence number taken under their own lock; ``deliver`` serialises delivery
and drops a value older than one already delivered, so a slow refresh can never overwrite a newer capacity in
a listener (the Watch stream, the capacity publisher). A failing listener is logged and does not stop others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Subscription(Generic[T]):
    broadcaster: Broadcaster[T]
    listener: Callable[[T], None]

    def close(self) -> None:
        self.broadcaster.unsubscribe(self.listener)


class Broadcaster(Generic[T]):
    def __init__(self) -> None:
        # Serialises delivery. Order: this lock, then the producer's (``current`` in subscribe); a producer never
        # calls deliver while holding its own lock.
        self._lock = threading.Lock()
        self._listeners: list[Callable[[T], None]] = []
        self._delivered_seq = -1
        self._latest: T | None = None

    def deliver(self, seq: int, value: T) -> None:
        with self._lock:
            if seq <= self._delivered_seq:
                return
            self._delivered_seq, self._latest = seq, value
            for listener in list(self._listeners):
                _call(listener, value)

    def subscribe(self, listener: Callable[[T], None], current: Callable[[], tuple[int, T]]) -> _Subscription[T]:
        """Register ``listener`` and send it the current value first (``current`` returns (seq, value)). Any
        listener may be called here, on the subscriber's thread under this lock, so listeners must not call the
        producer or (un)subscribe."""
        with self._lock:
            seq, value = current()
            if seq > self._delivered_seq:
                # A value its producer has not delivered yet (it took the seq and is waiting for this lock): its
                # deliver() will be dropped as not newer, so every listener gets it here, in order. Without this,
                # a one-shot subscriber (LvmdClient.capacity() is a Watch) during an lvremove hid the removal
                # from the long-lived capacity stream (docs/fidelity.md, "A capacity write seen lost").
                self._delivered_seq, self._latest = seq, value
                for other in list(self._listeners):
                    _call(other, value)
            elif self._latest is not None:
                value = self._latest
            listener(value)  # the first value's failure is the subscriber's to see
            self._listeners.append(listener)
        return _Subscription(self, listener)

    def unsubscribe(self, listener: Callable[[T], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)


def _call(listener: Callable[[T], None], value: T) -> None:
    try:
        listener(value)
    except Exception:
        log.exception("listener %r failed", listener)
