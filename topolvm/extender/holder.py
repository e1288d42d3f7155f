"""State the extender keeps between requests: node annotations (for ``nodeCacheCapable`` requests) and the
over-commit reservation ledger, with the clock that drives it.

Owned by ``topolvm.extender.verbs``; one instance per process (the ledger must see every request, so the
extender runs one worker). The node cache is fed by full-Node requests and by ``topolvm.extender.kube``'s watch.
"""

from __future__ import annotations

import itertools
import operator
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from topolvm import constants
from topolvm.core import node_index, scheduling

EXPIRE_EVERY = 1.0  # seconds between sweeps of expired reservations
_UNSEEN: object = object()


def capacity_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The ``capacity.topolvm.io/<class>`` annotations of an object, keyed by class annotation name."""
    if not annotations:
        return {}
    prefix = constants.CAPACITY_KEY_PREFIX
    cut = len(prefix)
    return {key[cut:]: value for key, value in annotations.items() if key.startswith(prefix)}


class Holder:
    """Node cache (``node_index.NodeIndex``), reservation ledger and clock, shared by every request.

    ``lock`` guards the index: the node watch thread updates it while requests read it. A full-Node request
    holds the lock while it records its nodes and evaluates them, so it is judged on exactly what it sent.
    """

    def __init__(self, reservation_ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ledger = scheduling.Ledger(reservation_ttl)
        self.clock = clock
        self.index = node_index.NodeIndex()
        self.lock = threading.RLock()
        # Full annotations of each node as last sent in a full-Node request: when a node arrives unchanged (the
        # common case) one dict comparison replaces extracting and comparing its capacity annotations.
        self._seen: dict[str, object] = {}
        self._last_sweep = float("-inf")

    def now(self) -> float:
        """Current time; sweeps expired reservations at most once per ``EXPIRE_EVERY``."""
        now = self.clock()
        if self.ledger and now - self._last_sweep >= EXPIRE_EVERY:
            self._last_sweep = now
            self.ledger.expire(now)
        return now

    def remember(self, node: str, capacities: dict[str, str]) -> None:
        """Record a node's capacity annotations (class name -> value) as last seen (thread-safe)."""
        with self.lock:
            self._seen.pop(node, None)
            self.index.update(node, capacities)

    def observe(self, names: Sequence[str], annotations: Sequence[Mapping[str, str] | None]) -> None:
        """Record the nodes of a full-Node request (names and all their annotations, in order).

        The caller holds ``lock``. Only nodes whose annotations differ from what this method last saw for them
        reach the index.
        """
        seen = self._seen
        same = map(operator.eq, map(seen.get, names, itertools.repeat(_UNSEEN)), annotations)
        update = self.index.update
        for i in itertools.compress(range(len(names)), map(operator.not_, same)):
            name, metadata = names[i], annotations[i]
            update(name, capacity_annotations(metadata))
            seen[name] = metadata

    def forget(self, node: str) -> None:
        with self.lock:
            self._seen.pop(node, None)
            self.index.remove(node)

    def capacities(self, node: str) -> dict[str, str] | None:
        return self.index.raw(node)

    def known_nodes(self) -> int:
        return len(self.index)


def pod_key(namespace: str, name: str, uid: str) -> str:
    """Identity a reservation is held under: the pod UID, else namespace/name (a pod being created may lack one)."""
    return uid or f"{namespace}/{name}"
