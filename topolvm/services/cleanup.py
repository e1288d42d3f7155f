"""Cleaning up after what disappears: Nodes that are deleted, and LVs whose LogicalVolume is gone.

``NodeCleanup`` (controller side): a Node carrying the ``topolvm.io/node`` finalizer that is deleted takes its
LogicalVolumes with it — their CRs are deleted and, since the node agent and its disks are gone, their
finalizers dropped — before the Node's finalizer is removed (upstream #868/#715).

``find_orphans``/``OrphanCollector`` (node side, opt-in): LVs tagged by TopoLVM with an owner whose LogicalVolume
no longer exists (upstream #1104/#1213: a PVC deleted before its PV was bound). A dry run reports; only an
explicit run removes. LVs are listed *before* LogicalVolumes are read: an LV is only ever created for a CR that
already exists, so this order cannot mistake a volume being created for an orphan.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from topolvm import constants, errors, ports
from topolvm.core import model, resources
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
            for lv in self.cluster.list_of(resources.LOGICAL_VOLUME, match={resources.BY_NODE: node_name}):
                self._release(lv)
            meta = node.meta.without_finalizer(constants.NODE_FINALIZER)
            self.cluster.update(replace(node, meta=meta))
        except (errors.Conflict, errors.Unavailable) as exc:
            log.info("node %s cleanup: will retry: %s", node_name, exc)
            return node_service.Outcome.RETRY
        log.info("node %s deleted: its LogicalVolumes released", node_name)
        return node_service.Outcome.DONE

    def _release(self, lv: resources.LogicalVolume) -> None:
        if not lv.meta.deleting:
            self.cluster.delete(resources.LOGICAL_VOLUME, lv.name)
            current = self.cluster.get(resources.LOGICAL_VOLUME, lv.name)
            if current is None:
                return
            lv = current
        if constants.LOGICAL_VOLUME_FINALIZER in lv.meta.finalizers:
            meta = lv.meta.without_finalizer(constants.LOGICAL_VOLUME_FINALIZER)
            self.cluster.update(replace(lv, meta=meta))


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
