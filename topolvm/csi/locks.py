"""Per-volume serialisation for the CSI servicers: calls about one volume (or volume name) run one at a time,
calls about different volumes in parallel. The services below are written unlocked; this thin wrapper is the
only place that knows gRPC calls arrive concurrently (the CSI spec allows a CO to retry while a call runs)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from topolvm import errors


class KeyedLock:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str, *, blocking: bool = True) -> Iterator[None]:
        """Hold ``key``'s lock. Not ``blocking``: OperationPending (ABORTED) at once if another call holds it —
        what the CSI spec suggests for a second call about a volume, and a thread is not parked behind a wait."""
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            if not lock.acquire(blocking=blocking):
                raise errors.OperationPending(f"another call about {key!r} is in progress; retry")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]  # no entry outlives its last user
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)
