"""Objects of one kind held in process: by key, by index, and the watches that hear about their changes.

Shared by ``InMemoryCluster`` (where it is the API server's storage) and ``CachedCluster`` (where it is an
informer's cache). ``Store.put``/``remove`` keep the index maps in step and queue one event per interested watch;
``Deliveries`` hands queued events to listeners outside any lock, in order, also when a listener's own writes
cause more events (they queue behind the ones being delivered instead of overtaking them).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from topolvm import errors, ports
from topolvm.core import resources

T = TypeVar("T", bound=resources.Object)
Delivery = tuple[ports.EventListener[Any], resources.Event[Any]]
Dispatcher = Callable[[list[Delivery]], None]
Key = tuple[str, str]
Match = tuple[tuple[str, str], ...]
Keys = tuple[tuple[str, ...], ...]  # an object's keys under each index of its kind, in the kind's index order


def describe(meta: resources.Meta) -> str:
    return f"{meta.namespace}/{meta.name}" if meta.namespace else repr(meta.name)


def check_scope(kind: resources.Kind[Any], meta: resources.Meta) -> None:
    if not meta.name:
        raise errors.InvalidArgument(f"{kind.name}: metadata.name is required")
    if kind.namespaced and not meta.namespace:
        raise errors.InvalidArgument(f"{kind.name} {meta.name!r}: metadata.namespace is required")
    if not kind.namespaced and meta.namespace:
        raise errors.InvalidArgument(f"{kind.name} {meta.name!r} is cluster-scoped; namespace must be empty")


@dataclasses.dataclass(eq=False)
class Watcher:
    store: Store[Any]
    listener: ports.EventListener[Any]
    match: Match

    def close(self) -> None:
        self.store.unsubscribe(self)


class Store(Generic[T]):
    """The owner holds ``lock`` around every call and flushes ``pending`` (a list it shares) after releasing it."""

    def __init__(self, kind: resources.Kind[T], pending: list[Delivery], lock: threading.RLock) -> None:
        self.kind = kind
        self.pending = pending
        self.lock = lock  # the owner's
        self.objects: dict[Key, T] = {}
        # insertion-ordered (dicts, not sets), so lists come out in the same order in every process
        self.index: dict[str, dict[str, dict[Key, None]]] = {name: {} for name in kind.indexes}
        self.watchers: list[Watcher] = []  # without ``match``
        self.matched: dict[tuple[str, str], list[Watcher]] = {}  # by the first (index, key) of their match
        self._matched_indexes: dict[str, int] = {}  # index -> how many watchers match on it first
        # Each stored object's index keys as indexed, so a write computes only the new object's; the index
        # functions and maps in the kind's index order, and each index's position in it.
        self._keys: dict[Key, Keys] = {}
        self._indexers = tuple(kind.indexes.values())
        self._maps = tuple(self.index.values())
        self._position = {name: i for i, name in enumerate(kind.indexes)}
        self._listeners: list[ports.EventListener[Any]] = []  # of ``watchers``, in order

    # --- reads ---
    def check_match(self, match: Mapping[str, str] | None) -> Match:
        for name in match or ():
            if name not in self.index:
                raise errors.InvalidArgument(f"{self.kind.name} has no index {name!r}")
        return tuple((match or {}).items())

    def selects(self, match: Match, obj: T) -> bool:
        return all(value in self.kind.keys(obj, name) for name, value in match)

    def select(self, namespace: str | None, match: Mapping[str, str] | None) -> list[T]:
        pairs = self.check_match(match)
        if pairs:
            first, value = pairs[0]
            found = [self.objects[k] for k in self.index[first].get(value, ())]
            if len(pairs) > 1:
                found = [o for o in found if self.selects(pairs[1:], o)]
        else:
            found = list(self.objects.values())
        if namespace is not None:
            found = [o for o in found if o.meta.namespace == namespace]
        return found

    # --- writes ---
    def put(self, obj: T, event_type: resources.EventType) -> None:
        """Store ``obj`` (or drop it, if it is being deleted with no finalizers left) and queue its events."""
        key = (obj.meta.namespace, obj.meta.name)
        old = self.objects.get(key)
        old_keys = self._keys.pop(key, None) if old is not None else None
        if old_keys is not None:
            self._unindex(key, old_keys)
        if obj.meta.deleting and not obj.meta.finalizers:
            self.objects.pop(key, None)
            self._queue(obj, None, old, resources.EventType.DELETED, keys=(), old_keys=old_keys)
            return
        self.objects[key] = obj
        keys = tuple([index(obj) for index in self._indexers])
        for values, holders_by_value in zip(keys, self._maps, strict=True):
            for value in values:
                holders = holders_by_value.get(value)
                if holders is None:
                    holders = holders_by_value[value] = {}
                holders[key] = None
        self._keys[key] = keys
        self._queue(obj, obj, old, event_type, keys=keys, old_keys=old_keys)

    def remove(self, obj: T) -> None:
        """The object is gone (a watch said DELETED)."""
        key = (obj.meta.namespace, obj.meta.name)
        old = self.objects.pop(key, None)
        if old is None:
            return
        old_keys = self._keys.pop(key)
        self._unindex(key, old_keys)
        self._queue(obj, None, old, resources.EventType.DELETED, keys=(), old_keys=old_keys)

    def _unindex(self, key: Key, old_keys: Keys) -> None:
        for values, holders_by_value in zip(old_keys, self._maps, strict=True):
            for value in values:
                holders = holders_by_value.get(value)
                if holders is not None:
                    holders.pop(key, None)
                    if not holders:
                        del holders_by_value[value]

    # --- watches ---
    def subscribe(self, listener: ports.EventListener[T], match: Mapping[str, str] | None) -> Watcher:
        """Register a watch and queue its replay of the current (matching) objects as ADDED."""
        watcher = Watcher(self, listener, self.check_match(match))
        existing = self.select(None, match)
        if watcher.match:
            self.matched.setdefault(watcher.match[0], []).append(watcher)
            index = watcher.match[0][0]
            self._matched_indexes[index] = self._matched_indexes.get(index, 0) + 1
        else:
            self.watchers.append(watcher)
            self._listeners = [w.listener for w in self.watchers]
        self.pending.extend((listener, resources.Event(resources.EventType.ADDED, o)) for o in existing)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        with self.lock:
            group = self.matched.get(watcher.match[0], []) if watcher.match else self.watchers
            if watcher not in group:
                return
            group.remove(watcher)
            if not watcher.match:
                self._listeners = [w.listener for w in self.watchers]
            if watcher.match:
                if not group:
                    del self.matched[watcher.match[0]]
                index = watcher.match[0][0]
                self._matched_indexes[index] -= 1
                if not self._matched_indexes[index]:
                    del self._matched_indexes[index]

    def _queue(
        self,
        obj: T,
        stored: T | None,
        old: T | None,
        event_type: resources.EventType,
        *,
        keys: Keys,
        old_keys: Keys | None,
    ) -> None:
        """Queue the events of a write: ``keys`` are the stored object's index keys (empty when it is gone),
        ``old_keys`` the previous one's (None when there was none)."""
        event = resources.Event(event_type, obj)
        self.pending.extend(zip(self._listeners, itertools.repeat(event)))
        if not self.matched:
            return
        # A watch with a match hears about an object while it matches; one that stops matching is DELETED to it
        # and one that starts is ADDED, as with field selectors on the API server.
        for watcher in self._interested(keys if stored is not None else None, old_keys):
            before = old_keys is not None and self._selects(watcher.match, old_keys)
            after = stored is not None and self._selects(watcher.match, keys)
            if after:
                kind = event_type if before else resources.EventType.ADDED
            elif before:
                kind = resources.EventType.DELETED
            else:
                continue
            self.pending.append((watcher.listener, event if kind is event_type else resources.Event(kind, obj)))

    def _selects(self, match: Match, keys: Keys) -> bool:
        position = self._position
        return all(value in keys[position[name]] for name, value in match)

    def _interested(self, keys: Keys | None, old_keys: Keys | None) -> Iterable[Watcher]:
        found: dict[int, Watcher] = {}
        position = self._position
        for candidate in (keys, old_keys):
            if candidate is None:
                continue
            for name in self._matched_indexes:
                for value in candidate[position[name]]:
                    for watcher in self.matched.get((name, value), ()):
                        found.setdefault(id(watcher), watcher)
        return found.values()


class Deliveries:
    """The default dispatcher: deliver now, in order, on the writer's thread (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Delivery] = deque()
        self._busy = False

    def __call__(self, batch: list[Delivery]) -> None:
        with self._lock:
            self._queue.extend(batch)
            if self._busy:
                return
            self._busy = True
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._busy = False
                        return
                    listener, event = self._queue.popleft()
                listener(event)
        except BaseException:
            with self._lock:
                self._busy = False
            raise
