"""Controller-side volume logic (CSI CreateVolume, DeleteVolume, ControllerExpandVolume, GetCapacity).

Sans-IO: ``create_volume`` validates, sizes, places and records a LogicalVolume CR, then answers ``Pending``;
``creation_state`` reads the CR's status and answers ``Ready``, ``Pending`` or raises the error the node agent
recorded. The runtime driver — a watch on LogicalVolumes in the CSI server, an event loop in tests and the
simulator — decides when to ask again, so nothing here blocks, polls or sleeps (upstream polls 1 s→10 s).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from topolvm import constants, errors, ports
from topolvm.core import names, placement, resources, sizing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VolumeRequest:
    """A CreateVolume request, stripped of the wire format."""

    name: str
    required_bytes: int = 0
    limit_bytes: int = 0
    device_class: str = ""
    lvcreate_option_class: str = ""
    fstype: str = "ext4"  # "block" for raw block volumes
    preferred_nodes: Sequence[str] = field(default_factory=tuple)
    requisite_nodes: Sequence[str] = field(default_factory=tuple)
    source_volume_id: str = ""  # a snapshot or volume to clone
    read_only_source: bool = False


@dataclass(frozen=True)
class Ready:
    volume_id: str
    size: int
    node_name: str
    cr_name: str
    created_at: str | None = None  # RFC 3339 (CreateSnapshot reports it)


@dataclass(frozen=True)
class Pending:
    cr_name: str
    request: str = ""  # an expansion's request stamp: only a failure recorded for it is its answer
    node_name: str = ""  # whose node agent must answer (the runtime caps how many calls wait on one node)


def _check_cr_name(name: str) -> None:
    # CR names are DNS subdomains; CSI names from external-provisioner look like "pvc-<uuid>".
    if not name or len(name) > 253 or not all(c.isalnum() or c in "-." for c in name) or not name[0].isalnum():
        raise errors.InvalidArgument(f"volume name {name!r} is not a valid Kubernetes object name")
    if name.lower() != name:
        raise errors.InvalidArgument(f"volume name {name!r} must be lower case")


def is_snapshot(lv: resources.LogicalVolume) -> bool:
    return bool(lv.spec.source) and lv.spec.access_type == "ro"


class ControllerService:
    def __init__(self, *, cluster: ports.Cluster, clock: ports.Clock) -> None:
        self.cluster = cluster
        self.clock = clock

    def create_volume(self, req: VolumeRequest) -> Ready | Pending:
        _check_cr_name(req.name)
        if req.device_class:
            names.check_device_class_name(req.device_class)
        size = sizing.volume_size(req.required_bytes, req.limit_bytes, req.fstype)
        existing = self.cluster.get(resources.LOGICAL_VOLUME, req.name)
        if existing is not None and existing.meta.deleting:
            raise errors.Unavailable(f"an earlier attempt at volume {req.name!r} is still being cleaned up; retry")
        if existing is not None:
            wanted_source = self._source(req).status.volume_id if req.source_volume_id else ""
            if (
                existing.spec.size != size
                or (req.device_class and existing.spec.device_class != req.device_class)
                or existing.spec.source != wanted_source
            ):
                raise errors.AlreadyExists(
                    f"volume {req.name!r} exists with {existing.spec.size} bytes in class "
                    f"{existing.spec.device_class!r}; requested {size} in {req.device_class!r}"
                )
            return self.creation_state(req.name)
        source = self._source(req) if req.source_volume_id else None
        if source is not None:
            node_name = placement.check_source_node(  # snapshots and clones live beside their source
                source.spec.node_name, preferred=req.preferred_nodes, requisite=req.requisite_nodes
            )
            if size < source.spec.size:
                raise errors.OutOfRange(f"volume must be at least as large as its source ({source.spec.size} bytes)")
        elif req.preferred_nodes:
            # The scheduler's node (WaitForFirstConsumer): one Node read, however large the cluster. Only when it
            # offers nothing of the class are all Nodes read, to tell an unknown class apart from a full node.
            name = req.preferred_nodes[0]
            node = self.cluster.get(resources.NODE, name)
            if node is None or placement.node_capacity(node, req.device_class) is None:
                self._check_offered(req.device_class, self.cluster.list_of(resources.NODE))
            node_name = placement.choose_preferred(node, name, req.device_class, size, req.requisite_nodes)
        else:
            nodes = self.cluster.list_of(resources.NODE)
            self._check_offered(req.device_class, nodes)
            node_name = placement.choose_node(nodes, req.device_class, size, requisite=req.requisite_nodes)
        spec = resources.LogicalVolumeSpec(
            name=req.name,
            node_name=node_name,
            size=size,
            device_class=source.spec.device_class if source is not None else req.device_class,
            lvcreate_option_class=req.lvcreate_option_class,
            source=source.status.volume_id if source is not None else "",
            access_type=("ro" if req.read_only_source else "rw") if source is not None else "",
        )
        meta = resources.Meta(
            name=req.name,
            labels={constants.CREATED_BY_LABEL: constants.CREATED_BY_CONTROLLER},
            annotations={constants.UNANSWERED_ANNOTATION: "true"},
        )
        try:
            self.cluster.create(resources.LogicalVolume(meta, spec))
        except errors.AlreadyExists:
            return self.creation_state(req.name)  # a concurrent identical request won the race
        log.info("volume %s: %d bytes on node %s, class %r", req.name, size, node_name, req.device_class)
        return Pending(req.name, node_name=node_name)

    def creation_state(self, cr_name: str) -> Ready | Pending:
        lv = self.cluster.get(resources.LOGICAL_VOLUME, cr_name)
        if lv is None:
            raise errors.NotFound(f"LogicalVolume {cr_name!r} disappeared while being created")
        if lv.status.code != errors.OK and not lv.status.volume_id:
            # The node could not create it. Remove the CR so a retry of CreateVolume starts afresh (and may
            # land elsewhere); the node agent drops its finalizer, removing any half-made LV.
            if not lv.meta.deleting:
                self.cluster.delete(resources.LOGICAL_VOLUME, cr_name)
            raise errors.from_code(lv.status.code, lv.status.message or f"volume {cr_name!r} failed")
        if lv.status.volume_id:
            size = lv.status.current_size or lv.spec.size
            return Ready(lv.status.volume_id, size, lv.spec.node_name, cr_name, lv.meta.creation_timestamp)
        return Pending(cr_name, node_name=lv.spec.node_name)

    def answered(self, cr_name: str) -> None:
        """CreateVolume is about to answer OK with this volume: drop its ``create-unanswered`` mark, so the
        stranded volume sweep never takes a volume a provisioner was given (one whose PV is later deleted with
        its data retained, say). Idempotent; a volume gone meanwhile is not an error."""
        for _ in range(5):
            lv = self.cluster.get(resources.LOGICAL_VOLUME, cr_name)
            if lv is None or constants.UNANSWERED_ANNOTATION not in lv.meta.annotations:
                return
            try:
                self.cluster.update(replace(lv, meta=lv.meta.annotated({constants.UNANSWERED_ANNOTATION: None})))
                return
            except errors.NotFound:
                return
            except errors.Conflict:
                continue  # the node agent wrote it meanwhile: read it again
        raise errors.Unavailable(f"volume {cr_name!r}: not marked answered after repeated conflicts; retry")

    def find_by_volume_id(self, volume_id: str) -> resources.LogicalVolume | None:
        # The volume ID is the LV's name: the CR's UID, recorded in status.volumeID once it exists (a CR restored
        # from a backup gets a new UID but keeps its volumeID); the index holds both.
        found = self.cluster.list_of(resources.LOGICAL_VOLUME, match={resources.BY_VOLUME_ID: volume_id})
        return found[0] if found else None

    def delete_volume(self, volume_id: str, *, snapshot: bool = False) -> resources.LogicalVolume | None:
        """Idempotent: an unknown ID is already deleted. A snapshot's ID is refused as a volume's and vice
        versa, so a mixed-up handle (a pre-provisioned VolumeSnapshotContent, say) destroys nothing.

        Returns the LogicalVolume whose deletion is under way (None: nothing left), so a caller knows whose node
        agent must finish it."""
        if not volume_id:
            raise errors.InvalidArgument("volume ID is empty")
        lv = self.find_by_volume_id(volume_id)
        if lv is None or lv.meta.deleting:
            return lv
        if is_snapshot(lv) != snapshot:
            kind = "a volume" if snapshot else "a snapshot"
            raise errors.InvalidArgument(f"{volume_id!r} is {kind}, not what this call deletes")
        try:
            self.cluster.delete(resources.LOGICAL_VOLUME, lv.name)
        except errors.NotFound:
            return None
        log.info("volume %s (%s): deletion requested", lv.name, volume_id)
        return lv

    def deletion_finished(self, lv: resources.LogicalVolume) -> bool:
        """Whether the LogicalVolume ``delete_volume`` returned is gone (by name and UID: one read, not a list;
        a CR of the same name with another UID is a new volume reusing the name)."""
        current = self.cluster.get(resources.LOGICAL_VOLUME, lv.name)
        return current is None or current.meta.uid != lv.meta.uid

    def expand_volume(
        self, volume_id: str, required_bytes: int, limit_bytes: int, fstype: str = "ext4"
    ) -> Ready | Pending:
        lv = self.find_by_volume_id(volume_id)
        if lv is None:
            raise errors.NotFound(f"volume {volume_id!r} not found")
        size = sizing.volume_size(required_bytes, limit_bytes, fstype)
        current = lv.status.current_size if lv.status.current_size is not None else lv.spec.size
        if size < current:
            raise errors.OutOfRange(f"volume {volume_id!r} is {current} bytes; shrinking is not supported")
        if lv.status.current_size is not None and lv.status.current_size >= size:
            return Ready(lv.status.volume_id, lv.status.current_size, lv.spec.node_name, lv.name)
        # Stamp every attempt, even at an unchanged size: the write wakes the node agent to try again (space may
        # have been freed since a failure), and only a failure recorded for this stamp answers this request.
        stamp = self._timestamp()
        if stamp == lv.meta.annotations.get(constants.RESIZE_REQUESTED_AT_ANNOTATION):
            stamp += "+1"  # a second attempt within one clock tick (a manual clock) still gets its own stamp
        meta = replace(lv.meta, annotations={**lv.meta.annotations, constants.RESIZE_REQUESTED_AT_ANNOTATION: stamp})
        self.cluster.update(replace(lv, meta=meta, spec=replace(lv.spec, size=size)))
        log.info("volume %s: expansion to %d bytes requested", lv.name, size)
        return self.expansion_state(lv.name, size, stamp)

    def expansion_state(self, cr_name: str, size: int, stamp: str = "") -> Ready | Pending:
        lv = self.cluster.get(resources.LOGICAL_VOLUME, cr_name)
        if lv is None:
            raise errors.NotFound(f"LogicalVolume {cr_name!r} disappeared while being expanded")
        if lv.status.current_size is not None and lv.status.current_size >= size:
            return Ready(lv.status.volume_id, lv.status.current_size, lv.spec.node_name, cr_name)
        if lv.status.code != errors.OK and (not stamp or stamp in lv.status.message):
            raise errors.from_code(lv.status.code, lv.status.message)
        return Pending(cr_name, stamp, lv.spec.node_name)

    def _timestamp(self) -> str:
        return datetime.datetime.fromtimestamp(self.clock.now(), datetime.UTC).isoformat()

    @staticmethod
    def _check_offered(device_class: str, nodes: Sequence[resources.Node]) -> None:
        if not any(placement.node_capacity(n, device_class) is not None for n in nodes):
            raise errors.InvalidArgument(f"no node offers device class {device_class or '(default)'!r}")

    def get_capacity(self, device_class: str, node_name: str | None = None) -> int:
        if node_name is not None:  # external-provisioner asks per node: one read
            node = self.cluster.get(resources.NODE, node_name)
            return placement.total_capacity([node] if node is not None else [], device_class, node_name)
        return placement.total_capacity(self.cluster.list_of(resources.NODE), device_class)

    def _source(self, req: VolumeRequest) -> resources.LogicalVolume:
        source = self.find_by_volume_id(req.source_volume_id)
        if source is None or source.meta.deleting:
            raise errors.NotFound(f"source volume {req.source_volume_id!r} not found")
        if not source.status.volume_id:
            raise errors.Unavailable(f"source volume {req.source_volume_id!r} is not ready yet")
        if req.device_class and source.spec.device_class and source.spec.device_class != req.device_class:
            raise errors.InvalidArgument("a snapshot or clone must use its source's device class")
        return source

    def create_snapshot(self, *, name: str, source_volume_id: str) -> Ready | Pending:
        """A read-only snapshot of a volume, recorded as a LogicalVolume beside its source (as upstream): a thin
        snapshot on a thin class, a full copy on a thick one (lvmd's ``thick_copy``; upstream has none).

        Its ID is the LogicalVolume's UID, like a volume's; restoring it is CreateVolume with it as the source.
        A refusal by lvmd on the node (no room for a copy, say) comes back as the answer."""
        _check_cr_name(name)
        if not source_volume_id:
            raise errors.InvalidArgument("source volume ID is required")
        source = self.find_by_volume_id(source_volume_id)
        if source is None or source.meta.deleting:
            raise errors.NotFound(f"source volume {source_volume_id!r} not found")
        if not source.status.volume_id:
            raise errors.Unavailable(f"source volume {source_volume_id!r} is not ready yet")
        existing = self.cluster.get(resources.LOGICAL_VOLUME, name)
        if existing is not None and existing.meta.deleting:
            raise errors.Unavailable(f"an earlier snapshot {name!r} is still being deleted; retry")
        if existing is not None:
            if existing.spec.source != source.status.volume_id or not is_snapshot(existing):
                raise errors.AlreadyExists(f"snapshot {name!r} exists for another source volume")
            return self.creation_state(name)
        spec = resources.LogicalVolumeSpec(
            name=name,
            node_name=source.spec.node_name,
            size=source.spec.size,
            device_class=source.spec.device_class,
            source=source.status.volume_id,
            access_type="ro",
        )
        meta = resources.Meta(name=name, labels={constants.CREATED_BY_LABEL: constants.CREATED_BY_CONTROLLER})
        try:
            self.cluster.create(resources.LogicalVolume(meta, spec))
        except errors.AlreadyExists:
            return self.creation_state(name)
        log.info("snapshot %s of %s requested on node %s", name, source.name, source.spec.node_name)
        return Pending(name, node_name=source.spec.node_name)
