"""Kubernetes objects TopoLVM reads and writes, as frozen values, and the ``Kind`` that names each of them.

Shapes follow the API (upstream's ``logicalvolumes.topolvm.io/v1`` for the CRD, docs/compat.md), reduced to the
fields TopoLVM, the scheduler model and the provisioner model use. Adapters convert to and from the wire (the
kubernetes client, the in-memory cluster, the simulator); services decide on these values only. Workload kinds
(Pods, PVCs, PVs, StorageClasses, CSIStorageCapacities) live in ``topolvm.core.workloads``.

Quantities are integers: bytes for storage and memory, millicores for ``cpu``, counts otherwise.

Each kind declares *indexes*: named functions from an object to the keys it is found under. ``Cluster.list_of``
takes ``match={index: key}`` and every adapter answers it alike — the in-memory cluster and the informer cache
from these functions, the real API server through a field selector where the index is also a selectable field.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from topolvm import errors


@dataclass(frozen=True)
class Meta:
    name: str
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    deletion_timestamp: str | None = None
    creation_timestamp: str | None = None  # RFC 3339, set by the API server
    # The adapter's copy of the object as the server sent it, so a write keeps the fields this model leaves out.
    wire: Any = field(default=None, compare=False, repr=False)

    @property
    def deleting(self) -> bool:
        return self.deletion_timestamp is not None

    def with_finalizer(self, finalizer: str) -> Meta:
        if finalizer in self.finalizers:
            return self
        return evolve(self, finalizers=(*self.finalizers, finalizer))  # type: ignore[no-any-return]

    def without_finalizer(self, finalizer: str) -> Meta:
        return evolve(self, finalizers=tuple(f for f in self.finalizers if f != finalizer))  # type: ignore[no-any-return]

    def annotated(self, changes: Mapping[str, str | None]) -> Meta:
        """A copy with these annotations set (``None`` removes one)."""
        annotations = dict(self.annotations)
        for key, value in changes.items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        return evolve(self, annotations=annotations)  # type: ignore[no-any-return]


class Object:
    """What every kind has: ``meta``, and a name. Concrete kinds are frozen dataclasses deriving from this."""

    meta: Meta

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def namespace(self) -> str:
        return self.meta.namespace


T = TypeVar("T", bound=Object)
Index = Callable[[Any], tuple[str, ...]]
_KINDS: dict[type[Object], Kind[Any]] = {}


@dataclass(frozen=True, eq=False)
class Kind(Generic[T]):
    """One API kind: its name, its Python type, whether it is namespaced and has a status subresource, and its
    indexes (the real-API adapter knows which of them the server can answer as field selectors)."""

    name: str
    type: type[T]
    namespaced: bool = False
    status: bool = False
    indexes: Mapping[str, Index] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _KINDS[self.type] = self

    def __repr__(self) -> str:
        return f"Kind({self.name})"

    def keys(self, obj: T, index: str) -> tuple[str, ...]:
        try:
            return self.indexes[index](obj)
        except KeyError:
            raise errors.InvalidArgument(f"{self.name} has no index {index!r}") from None


def kind_of(obj: T) -> Kind[T]:
    try:
        return _KINDS[type(obj)]
    except KeyError:
        raise errors.InvalidArgument(f"{type(obj).__name__} is not a Kubernetes kind") from None


def key(namespace: str, name: str) -> tuple[str, str]:
    return (namespace, name)


# --- LogicalVolume (topolvm.io/v1) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogicalVolumeSpec:
    name: str
    node_name: str
    size: int
    device_class: str = ""
    lvcreate_option_class: str = ""
    source: str = ""
    access_type: str = ""


@dataclass(frozen=True)
class LogicalVolumeStatus:
    volume_id: str = ""
    code: int = errors.OK
    message: str = ""
    current_size: int | None = None


@dataclass(frozen=True)
class LogicalVolume(Object):
    meta: Meta
    spec: LogicalVolumeSpec
    status: LogicalVolumeStatus = LogicalVolumeStatus()

    @property
    def volume_ids(self) -> tuple[str, ...]:
        """Names its LV may have: the CR's UID, and the recorded volumeID (a CR restored from a backup gets a new
        UID but keeps its volumeID)."""
        if self.status.volume_id and self.status.volume_id != self.meta.uid:
            return (self.meta.uid, self.status.volume_id)
        return (self.meta.uid,) if self.meta.uid else ()


# Index names shared by kinds: "node" (the node an object is bound to) and the kind-specific ones below.
BY_NODE = "node"
BY_VOLUME_ID = "volumeID"

LOGICAL_VOLUME: Kind[LogicalVolume] = Kind(
    "LogicalVolume",
    LogicalVolume,
    status=True,
    indexes={BY_NODE: lambda lv: (lv.spec.node_name,), BY_VOLUME_ID: lambda lv: lv.volume_ids},
)


# --- Node, Namespace (core/v1) -----------------------------------------------------------------------------------


class TaintEffect(enum.StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


@dataclass(frozen=True)
class Taint:
    key: str
    effect: TaintEffect
    value: str = ""


@dataclass(frozen=True)
class NodeSpec:
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False


@dataclass(frozen=True)
class NodeStatus:
    allocatable: Mapping[str, int] = field(default_factory=dict)  # cpu in millicores, memory bytes, pods


@dataclass(frozen=True)
class Node(Object):
    meta: Meta
    spec: NodeSpec = NodeSpec()
    status: NodeStatus = NodeStatus()


NODE: Kind[Node] = Kind("Node", Node, status=True)


@dataclass(frozen=True)
class Namespace(Object):
    meta: Meta


NAMESPACE: Kind[Namespace] = Kind("Namespace", Namespace)


# --- Event (core/v1): what a component tells operators about an object ------------------------------------------


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about (``involvedObject``); ``uid`` lets ``kubectl describe`` find it."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""


@dataclass(frozen=True)
class ClusterEvent(Object):
    """A core/v1 Event (named so to tell it from a watch ``Event``). Cluster-scoped objects' events live in the
    "default" namespace, as client-go's recorder puts them. Times are RFC 3339."""

    meta: Meta
    involved: ObjectRef
    reason: str
    message: str
    warning: bool = False
    component: str = ""
    host: str = ""
    first_timestamp: str = ""
    last_timestamp: str = ""
    count: int = 1


CLUSTER_EVENT: Kind[ClusterEvent] = Kind("Event", ClusterEvent, namespaced=True)


# --- watch events -------------------------------------------------------------------------------------------------


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Event(Generic[T]):
    type: EventType
    object: T


def evolve(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for these frozen value types, without its per-call field introspection (about ten
    times faster, and the in-memory cluster and the simulator copy objects on every write). Only for the plain
    frozen dataclasses of this module and ``topolvm.core.workloads``: no ``__post_init__`` runs."""
    new = object.__new__(type(obj))
    state = new.__dict__
    state.update(obj.__dict__)
    state.update(changes)
    return new
