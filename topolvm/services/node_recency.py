"""Which cached nodes the scheduler extender forgets when no Node watch tells it: ``Recency``.

Used by ``topolvm.services.scheduler`` when its node cache is fed only by full-Node requests. Nothing then says
that a node was deleted, so nodes absent from requests for about ``node_ttl`` are evicted, and beyond
``max_nodes`` the oldest entries go first. Requests mark the nodes they name in the current generation; a
generation lasts half of ``node_ttl``, and a node not marked in the current or the previous one is stale.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Sequence


class Recency:
    """Nodes named in requests in this and the previous generation (``generation`` seconds each)."""

    def __init__(self, now: float, generation: float) -> None:
        self.generation = generation
        self._fresh: set[str] = set()
        self._older: set[str] = set()
        self._marked: Sequence[str] | None = None
        self._started = now

    def mark(self, names: Sequence[str]) -> None:
        """The nodes of a request were seen now."""
        if names != self._marked:  # kube-scheduler mostly sends the same list (same objects) again
            self._fresh.update(names)
            self._marked = names

    def recent(self) -> set[str]:
        """Nodes marked in this or the previous generation (a new set)."""
        return self._fresh | self._older

    def forget(self, name: str) -> None:
        self._fresh.discard(name)
        self._older.discard(name)

    def turn(self, cached: Iterable[str], now: float) -> list[str]:
        """When the current generation is over: the ``cached`` nodes that are stale, and a new generation starts.
        Before that: nothing."""
        if now - self._started < self.generation:
            return []
        recent = self.recent()
        stale = [name for name in cached if name not in recent]
        self._older, self._fresh, self._marked = self._fresh, set(), None
        self._started = now
        return stale

    def oldest(self, cached: Collection[str], count: int) -> list[str]:
        """``count`` of the ``cached`` nodes (oldest entry first) to evict: stale ones first, then recent ones."""
        recent = self.recent()
        chosen = [name for name in cached if name not in recent][:count]
        if len(chosen) < count:
            chosen += itertools.islice((name for name in cached if name in recent), count - len(chosen))
        return chosen
