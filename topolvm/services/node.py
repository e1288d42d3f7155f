"""Node-side services: the LogicalVolume reconciler and the capacity publisher.

``LogicalVolumeReconciler.reconcile(name)`` makes LVM (through the ``Lvmd`` port) match one LogicalVolume CR
assigned to this node and records the outcome in its status. It never waits or sleeps: it returns ``RETRY``
and the runtime driver (a watch plus a work queue in production, an event loop in tests and the simulator)
decides when to call again. LVs are named by the CR's UID and tagged with the CR name, so a restarted agent
adopts an LV it created before crashing (lvmd's CreateLV is idempotent) instead of making a second one.

``CapacityPublisher`` turns lvmd's capacity stream into the Node's ``capacity.topolvm.io/*`` annotations.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from topolvm import constants, errors, ports
from topolvm.core import model, placement, resources

log = logging.getLogger(__name__)

# Failures worth retrying by themselves; others wait for the spec to change.
_TRANSIENT = (errors.Unavailable, errors.Conflict, errors.LvmCommandError)


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"


def owner_tag(cr_name: str) -> str:
    return constants.OWNER_TAG_PREFIX + cr_name


class LogicalVolumeReconciler:
    """``publisher``: when given, the node's capacity annotations are written from lvmd's capacity after an LV
    is created or grown and before its status says so. The status is what lets the volume's claim and pod be
    bound, and the scheduler extender ends a pod's reservation on that binding: the annotation must count the
    LV by then, whatever became of the capacity stream's own delivery (a failed write, a reconnecting watch)."""

    def __init__(
        self,
        *,
        node_name: str,
        cluster: ports.Cluster,
        lvmd: ports.Lvmd,
        publisher: CapacityPublisher | None = None,
    ) -> None:
        self.node_name = node_name
        self.cluster = cluster
        self.lvmd = lvmd
        self.publisher = publisher

    def _publish_capacity(self) -> None:
        if self.publisher is not None:
            self.publisher.publish(self.lvmd.capacity())

    def reconcile(self, name: str) -> Outcome:
        lv = self.cluster.get(resources.LOGICAL_VOLUME, name)
        if lv is None or lv.spec.node_name != self.node_name:
            return Outcome.DONE
        try:
            return self._reconcile(lv)
        except _TRANSIENT as exc:
            log.info("LogicalVolume %s: will retry: %s", name, exc)
            return Outcome.RETRY

    def _reconcile(self, lv: resources.LogicalVolume) -> Outcome:
        if lv.meta.deleting:
            return self._finalize(lv)
        if constants.LOGICAL_VOLUME_FINALIZER not in lv.meta.finalizers:
            meta = lv.meta.with_finalizer(constants.LOGICAL_VOLUME_FINALIZER)
            lv = self.cluster.update(resources.evolve(lv, meta=meta))
        if not lv.status.volume_id:
            # A recorded failure is final for this CR: the controller deletes it and CreateVolume starts afresh.
            return Outcome.DONE if lv.status.code != errors.OK else self._create(lv)
        if lv.status.current_size is None or lv.spec.size > lv.status.current_size:
            return self._resize(lv)
        return Outcome.DONE

    def _finalize(self, lv: resources.LogicalVolume) -> Outcome:
        if constants.LOGICAL_VOLUME_FINALIZER not in lv.meta.finalizers:
            return Outcome.DONE
        # By UID, not status.volume_id: the LV may exist from a create whose status update never landed.
        self.lvmd.remove_lv(name=lv.meta.uid, device_class=lv.spec.device_class)
        meta = lv.meta.without_finalizer(constants.LOGICAL_VOLUME_FINALIZER)
        self.cluster.update(resources.evolve(lv, meta=meta))
        log.info("LogicalVolume %s: removed LV %s", lv.name, lv.meta.uid)
        return Outcome.DONE

    def _create(self, lv: resources.LogicalVolume) -> Outcome:
        spec = lv.spec
        try:
            if spec.source:
                access = model.AccessType.READ_ONLY if spec.access_type == "ro" else model.AccessType.READ_WRITE
                created = self.lvmd.create_lv_snapshot(
                    name=lv.meta.uid,
                    device_class=spec.device_class,
                    source_volume=spec.source,
                    size_bytes=spec.size,
                    access_type=access,
                    tags=[owner_tag(lv.name)],
                )
            else:
                created = self.lvmd.create_lv(
                    name=lv.meta.uid,
                    device_class=spec.device_class,
                    size_bytes=spec.size,
                    tags=[owner_tag(lv.name)],
                    lvcreate_option_class=spec.lvcreate_option_class,
                )
        except _TRANSIENT:
            raise
        except errors.TopoLVMError as exc:
            # A final answer for this spec (no room, bad class...): record it for the controller to return.
            status = resources.LogicalVolumeStatus(code=exc.code, message=str(exc))
            self.cluster.update_status(resources.evolve(lv, status=status))
            log.warning("LogicalVolume %s: %s", lv.name, exc)
            return Outcome.DONE
        self._publish_capacity()
        status = resources.LogicalVolumeStatus(volume_id=lv.meta.uid, current_size=created.size)
        self.cluster.update_status(resources.evolve(lv, status=status))
        log.info("LogicalVolume %s: LV %s ready (%d bytes)", lv.name, lv.meta.uid, created.size)
        return Outcome.DONE

    def _resize(self, lv: resources.LogicalVolume) -> Outcome:
        try:
            resized = self.lvmd.resize_lv(
                name=lv.status.volume_id, device_class=lv.spec.device_class, size_bytes=lv.spec.size
            )
        except _TRANSIENT:
            raise
        except errors.TopoLVMError as exc:
            # Name the request this answers (the controller's stamp), so a retry is told apart from an old failure.
            stamp = lv.meta.annotations.get(constants.RESIZE_REQUESTED_AT_ANNOTATION, "")
            status = replace(lv.status, code=exc.code, message=f"{exc} (resize requested at {stamp})")
            if status != lv.status:  # an unchanged status is not rewritten, so no event loops back here
                self.cluster.update_status(replace(lv, status=status))
            return Outcome.DONE
        self._publish_capacity()
        status = replace(lv.status, current_size=resized.size, code=errors.OK, message="")
        self.cluster.update_status(replace(lv, status=status))
        return Outcome.DONE


