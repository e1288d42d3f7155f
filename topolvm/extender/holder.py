"""State the extender keeps between requests: node annotations (for ``nodeCacheCapable`` requests) and the
over-commit reservation ledger, with the clock that drives it.

Owned by ``topolvm.extender.verbs``; one instance per process (the ledger must see every request, so the
extender runs one worker). The node cache is fed by full-Node requests and by ``topolvm.extender.kube``'s watch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from topolvm import constants
from topolvm.core import scheduling

EXPIRE_EVERY = 1.0  # seconds between sweeps of expired reservations


def capacity_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The ``capacity.topolvm.io/<class>`` annotations of an object, keyed by class annotation name."""
    if not annotations:
        return {}
    prefix = constants.CAPACITY_KEY_PREFIX
    cut = len(prefix)
    return {key[cut:]: value for key, value in annotations.items() if key.startswith(prefix)}


class Holder:
    def __init__(self, reservation_ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ledger = scheduling.Ledger(reservation_ttl)
        self.clock = clock
        self._nodes: dict[str, dict[str, str]] = {}
        self._last_sweep = float("-inf")

    def now(self) -> float:
        """Current time; sweeps expired reservations at most once per ``EXPIRE_EVERY``."""
        now = self.clock()
        if self.ledger and now - self._last_sweep >= EXPIRE_EVERY:
            self._last_sweep = now
            self.ledger.expire(now)
        return now

    def remember(self, node: str, capacities: dict[str, str]) -> None:
        """Record a node's capacity annotations (class name -> value) as last seen."""
        self._nodes[node] = capacities

    def forget(self, node: str) -> None:
        self._nodes.pop(node, None)

    def capacities(self, node: str) -> dict[str, str] | None:
        return self._nodes.get(node)

    def known_nodes(self) -> int:
        return len(self._nodes)


def pod_key(namespace: str, name: str, uid: str) -> str:
    """Identity a reservation is held under: the pod UID, else namespace/name (a pod being created may lack one)."""
    return uid or f"{namespace}/{name}"
