"""Which ``scheduler.mode`` a live cluster runs, from what its API shows (``topolvm-sim snapshot``).

Neither kube-scheduler's configuration (a file) nor, through the Cluster port, the CSIDriver is readable, so the
evidence is what the two mechanisms leave in the API:
- Storage Capacity Tracking: external-provisioner's ``--enable-capacity`` publishes a CSIStorageCapacity per
  TopoLVM StorageClass and node. Some exist: on. None, while TopoLVM's StorageClasses exist: off.
- the extender: it only filters pods that request ``topolvm.io/capacity``, which topolvm-webhook adds to pods
  with TopoLVM claims not bound yet when the pod is created. Some pod carries it: on. Pods with TopoLVM claims
  still unbound, none carrying it: off (the extender, if configured, ignores them all). A pod whose claims are
  all bound tells nothing: the webhook leaves it unmarked (a StatefulSet's pods after a rolling restart).
What cannot be told is taken as deploy/ ships it (both on); neither on is not a set-up the simulator models
(kube-scheduler would place pods without regard to storage), so it is written as ``both`` with a warning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from topolvm import constants, errors, ports
from topolvm.core import workloads


@dataclasses.dataclass(frozen=True)
class Evidence:
    capacity_objects: int | None  # CSIStorageCapacity objects of TopoLVM's classes (None: could not be listed)
    storage_classes: int  # TopoLVM's StorageClasses
    marked_pods: int  # pods requesting topolvm.io/capacity (the webhook's mark)
    topolvm_pods: int  # pods with claims of TopoLVM's StorageClasses not bound yet (the webhook marks those)


def detect(e: Evidence) -> tuple[str, str, str | None]:
    """(mode, why, a warning or None)."""
    tracking: bool | None = None
    if e.capacity_objects:
        tracking, tracking_why = True, f"{e.capacity_objects} CSIStorageCapacity object(s) of TopoLVM's classes"
    elif e.capacity_objects == 0 and e.storage_classes:
        tracking, tracking_why = False, "no CSIStorageCapacity of TopoLVM's classes"
    else:
        tracking_why = "capacity tracking not detectable"
    extender: bool | None = None
    mark = "requests topolvm.io/capacity"
    if e.marked_pods:
        extender, extender_why = True, f"{e.marked_pods} pod(s) {mark} (the webhook's mark)"
    elif e.topolvm_pods:
        extender, extender_why = False, f"none of {e.topolvm_pods} pod(s) with unbound TopoLVM claims {mark}"
    else:
        extender_why = "the extender not detectable (no pod with unbound TopoLVM claims)"
    why = f"{tracking_why}; {extender_why}"
    if tracking is False and extender is False:
        return "both", why, f"scheduler.mode: {why}: neither mechanism seems on; written as both, as deploy/ ships"
    if tracking is None or extender is None:
        why += " (taken as deploy/ ships it)"
    tracking = tracking is not False
    extender = extender is not False
    mode = "both" if tracking and extender else "capacity-tracking" if tracking else "extender"
    return mode, why, None


def evidence(
    cluster: ports.Cluster,
    nodes: Collection[str],
    classes: Sequence[workloads.StorageClass],
    claims: Sequence[workloads.PersistentVolumeClaim],
    pods: Sequence[workloads.Pod],
) -> Evidence:
    """What the cluster shows about ``nodes`` (CSIStorageCapacity objects of TopoLVM's classes for them) and
    about ``pods`` (those read: pending or not, in the namespaces asked for)."""
    ours = {sc.name for sc in classes}
    try:
        objects: int | None = sum(
            c.storage_class_name in ours and c.node_labels.get(constants.TOPOLOGY_NODE_KEY) in nodes
            for c in cluster.list_of(workloads.CSI_STORAGE_CAPACITY)
        )
    except (errors.NotFound, errors.FailedPrecondition):  # not served, or not ours to list
        objects = None
    unbound = {
        (c.meta.namespace, c.meta.name) for c in claims if c.spec.storage_class_name in ours and not c.spec.volume_name
    }
    marked = topolvm = 0
    for pod in pods:
        marked += any(constants.CAPACITY_RESOURCE in {*c.requests, *c.limits} for c in pod.spec.containers)
        topolvm += any((pod.meta.namespace, name) in unbound for name in pod.claim_names())
    return Evidence(objects, len(classes), marked, topolvm)
