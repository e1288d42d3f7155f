"""``InMemoryCluster``: the ``Cluster`` port with the API server's semantics, without an API server.

resourceVersions and optimistic concurrency (stale writes are Conflict), finalizers that hold deletion,
the status subresource, and watches that replay current objects then report every change — so unit tests and
the simulator exercise the same races and retries the real cluster produces. Listeners run synchronously after
the change, outside the lock.
"""

from __future__ import annotations

import datetime
import itertools
import random
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from topolvm import errors, ports
from topolvm.core import resources

Obj = TypeVar("Obj", resources.LogicalVolume, resources.Node)


@dataclass
class _Subscription:
    store: _Store[resources.LogicalVolume] | _Store[resources.Node]
    listener: ports.EventListener

    def close(self) -> None:
        self.store.unsubscribe(self.listener)


class _Store(Generic[Obj]):
    def __init__(self, cluster: InMemoryCluster, kind: str) -> None:
        self.cluster = cluster
        self.kind = kind
        self.objects: dict[str, Obj] = {}
        self.listeners: list[ports.EventListener] = []

    def unsubscribe(self, listener: ports.EventListener) -> None:
        with self.cluster.lock:
            if listener in self.listeners:
                self.listeners.remove(listener)

    def emit(self, event: resources.Event) -> None:
        for listener in list(self.listeners):
            listener(event)

    def check_current(self, obj: Obj) -> Obj:
        current = self.objects.get(obj.meta.name)
        if current is None:
            raise errors.NotFound(f"{self.kind} {obj.meta.name!r} not found")
        if obj.meta.resource_version != current.meta.resource_version:
            raise errors.Conflict(
                f"{self.kind} {obj.meta.name!r}: resourceVersion {obj.meta.resource_version!r} is stale "
                f"(now {current.meta.resource_version!r})"
            )
        return current

    def store(self, obj: Obj, event_type: resources.EventType) -> Obj:
        """Save ``obj`` with a new resourceVersion; drop it if deleting with no finalizers left."""
        obj = replace(obj, meta=replace(obj.meta, resource_version=self.cluster.next_version()))
        if obj.meta.deleting and not obj.meta.finalizers:
            self.objects.pop(obj.meta.name, None)
            event_type = resources.EventType.DELETED
        else:
            self.objects[obj.meta.name] = obj
        self.cluster.pending.append((self, resources.Event(event_type, obj)))
        return obj


