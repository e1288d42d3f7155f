"""Cleaning up after what disappears: Nodes that are deleted, and LVs whose LogicalVolume is gone.

``NodeCleanup`` (controller side): a Node carrying the ``topolvm.io/node`` finalizer that is deleted takes its
volumes with it, by upstream's rule (internal/controller/node_controller.go; upstream #868/#715), in its order:
1. its claims are deleted — every PVC whose ``volume.kubernetes.io/selected-node`` annotation names the Node and
   whose StorageClass is TopoLVM's (provisioner ``topolvm.io``), so a StatefulSet can make new ones and its pods
   be scheduled elsewhere; other claims are left alone (another driver's, or a claim without a class);
2. its LogicalVolumes are released: each is deleted and, since the node agent and its disks are gone, its
   finalizer dropped;
3. the Node's finalizer is removed.
A LogicalVolume is marked deleted *before* its finalizer is dropped (upstream does the reverse, with a
``topolvm.io/pendingdeletion`` annotation so that its node agent does not add the finalizer back): the API server
refuses new finalizers on an object being deleted, so no annotation is needed, and an agent that is still alive
removes the LV itself.

Two controller replicas may run this at once (topolvm-controller has no leader election): every step is
idempotent and tolerates the other replica's — a claim or volume already deleted (NotFound) or already being
deleted is done, a write that lost a race (Conflict) is retried from a fresh read. Claims and StorageClasses are
read from the API server at the time (the controller does not inform them: a Node deletion is rare, and an
informer would hold every claim of the cluster in memory and keep a watch open for it).

``StrandedVolumeSweeper`` (controller side): LogicalVolumes made for a claim that is gone and that no PV names
(upstream #1104: a PVC deleted while its CreateVolume was still in flight — timed out, retried — so no PV was ever
created and nobody calls DeleteVolume). A LogicalVolume is swept only when all of these hold: it still carries
``topolvm.io/create-unanswered`` (CreateVolume never answered OK with it, so no provisioner ever got it: a volume
whose PV is deleted later with its data retained is never swept, nor one made before the mark existed); it is a
volume, not a snapshot; its name ends with a claim's UID, as external-provisioner names volumes (``pvc-<uid>``;
with ``--volume-name-uuid-length`` the UID is cut and nothing is swept); it is older than the grace period (this
process's clock against the API server's creationTimestamp: clock skew shortens or lengthens the grace by as
much); no PersistentVolume of ours has it as its volume handle; and no PVC with that UID exists.
LogicalVolumes are read first, then claims, then PVs: a claim always exists before its volume, and a PV created
after the read for a claim that is gone is deleted by Kubernetes (reclaim policy Delete) with a DeleteVolume that
finds nothing to do. Deleting the CR is all it does: the node agent's finalizer removes the LV itself.

``find_orphans``/``OrphanCollector`` (node side, opt-in): LVs tagged by TopoLVM with an owner whose LogicalVolume
no longer exists (upstream #1104/#1213: a PVC deleted before its PV was bound). A dry run reports; only an
explicit run removes. LVs are listed *before* LogicalVolumes are read: an LV is only ever created for a CR that
already exists, so this order cannot mistake a volume being created for an orphan.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from topolvm import constants, errors, ports
from topolvm.core import model, resources, workloads
from topolvm.services import controller as controller_service
from topolvm.services import node as node_service

log = logging.getLogger(__name__)


def register_node(cluster: ports.Cluster, node_name: str) -> None:
    """Node agent start-up: put the ``topolvm.io/node`` finalizer on our Node so its deletion is cleaned up."""
    for _ in range(5):
        node = cluster.get(resources.NODE, node_name)
        if node is None:
            raise errors.NotFound(f"Node {node_name!r} not found")
        if constants.NODE_FINALIZER in node.meta.finalizers:
            return
        try:
            cluster.update(replace(node, meta=node.meta.with_finalizer(constants.NODE_FINALIZER)))
            return
        except errors.Conflict:
            continue
    raise errors.Unavailable(f"Node {node_name!r}: finalizer not added after repeated conflicts")


class NodeCleanup:
    def __init__(self, *, cluster: ports.Cluster) -> None:
        self.cluster = cluster

    def reconcile(self, node_name: str) -> node_service.Outcome:
        node = self.cluster.get(resources.NODE, node_name)
        if node is None or not node.meta.deleting or constants.NODE_FINALIZER not in node.meta.finalizers:
            return node_service.Outcome.DONE
        try:
            claims = self._delete_claims(node_name)
            volumes = self.cluster.list_of(resources.LOGICAL_VOLUME, match={resources.BY_NODE: node_name})
            for lv in volumes:
                self._release(lv)
            with contextlib.suppress(errors.NotFound):  # the other replica finished first: the Node is gone
                self.cluster.update(replace(node, meta=node.meta.without_finalizer(constants.NODE_FINALIZER)))
        except (errors.Conflict, errors.Unavailable) as exc:
            log.info("node=%s cleanup: will retry: %s", node_name, exc)
            return node_service.Outcome.RETRY
        log.info("node=%s deleted: %d claims deleted, %d LogicalVolumes released", node_name, claims, len(volumes))
        return node_service.Outcome.DONE

    def _delete_claims(self, node_name: str) -> int:
        """Delete the node's TopoLVM claims; how many this call deleted."""
        ours = {
            sc.meta.name
            for sc in self.cluster.list_of(workloads.STORAGE_CLASS)
            if sc.provisioner == constants.PLUGIN_NAME
        }
        deleted = 0
        for claim in self.cluster.list_of(workloads.PVC, match={resources.BY_NODE: node_name}):
            if claim.spec.storage_class_name not in ours or claim.meta.deleting:
                continue
            try:
                self.cluster.delete(workloads.PVC, claim.meta.name, namespace=claim.meta.namespace)
            except errors.NotFound:
                continue  # deleted meanwhile (by the other replica, or its user)
            deleted += 1
            log.info(
                "node=%s deleted: deleted pvc=%s/%s (storageClass=%s)",
                node_name,
                claim.meta.namespace,
                claim.meta.name,
                claim.spec.storage_class_name,
            )
        return deleted

    def _release(self, lv: resources.LogicalVolume) -> None:
        try:
            if not lv.meta.deleting:
                self.cluster.delete(resources.LOGICAL_VOLUME, lv.name)
                current = self.cluster.get(resources.LOGICAL_VOLUME, lv.name)
                if current is None:
                    return
                lv = current
            if constants.LOGICAL_VOLUME_FINALIZER in lv.meta.finalizers:
                self.cluster.update(replace(lv, meta=lv.meta.without_finalizer(constants.LOGICAL_VOLUME_FINALIZER)))
        except errors.NotFound:
            return  # gone already: the other replica released it


