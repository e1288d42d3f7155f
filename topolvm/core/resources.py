"""Kubernetes objects TopoLVM reads and writes, as frozen values: LogicalVolume CRs and Nodes.

Shapes follow upstream's ``logicalvolumes.topolvm.io/v1`` (docs/compat.md). Adapters convert to and from the
wire (the kubernetes client, the in-memory cluster, the simulator); services decide on these values only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from topolvm import errors


@dataclass(frozen=True)
class Meta:
    name: str
    uid: str = ""
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    deletion_timestamp: str | None = None
    creation_timestamp: str | None = None  # RFC 3339, set by the API server

    @property
    def deleting(self) -> bool:
        return self.deletion_timestamp is not None

    def with_finalizer(self, finalizer: str) -> Meta:
        if finalizer in self.finalizers:
            return self
        return replace(self, finalizers=(*self.finalizers, finalizer))

    def without_finalizer(self, finalizer: str) -> Meta:
        return replace(self, finalizers=tuple(f for f in self.finalizers if f != finalizer))


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
class LogicalVolume:
    meta: Meta
    spec: LogicalVolumeSpec
    status: LogicalVolumeStatus = LogicalVolumeStatus()

    @property
    def name(self) -> str:
        return self.meta.name


@dataclass(frozen=True)
class Node:
    meta: Meta

    @property
    def name(self) -> str:
        return self.meta.name


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Event:
    type: EventType
    object: LogicalVolume | Node