class InMemoryCluster:
    def __init__(self, clock: ports.Clock | None = None, *, uid_seed: int | None = None) -> None:
        """``uid_seed`` makes UIDs reproducible (the simulator); by default they are random, like the API
        server's, so two runs never hand out the same UID (an LV is named by its LogicalVolume's UID)."""
        self.lock = threading.RLock()
        self.clock = clock
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)
        self._rng = random.Random(uid_seed)  # noqa: S311 (identifiers, not secrets)
        self.pending: list[tuple[_Store[resources.LogicalVolume] | _Store[resources.Node], resources.Event]] = []
        self._lvs: _Store[resources.LogicalVolume] = _Store(self, "LogicalVolume")
        self._nodes: _Store[resources.Node] = _Store(self, "Node")

    # --- helpers used by stores and tests ---
    def next_version(self) -> str:
        return str(next(self._versions))

    def _now(self) -> str:
        seconds = self.clock.now() if self.clock is not None else datetime.datetime.now(datetime.UTC).timestamp()
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()

    def _flush(self) -> None:
        """Deliver events queued under the lock, in order, without holding it."""
        with self.lock:
            batch, self.pending = self.pending, []
        for store, event in batch:
            store.emit(event)

    def add_node(
        self, name: str, *, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None
    ) -> resources.Node:
        """Test and simulator set-up: register a Node (kubelet's job in a real cluster)."""
        with self.lock:
            meta = resources.Meta(
                name=name,
                uid=f"node-uid-{next(self._uids)}",
                labels=labels or {},
                annotations=annotations or {},
                creation_timestamp=self._now(),
            )
            node = self._nodes.store(resources.Node(meta), resources.EventType.ADDED)
        self._flush()
        return node

    def remove_node(self, name: str) -> None:
        """Test and simulator set-up: delete a Node; finalizers hold it like the API server would."""
        with self.lock:
            node = self._nodes.objects.get(name)
            if node is None:
                raise errors.NotFound(f"Node {name!r} not found")
            self._nodes.store(
                replace(node, meta=replace(node.meta, deletion_timestamp=self._now())), resources.EventType.MODIFIED
            )
        self._flush()

    # --- LogicalVolumes ---
    def get_logical_volume(self, *, name: str) -> resources.LogicalVolume | None:
        with self.lock:
            return self._lvs.objects.get(name)

    def list_logical_volumes(self) -> list[resources.LogicalVolume]:
        with self.lock:
            return list(self._lvs.objects.values())

    def create_logical_volume(self, *, lv: resources.LogicalVolume) -> resources.LogicalVolume:
        with self.lock:
            if lv.meta.name in self._lvs.objects:
                raise errors.AlreadyExists(f"LogicalVolume {lv.meta.name!r} already exists")
            uid = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            meta = replace(lv.meta, uid=uid, deletion_timestamp=None, creation_timestamp=self._now())
            created = self._lvs.store(replace(lv, meta=meta), resources.EventType.ADDED)
        self._flush()
        return created

    def update_logical_volume(self, *, lv: resources.LogicalVolume) -> resources.LogicalVolume:
        with self.lock:
            current = self._lvs.check_current(lv)
            # metadata and spec come from the caller; uid, deletion and status stay the server's
            meta = replace(
                lv.meta,
                uid=current.meta.uid,
                deletion_timestamp=current.meta.deletion_timestamp,
                creation_timestamp=current.meta.creation_timestamp,
            )
            updated = self._lvs.store(replace(lv, meta=meta, status=current.status), resources.EventType.MODIFIED)
        self._flush()
        return updated

    def update_logical_volume_status(self, *, lv: resources.LogicalVolume) -> resources.LogicalVolume:
        with self.lock:
            current = self._lvs.check_current(lv)
            updated = self._lvs.store(replace(current, status=lv.status), resources.EventType.MODIFIED)
        self._flush()
        return updated

    def delete_logical_volume(self, *, name: str) -> None:
        with self.lock:
            current = self._lvs.objects.get(name)
            if current is None:
                raise errors.NotFound(f"LogicalVolume {name!r} not found")
            if not current.meta.deleting:
                meta = replace(current.meta, deletion_timestamp=self._now())
                self._lvs.store(replace(current, meta=meta), resources.EventType.MODIFIED)
        self._flush()

    def watch_logical_volumes(self, listener: ports.EventListener) -> ports.Subscription:
        return self._watch(self._lvs, listener)

    # --- Nodes ---
    def get_node(self, *, name: str) -> resources.Node | None:
        with self.lock:
            return self._nodes.objects.get(name)

    def list_nodes(self) -> list[resources.Node]:
        with self.lock:
            return list(self._nodes.objects.values())

    def update_node(self, *, node: resources.Node) -> resources.Node:
        with self.lock:
            current = self._nodes.check_current(node)
            meta = replace(
                node.meta,
                uid=current.meta.uid,
                deletion_timestamp=current.meta.deletion_timestamp,
                creation_timestamp=current.meta.creation_timestamp,
            )
            updated = self._nodes.store(replace(node, meta=meta), resources.EventType.MODIFIED)
        self._flush()
        return updated

    def watch_nodes(self, listener: ports.EventListener) -> ports.Subscription:
        return self._watch(self._nodes, listener)

    def _watch(self, store: _Store[Obj], listener: ports.EventListener) -> ports.Subscription:
        with self.lock:
            existing = list(store.objects.values())
            store.listeners.append(listener)
        for obj in existing:
            listener(resources.Event(resources.EventType.ADDED, obj))
        return _Subscription(store, listener)