class CapacityPublisher:
    """Listener for ``Lvmd.watch``: writes capacity annotations on this node's Node object."""

    def __init__(self, *, node_name: str, cluster: ports.Cluster, attempts: int = 5) -> None:
        self.node_name = node_name
        self.cluster = cluster
        self.attempts = attempts
        # the Node's capacity annotations when the last resync found them differing from lvmd's figures
        self._suspect: dict[str, str] | None = None

    def __call__(self, capacity: model.NodeCapacity) -> None:
        """The capacity stream's listener: a failure is logged (the next change, or the reconciler's next
        create or resize, writes the annotations again)."""
        try:
            self.publish(capacity)
        except errors.TopoLVMError as exc:
            log.warning("node %s: capacity annotations not written: %s", self.node_name, exc)

    def resync(self, read_capacity: Callable[[], model.NodeCapacity]) -> bool:
        """The periodic check (topolvm-node's --capacity-resync-interval): the annotations are rewritten if they
        do not say what lvmd says, which every change should already have written; a rewrite is logged, since it
        means one was lost. True when it rewrote them.

        A mismatch is acted on only when two checks in a row find the Node's capacity annotations differing from
        lvmd's figures and unchanged in between (lvmd's figures may have moved): a check that falls between an lvm
        change and the write it causes sees a mismatch that the write then mends, and must not raise a false
        alarm; a write really lost leaves the annotations as they were, however busy the node. lvmd's current
        figures are written. The Node is read first and lvmd after, so lvmd's answer is at least as new as
        whatever the annotations were written from; the write is conditional on that Node read (its
        resourceVersion), so a change the capacity stream writes meanwhile wins, and this round gives way (the
        next one looks again)."""
        node = self.cluster.get(resources.NODE, self.node_name)
        if node is None:
            return False
        annotations = self._merged(node, read_capacity())
        if annotations == dict(node.meta.annotations):
            self._suspect = None
            return False
        seen = _capacity_keys(node.meta.annotations)
        if self._suspect != seen:
            self._suspect = seen  # perhaps a write in flight: look again next time
            return False
        self._suspect = None
        try:
            self.cluster.update(resources.evolve(node, meta=resources.evolve(node.meta, annotations=annotations)))
        except errors.Conflict:
            return False
        log.warning("node %s: capacity annotations were %s, not lvmd's %s: rewritten", self.node_name,
                    seen, _capacity_keys(annotations))  # fmt: skip
        return True

    @staticmethod
    def _merged(node: resources.Node, capacity: model.NodeCapacity) -> dict[str, str]:
        """The Node's annotations with ``capacity``'s; classes no longer configured lose theirs, so placement
        stops sending volumes here."""
        wanted = placement.capacity_annotations(
            [(s.device_class, s.default, s.free_bytes) for s in capacity.device_classes]
        )
        kept = {
            k: v
            for k, v in node.meta.annotations.items()
            if not k.startswith(constants.CAPACITY_KEY_PREFIX) or k in wanted
        }
        return {**kept, **wanted}

    def publish(self, capacity: model.NodeCapacity) -> bool:
        """Write the annotations for ``capacity`` (nothing when they already say it); Conflict after
        ``attempts`` conflicting writes, the API's error otherwise. True when it wrote them."""
        for _ in range(self.attempts):
            node = self.cluster.get(resources.NODE, self.node_name)
            if node is None:
                log.warning("node %s not found; capacity not published", self.node_name)
                return False
            annotations = self._merged(node, capacity)
            if annotations == dict(node.meta.annotations):
                return False
            try:
                self.cluster.update(resources.evolve(node, meta=resources.evolve(node.meta, annotations=annotations)))
                return True
            except errors.Conflict:
                continue  # someone else wrote the Node; re-read and try again
        raise errors.Conflict(
            f"node {self.node_name}: capacity annotations not written after {self.attempts} conflicts"
        )


def _capacity_keys(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if k.startswith(constants.CAPACITY_KEY_PREFIX)}