_CLAIM_UID = re.compile(r"-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def claim_uid_of(lv: resources.LogicalVolume) -> str | None:
    """The UID of the claim a volume was created for (external-provisioner names volumes ``<prefix>-<uid>``)."""
    found = _CLAIM_UID.search(lv.spec.name or lv.name)
    return found.group(1) if found else None


def _age(lv: resources.LogicalVolume, now: float) -> float:
    if not lv.meta.creation_timestamp:
        return 0.0
    created = datetime.datetime.fromisoformat(lv.meta.creation_timestamp.replace("Z", "+00:00"))
    return now - created.timestamp()


class StrandedVolumeSweeper:
    """Deletes LogicalVolumes whose claim is gone and that no PV names (see the module doc for the rule)."""

    def __init__(self, *, cluster: ports.Cluster, clock: ports.Clock, grace: float) -> None:
        self.cluster = cluster
        self.clock = clock
        self.grace = grace

    def stranded(self) -> list[resources.LogicalVolume]:
        now = self.clock.now()
        candidates = [
            lv
            for lv in self.cluster.list_of(resources.LOGICAL_VOLUME)
            if constants.UNANSWERED_ANNOTATION in lv.meta.annotations
            and not lv.meta.deleting
            and not controller_service.is_snapshot(lv)
            and claim_uid_of(lv) is not None
            and _age(lv, now) >= self.grace
        ]
        if not candidates:
            return []  # the common case (every volume answered, or young) reads no claims and no PVs
        claims = {claim.meta.uid for claim in self.cluster.list_of(workloads.PVC)}
        handles = {
            pv.spec.volume_handle
            for pv in self.cluster.list_of(workloads.PV)
            if pv.spec.driver == constants.PLUGIN_NAME
        }
        return [lv for lv in candidates if claim_uid_of(lv) not in claims and not (handles & {lv.name, *lv.volume_ids})]

    def sweep(self) -> list[resources.LogicalVolume]:
        """Delete the stranded LogicalVolumes; the ones this call deleted."""
        swept = []
        for lv in self.stranded():
            try:
                self.cluster.delete(resources.LOGICAL_VOLUME, lv.name)
            except errors.NotFound:
                continue  # the other replica swept it, or its DeleteVolume came after all
            swept.append(lv)
            log.warning(
                "deleted stranded LogicalVolume %s (node=%s, %d bytes, created %s): its claim %s is gone and no "
                "PersistentVolume names it",
                lv.name,
                lv.spec.node_name,
                lv.spec.size,
                lv.meta.creation_timestamp,
                claim_uid_of(lv),
            )
        return swept


@dataclass(frozen=True)
class Orphan:
    device_class: str
    lv_name: str
    owner: str  # the LogicalVolume the LV was made for
    size: int


def owner_of(lv: model.LogicalVolume) -> str | None:
    for tag in lv.tags:
        if tag.startswith(constants.OWNER_TAG_PREFIX):
            return tag[len(constants.OWNER_TAG_PREFIX) :]
    return None


def find_orphans(
    lvs_by_class: Mapping[str, Sequence[model.LogicalVolume]], logical_volumes: Sequence[resources.LogicalVolume]
) -> list[Orphan]:
    """LVs with an owner tag whose LogicalVolume (matched by UID, the LV's name) does not exist."""
    # Live LV names: every CR's UID and its recorded volumeID (a restored CR keeps the volumeID, not the UID).
    live_uids = {lv.meta.uid for lv in logical_volumes} | {lv.status.volume_id for lv in logical_volumes}
    orphans = []
    for device_class, lvs in lvs_by_class.items():
        for lv in lvs:
            owner = owner_of(lv)
            if owner is not None and lv.name not in live_uids:
                orphans.append(Orphan(device_class, lv.name, owner, lv.size))
    return orphans


class OrphanCollector:
    def __init__(self, *, cluster: ports.Cluster, lvmd: ports.Lvmd) -> None:
        self.cluster = cluster
        self.lvmd = lvmd

    def scan(self) -> list[Orphan]:
        lvs = {
            s.device_class: self.lvmd.list_lvs(device_class=s.device_class) for s in self.lvmd.capacity().device_classes
        }
        return find_orphans(
            lvs, self.cluster.list_of(resources.LOGICAL_VOLUME)
        )  # LVs first, then CRs: see the module doc

    def collect(self, *, dry_run: bool = True) -> list[Orphan]:
        orphans = self.scan()
        for orphan in orphans:
            if dry_run:
                log.info(
                    "orphan (dry run): LV %s of %s, %d bytes, class %s",
                    orphan.lv_name,
                    orphan.owner,
                    orphan.size,
                    orphan.device_class,
                )
                continue
            self.lvmd.remove_lv(name=orphan.lv_name, device_class=orphan.device_class)
            log.warning("removed orphan LV %s of deleted LogicalVolume %s", orphan.lv_name, orphan.owner)
        return orphans
