"""kube-scheduler's queueing hints: which cluster events move an unschedulable pod back towards the active queue.

A pod that failed a cycle waits among the unschedulable pods with the set of plugins that rejected it. A cluster
event moves it (to the backoff queue, or straight to the active queue when its backoff is over) only when one of
those plugins registered the event and its hint says the event may help
(pkg/scheduler/backend/queue/scheduling_queue.go, ``isPodWorthRequeuing``; each plugin's ``EventsToRegister``,
v1.37). What is modelled, per plugin:

- NodeResourcesFit: a Node added or its allocatable changed; an assigned pod deleted (it freed requests).
- NodeUnschedulable: a Node added, or one turned schedulable.
- TaintToleration: a Node added or its taints changed. NodeAffinity: a Node added or its labels changed.
- NodeName: a Node added.
- VolumeBinding: a Node added or its labels changed; a PersistentVolume added or updated; one of the pod's own
  claims added or updated; a CSIStorageCapacity added, or updated to a larger volume limit (maximumVolumeSize when
  set, else capacity); a StorageClass added.
- An extender has no hints: when it rejected nodes, the queue records ``Extender`` among the plugins, registered
  for every event of every kind — Node annotations included, which is how TopoLVM's capacity reaches it
  (framework.ExtenderName, kubernetes#122019). An assigned pod *added* moves nobody here: the queue pre-filters
  those events to pods with inter-pod affinity terms, which this model has not.

A pod no plugin rejected (no nodes at all, a PreBind or bind failure) is not parked: it goes straight to backoff.
Hints that look at the pod beyond its claims (does the new Node fit its requests, tolerate its taints, match its
affinity) answer Queue here: a retry that was not needed only fails again, as upstream's would without the hint.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from simulator.kube_scheduler import api
from topolvm.core import resources, workloads


class Event(enum.Enum):
    NODE_ADD = "Node/Add"
    NODE_DELETE = "Node/Delete"
    NODE_ALLOCATABLE = "Node/UpdateNodeAllocatable"
    NODE_LABEL = "Node/UpdateNodeLabel"
    NODE_TAINT = "Node/UpdateNodeTaint"
    NODE_SCHEDULABLE = "Node/UpdateNodeUnschedulable(false)"
    NODE_UNSCHEDULABLE = "Node/UpdateNodeUnschedulable(true)"
    NODE_ANNOTATION = "Node/UpdateNodeAnnotation"
    ASSIGNED_POD_DELETE = "AssignedPod/Delete"
    PVC_ADD_UPDATE = "PersistentVolumeClaim/Add|Update"
    PVC_DELETE = "PersistentVolumeClaim/Delete"
    PV_ADD_UPDATE = "PersistentVolume/Add|Update"
    PV_DELETE = "PersistentVolume/Delete"
    CAPACITY_ADD = "CSIStorageCapacity/Add"
    CAPACITY_LIMIT_UP = "CSIStorageCapacity/Update(larger volume limit)"
    CAPACITY_OTHER = "CSIStorageCapacity/Update|Delete"
    STORAGE_CLASS_ADD = "StorageClass/Add"


E = Event
QUEUES_ON: dict[str, frozenset[Event]] = {
    api.NODE_RESOURCES_FIT: frozenset({E.NODE_ADD, E.NODE_ALLOCATABLE, E.ASSIGNED_POD_DELETE}),
    api.NODE_UNSCHEDULABLE: frozenset({E.NODE_ADD, E.NODE_SCHEDULABLE}),
    api.TAINT_TOLERATION: frozenset({E.NODE_ADD, E.NODE_TAINT}),
    api.NODE_AFFINITY: frozenset({E.NODE_ADD, E.NODE_LABEL}),
    api.NODE_NAME: frozenset({E.NODE_ADD}),
    # PVC_ADD_UPDATE only for the pod's own claims: see ``worth_requeuing``
    api.VOLUME_BINDING: frozenset(
        {E.NODE_ADD, E.NODE_LABEL, E.PV_ADD_UPDATE, E.CAPACITY_ADD, E.CAPACITY_LIMIT_UP, E.STORAGE_CLASS_ADD}
    ),
    api.EXTENDER: frozenset(Event),
}

Claim = tuple[str, str]  # (namespace, name)


def requeued_by(
    rejectors: frozenset[str], events: Iterable[tuple[Event, Claim | None]], claims: frozenset[Claim]
) -> Event | None:
    """The first of ``events`` that may make a pod rejected by ``rejectors`` schedulable (``claims``: its PVCs);
    None if none may."""
    for event, claim in events:
        for plugin in rejectors:
            if event in QUEUES_ON.get(plugin, ()):
                return event
            if event is E.PVC_ADD_UPDATE and plugin == api.VOLUME_BINDING and claim in claims:
                return event
    return None


def node_changes(old: resources.Node, new: resources.Node) -> list[Event]:
    """The Node update events of one change (framework.NodeSchedulingPropertiesChange), in a fixed order."""
    out: list[Event] = []
    if old.spec.unschedulable != new.spec.unschedulable:
        out.append(E.NODE_UNSCHEDULABLE if new.spec.unschedulable else E.NODE_SCHEDULABLE)
    if old.status.allocatable != new.status.allocatable:
        out.append(E.NODE_ALLOCATABLE)
    if old.meta.labels != new.meta.labels:
        out.append(E.NODE_LABEL)
    if old.spec.taints != new.spec.taints:
        out.append(E.NODE_TAINT)
    if old.meta.annotations != new.meta.annotations:
        out.append(E.NODE_ANNOTATION)
    return out


def volume_limit(capacity: workloads.CSIStorageCapacity) -> int | None:
    """What VolumeBinding compares a claim with: maximumVolumeSize when set, else capacity."""
    if capacity.maximum_volume_size is not None:
        return capacity.maximum_volume_size
    return capacity.capacity_bytes


def capacity_change(old: workloads.CSIStorageCapacity | None, new: workloads.CSIStorageCapacity) -> Event:
    """isSchedulableAfterCSIStorageCapacityChange: an addition, or a volume limit that grew, may help."""
    if old is None:
        return E.CAPACITY_ADD
    before, after = volume_limit(old), volume_limit(new)
    if after is not None and (before is None or after > before):
        return E.CAPACITY_LIMIT_UP
    return E.CAPACITY_OTHER
