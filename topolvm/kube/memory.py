"""``InMemoryCluster``: the ``Cluster`` port with the API server's semantics, without an API server.

resourceVersions and optimistic concurrency (stale writes are Conflict), finalizers that hold deletion (and may
not be added once it started), status subresources, the spec changes the API server refuses (``validation``: a
claim's), pod binding, indexes (``match``) and watches that replay current objects then report every change — so
unit tests and the simulator exercise the same races and retries the real cluster produces. Admission plugins
(protection finalizers, default tolerations, PersistentVolumeClaimResize) are not run.

Events go to a *dispatcher* after the change, outside the lock. The default one (``store.Deliveries``) delivers
them at once and in order; the simulator passes one that delivers after a modelled watch latency.
"""

from __future__ import annotations

import datetime
import itertools
import random
import threading
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from topolvm import errors, ports
from topolvm.core import resources, workloads
from topolvm.kube import store as store_
from topolvm.kube import validation

T = TypeVar("T", bound=resources.Object)


class InMemoryCluster:
    def __init__(
        self,
        clock: ports.Clock | None = None,
        *,
        uid_seed: int | None = None,
        dispatcher: store_.Dispatcher | None = None,
    ) -> None:
        """``uid_seed`` makes UIDs reproducible (the simulator); by default they are random, like the API
        server's, so two runs never hand out the same UID (an LV is named by its LogicalVolume's UID)."""
        self.lock = threading.RLock()
        self.clock = clock
        self._versions = itertools.count(1)
        self._rng = random.Random(uid_seed)  # noqa: S311 (identifiers, not secrets)
        self._stores: dict[resources.Kind[Any], store_.Store[Any]] = {}
        self._pending: list[store_.Delivery] = []
        self._dispatch = dispatcher or store_.Deliveries()
        self._text: tuple[float, str] = (float("nan"), "")  # the last time formatted, and its text

    # --- helpers used by tests and the simulator ---
    def now_text(self) -> str:
        seconds = self.clock.now() if self.clock is not None else datetime.datetime.now(datetime.UTC).timestamp()
        if self._text[0] != seconds:  # writes come in bursts at one instant of a (simulated) clock
            self._text = (seconds, datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat())
        return self._text[1]

    def add_node(
        self,
        name: str,
        *,
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        allocatable: Mapping[str, int] | None = None,
        taints: tuple[resources.Taint, ...] = (),
    ) -> resources.Node:
        """Register a Node, as kubelet does in a real cluster."""
        meta = resources.Meta(name=name, labels=dict(labels or {}), annotations=dict(annotations or {}))
        created = self.create(resources.Node(meta, resources.NodeSpec(taints=taints)))
        node: resources.Node = resources.evolve(created, status=resources.NodeStatus(dict(allocatable or {})))
        return self.update_status(node)

    def remove_node(self, name: str) -> None:
        """Delete a Node; finalizers hold it like the API server would."""
        self.delete(resources.NODE, name)

    # --- internals ---
    def _store(self, kind: resources.Kind[T]) -> store_.Store[T]:
        found = self._stores.get(kind)
        if found is None:
            found = self._stores[kind] = store_.Store(kind, self._pending, self.lock)
        return found

    def _flush(self) -> None:
        with self.lock:
            batch = list(self._pending)
            self._pending.clear()
        if batch:
            self._dispatch(batch)

    def _save(
        self,
        store: store_.Store[T],
        obj: T,
        event_type: resources.EventType,
        meta: Mapping[str, Any],
        **changes: Any,
    ) -> T:
        """Store ``obj`` with these ``meta`` fields and other ``changes`` (one copy of each), at a new
        resourceVersion."""
        fresh_meta = resources.evolve(obj.meta, resource_version=str(next(self._versions)), **meta)
        saved: T = resources.evolve(obj, meta=fresh_meta, **changes)
        store.put(saved, event_type)
        return saved

    def _current(self, store: store_.Store[T], obj: T) -> T:
        current = store.objects.get((obj.meta.namespace, obj.meta.name))
        if current is None:
            raise errors.NotFound(f"{store.kind.name} {store_.describe(obj.meta)} not found")
        if obj.meta.resource_version != current.meta.resource_version:
            raise errors.Conflict(
                f"{store.kind.name} {store_.describe(obj.meta)}: resourceVersion {obj.meta.resource_version!r} is "
                f"stale (now {current.meta.resource_version!r})"
            )
        return current

    # --- the port ---
    def get(self, kind: resources.Kind[T], name: str, *, namespace: str = "") -> T | None:
        with self.lock:
            return self._store(kind).objects.get((namespace, name))

    def list_of(
        self, kind: resources.Kind[T], *, namespace: str | None = None, match: Mapping[str, str] | None = None
    ) -> list[T]:
        with self.lock:
            return self._store(kind).select(namespace, match)

    def create(self, obj: T) -> T:
        kind = resources.kind_of(obj)
        store_.check_scope(kind, obj.meta)
        with self.lock:
            store = self._store(kind)
            if (obj.meta.namespace, obj.meta.name) in store.objects:
                raise errors.AlreadyExists(f"{kind.name} {store_.describe(obj.meta)} already exists")
            uid = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            meta = {"uid": uid, "deletion_timestamp": None, "creation_timestamp": self.now_text(), "wire": None}
            # with a status subresource, what a create sends as status is dropped
            changes = {"status": type(obj.status)()} if kind.status else {}  # type: ignore[attr-defined]
            created: T = self._save(store, obj, resources.EventType.ADDED, meta, **changes)
        self._flush()
        return created

    def update(self, obj: T) -> T:
        kind = resources.kind_of(obj)
        with self.lock:
            store = self._store(kind)
            current = self._current(store, obj)
            if current.meta.deleting and not set(obj.meta.finalizers) <= set(current.meta.finalizers):
                raise errors.InvalidArgument(
                    f"{kind.name} {store_.describe(obj.meta)}: no new finalizers can be added while it is deleted"
                )
            validation.check_update(kind, current, obj)
            # metadata and spec come from the caller; uid, timestamps and status stay the server's
            meta = {
                "uid": current.meta.uid,
                "deletion_timestamp": current.meta.deletion_timestamp,
                "creation_timestamp": current.meta.creation_timestamp,
            }
            changes = {"status": current.status} if kind.status else {}  # type: ignore[attr-defined]
            updated: T = self._save(store, obj, resources.EventType.MODIFIED, meta, **changes)
        self._flush()
        return updated

    def update_status(self, obj: T) -> T:
        kind = resources.kind_of(obj)
        if not kind.status:
            raise errors.InvalidArgument(f"{kind.name} has no status subresource")
        with self.lock:
            store = self._store(kind)
            current = self._current(store, obj)
            status = obj.status  # type: ignore[attr-defined]
            updated: T = self._save(store, current, resources.EventType.MODIFIED, {}, status=status)
        self._flush()
        return updated

    def delete(self, kind: resources.Kind[T], name: str, *, namespace: str = "") -> None:
        with self.lock:
            store = self._store(kind)
            current = store.objects.get((namespace, name))
            if current is None:
                raise errors.NotFound(f"{kind.name} {store_.describe(resources.Meta(name, namespace))} not found")
            if not current.meta.deleting:
                self._save(store, current, resources.EventType.MODIFIED, {"deletion_timestamp": self.now_text()})
        self._flush()

    def watch(
        self, kind: resources.Kind[T], listener: ports.EventListener[T], *, match: Mapping[str, str] | None = None
    ) -> ports.Subscription:
        with self.lock:
            watcher = self._store(kind).subscribe(listener, match)
        self._flush()
        return watcher

    def bind_pod(self, *, namespace: str, name: str, node: str) -> None:
        with self.lock:
            store = self._store(workloads.POD)
            pod = store.objects.get((namespace, name))
            if pod is None:
                raise errors.NotFound(f"Pod {namespace}/{name} not found")
            if pod.spec.node_name:
                raise errors.Conflict(f"pod {namespace}/{name} is already assigned to node {pod.spec.node_name!r}")
            self._save(store, pod, resources.EventType.MODIFIED, {}, spec=resources.evolve(pod.spec, node_name=node))
        self._flush()
