"""``CachedCluster``: the ``Cluster`` port with informer caches in front of another one (the real API server).

For each *informed* kind one watch on the backing cluster feeds an in-process store (``topolvm.kube.store``);
``get``, ``list_of`` (with its indexes: by node, by volume ID...) and ``watch`` of that kind are then answered
from the store, so a component makes one LIST and one WATCH per kind instead of a request per event. Every other
kind, and every write, goes to the backing cluster. A write's answer is put in the store at once
(read-your-writes: a service that creates an object and reads it back sees it even before the watch does); a
later watch event that is not newer than what the store holds is ignored.

An informer may be restricted with a ``match`` the backing cluster can select on (the node agent informs only
the LogicalVolumes of its node): objects outside it read as absent. ``start`` lists every informed kind before it
returns; it raises ``errors.Unavailable`` when the API server cannot be read, and the component exits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, TypeVar

from topolvm import errors, ports
from topolvm.core import resources
from topolvm.kube import store as store_

log = logging.getLogger(__name__)
T = TypeVar("T", bound=resources.Object)


def _version(meta: resources.Meta) -> int | None:
    try:
        return int(meta.resource_version)
    except ValueError:
        return None


def newer(candidate: resources.Meta, held: resources.Meta) -> bool:
    """Whether ``candidate`` may replace ``held``. resourceVersions are opaque in principle but etcd's (and the
    in-memory cluster's) are increasing integers; where they are not, the later arrival wins."""
    a, b = _version(candidate), _version(held)
    return a is None or b is None or a > b


class CachedCluster:
    def __init__(
        self, backend: ports.Cluster, informers: Mapping[resources.Kind[Any], Mapping[str, str] | None]
    ) -> None:
        """``informers``: the kinds to cache, each with an optional ``match`` restricting what is cached."""
        self.backend = backend
        self.lock = threading.RLock()
        self._pending: list[store_.Delivery] = []
        self._dispatch = store_.Deliveries()
        self._scopes = {kind: dict(match or {}) for kind, match in informers.items()}
        self._stores: dict[resources.Kind[Any], store_.Store[Any]] = {
            kind: store_.Store(kind, self._pending, self.lock) for kind in informers
        }
        self._subscriptions: list[ports.Subscription] = []

    def start(self) -> CachedCluster:
        for kind, scope in self._scopes.items():
            self._subscriptions.append(self.backend.watch(kind, self._feed(kind), match=scope or None))
        return self

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()

    def informs(self, kind: resources.Kind[Any]) -> bool:
        return kind in self._stores

    # --- feeding the stores ---
    def _feed(self, kind: resources.Kind[T]) -> ports.EventListener[T]:
        store = self._stores[kind]

        def listener(event: resources.Event[T]) -> None:
            self._apply(store, event.object, deleted=event.type is resources.EventType.DELETED)

        return listener

    def _apply(self, store: store_.Store[T], obj: T, *, deleted: bool) -> None:
        with self.lock:
            held = store.objects.get((obj.meta.namespace, obj.meta.name))
            if held is not None and not newer(obj.meta, held.meta) and obj.meta.uid == held.meta.uid:
                pass  # already known (our own write, or a replay)
            elif deleted:
                store.remove(obj)
            elif self._in_scope(store.kind, obj):
                store.put(obj, resources.EventType.MODIFIED if held is not None else resources.EventType.ADDED)
            elif held is not None:
                store.remove(obj)  # left the informer's scope
        self._flush()

    def _in_scope(self, kind: resources.Kind[T], obj: T) -> bool:
        return all(value in kind.keys(obj, index) for index, value in self._scopes[kind].items())

    def _flush(self) -> None:
        with self.lock:
            batch = list(self._pending)
            self._pending.clear()
        if batch:
            self._dispatch(batch)

    def _written(self, obj: T) -> T:
        store = self._stores.get(resources.kind_of(obj))
        if store is not None:
            self._apply(store, obj, deleted=False)
        return obj

    # --- the port ---
    def get(self, kind: resources.Kind[T], name: str, *, namespace: str = "") -> T | None:
        store = self._stores.get(kind)
        if store is None:
            return self.backend.get(kind, name, namespace=namespace)
        with self.lock:
            return store.objects.get((namespace, name))

    def list_of(
        self, kind: resources.Kind[T], *, namespace: str | None = None, match: Mapping[str, str] | None = None
    ) -> list[T]:
        store = self._stores.get(kind)
        if store is None:
            return self.backend.list_of(kind, namespace=namespace, match=match)
        with self.lock:
            return store.select(namespace, match)

    def create(self, obj: T) -> T:
        return self._written(self.backend.create(obj))

    def update(self, obj: T) -> T:
        return self._written(self.backend.update(obj))

    def update_status(self, obj: T) -> T:
        return self._written(self.backend.update_status(obj))

    def delete(self, kind: resources.Kind[T], name: str, *, namespace: str = "") -> None:
        self.backend.delete(kind, name, namespace=namespace)

    def watch(
        self, kind: resources.Kind[T], listener: ports.EventListener[T], *, match: Mapping[str, str] | None = None
    ) -> ports.Subscription:
        store = self._stores.get(kind)
        if store is None:
            return self.backend.watch(kind, listener, match=match)
        with self.lock:
            watcher = store.subscribe(listener, match)
        self._flush()
        return watcher

    def bind_pod(self, *, namespace: str, name: str, node: str) -> None:
        self.backend.bind_pod(namespace=namespace, name=name, node=node)


def require(cluster: ports.Cluster, kind: resources.Kind[Any]) -> None:
    """Fail fast when a component that relies on an informer for ``kind`` is given a cluster without one."""
    if isinstance(cluster, CachedCluster) and not cluster.informs(kind):
        raise errors.ConfigError(f"{kind.name} is not informed by this component's cache")
