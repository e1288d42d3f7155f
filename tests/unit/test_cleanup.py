"""Node deletion cleanup (claims, then LogicalVolumes, then the finalizer; two replicas at once), node
registration, and the orphan LV collector on in-memory adapters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from tests.support import memory_lvmd
from topolvm import clock, constants, errors
from topolvm.core import model, resources, workloads
from topolvm.kube import memory as kube_memory
from topolvm.services import cleanup, controller, lvmd, node

GiB = 1 << 30


def make_world() -> tuple[kube_memory.InMemoryCluster, lvmd.LvmdService, controller.ControllerService]:
    cluster = kube_memory.InMemoryCluster()
    cluster.add_node("n1")
    svc = memory_lvmd.started(20 * GiB)
    svc.watch(node.CapacityPublisher(node_name="n1", cluster=cluster))
    return cluster, svc, controller.ControllerService(cluster=cluster, clock=clock.ManualClock())


def provision(
    cluster: kube_memory.InMemoryCluster, svc: lvmd.LvmdService, ctl: controller.ControllerService, name: str
) -> None:
    ctl.create_volume(controller.VolumeRequest(name=name, required_bytes=GiB, device_class="ssd"))
    node.LogicalVolumeReconciler(node_name="n1", cluster=cluster, lvmd=svc).reconcile(name)


def test_register_node_adds_the_finalizer_once() -> None:
    cluster, _, _ = make_world()
    cleanup.register_node(cluster, "n1")
    cleanup.register_node(cluster, "n1")
    n = cluster.get(resources.NODE, "n1")
    assert n is not None and n.meta.finalizers == (constants.NODE_FINALIZER,)


def test_deleted_node_releases_its_logical_volumes() -> None:
    cluster, svc, ctl = make_world()
    cleanup.register_node(cluster, "n1")
    provision(cluster, svc, ctl, "pvc-a")
    provision(cluster, svc, ctl, "pvc-b")
    cr = cluster.get(resources.LOGICAL_VOLUME, "pvc-a")
    assert cr is not None and constants.LOGICAL_VOLUME_FINALIZER in cr.meta.finalizers
    janitor = cleanup.NodeCleanup(cluster=cluster)
    assert janitor.reconcile("n1") is node.Outcome.DONE  # not deleted: nothing to do
    assert len(cluster.list_of(resources.LOGICAL_VOLUME)) == 2
    cluster.remove_node("n1")  # the node is gone for good (its disks with it)
    assert janitor.reconcile("n1") is node.Outcome.DONE
    assert cluster.list_of(resources.LOGICAL_VOLUME) == []
    assert cluster.get(resources.NODE, "n1") is None


class Recording:
    """The in-memory cluster, recording each write; ``before_delete`` runs once ahead of the first delete of a
    kind (another replica's work squeezed in between a read and a write)."""

    def __init__(self, inner: kube_memory.InMemoryCluster) -> None:
        self.inner = inner
        self.writes: list[tuple[str, str, str]] = []
        self.before_delete: dict[str, Callable[[], object]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, obj: Any) -> Any:
        self.writes.append(("update", resources.kind_of(obj).name, obj.meta.name))
        return self.inner.update(obj)

    def delete(self, kind: resources.Kind[Any], name: str, *, namespace: str = "") -> None:
        hook = self.before_delete.pop(kind.name, None)
        if hook is not None:
            hook()
        self.writes.append(("delete", kind.name, f"{namespace}/{name}" if namespace else name))
        self.inner.delete(kind, name, namespace=namespace)


def node_with_claims() -> kube_memory.InMemoryCluster:
    """n1 with two TopoLVM volumes (claims and LogicalVolumes), claims of n1 that are not TopoLVM's, and a
    TopoLVM claim and volume on n2; n1 carries the node finalizer."""
    cluster, svc, ctl = make_world()
    cluster.add_node("n2")
    cleanup.register_node(cluster, "n1")
    for name, provisioner in (("topolvm-provisioner", constants.PLUGIN_NAME), ("nfs", "nfs.csi.k8s.io")):
        cluster.create(workloads.StorageClass(resources.Meta(name), provisioner))
    for name, storage_class, node_name in (
        ("a", "topolvm-provisioner", "n1"),
        ("b", "topolvm-provisioner", "n1"),
        ("share", "nfs", "n1"),  # another driver's
        ("nosc", None, "n1"),  # no class
        ("other", "topolvm-provisioner", "n2"),
        ("unscheduled", "topolvm-provisioner", ""),
    ):
        annotations = {workloads.SELECTED_NODE_ANNOTATION: node_name} if node_name else {}
        meta = resources.Meta(name, "app", annotations=annotations)
        cluster.create(workloads.PersistentVolumeClaim(meta, workloads.ClaimSpec(storage_class_name=storage_class)))
    provision(cluster, svc, ctl, "pvc-a")
    provision(cluster, svc, ctl, "pvc-b")
    other = resources.Meta("pvc-other", finalizers=(constants.LOGICAL_VOLUME_FINALIZER,))
    cluster.create(resources.LogicalVolume(other, resources.LogicalVolumeSpec("pvc-other", "n2", GiB, "ssd")))
    return cluster


def claims(cluster: kube_memory.InMemoryCluster) -> set[str]:
    return {c.meta.name for c in cluster.list_of(workloads.PVC) if not c.meta.deleting}


def assert_only_n2_and_other_claims_remain(cluster: kube_memory.InMemoryCluster) -> None:
    assert claims(cluster) == {"share", "nosc", "other", "unscheduled"}
    (lv,) = cluster.list_of(resources.LOGICAL_VOLUME)
    assert lv.name == "pvc-other" and not lv.meta.deleting
    assert lv.meta.finalizers == (constants.LOGICAL_VOLUME_FINALIZER,)
    assert cluster.get(resources.NODE, "n1") is None
    assert cluster.get(resources.NODE, "n2") is not None


def test_deleted_node_deletes_its_topolvm_claims_then_releases_its_volumes() -> None:
    cluster = Recording(node_with_claims())
    janitor = cleanup.NodeCleanup(cluster=cluster)
    assert janitor.reconcile("n1") is node.Outcome.DONE  # not deleted: nothing to do
    assert cluster.writes == []
    cluster.remove_node("n1")
    assert janitor.reconcile("n1") is node.Outcome.DONE
    assert_only_n2_and_other_claims_remain(cluster.inner)
    # upstream's order: the claims, then the LogicalVolumes (each deleted, then its finalizer dropped), the Node
    assert cluster.writes == [
        ("delete", "PersistentVolumeClaim", "app/a"),
        ("delete", "PersistentVolumeClaim", "app/b"),
        ("delete", "LogicalVolume", "pvc-a"),
        ("update", "LogicalVolume", "pvc-a"),
        ("delete", "LogicalVolume", "pvc-b"),
        ("update", "LogicalVolume", "pvc-b"),
        ("update", "Node", "n1"),
    ]
    assert janitor.reconcile("n1") is node.Outcome.DONE  # again: nothing left to do


@pytest.mark.parametrize("squeezed_before", ["PersistentVolumeClaim", "LogicalVolume"])
def test_two_replicas_at_once_do_the_work_once_and_neither_fails(squeezed_before: str) -> None:
    inner = node_with_claims()
    first = Recording(inner)
    second = cleanup.NodeCleanup(cluster=inner)
    # The second replica does everything between the first one's reads and its first write of a kind.
    first.before_delete[squeezed_before] = lambda: second.reconcile("n1")
    inner.remove_node("n1")
    assert cleanup.NodeCleanup(cluster=first).reconcile("n1") is node.Outcome.DONE
    assert_only_n2_and_other_claims_remain(inner)


def test_a_replica_that_lost_the_race_for_the_node_retries_and_finds_it_done() -> None:
    cluster = node_with_claims()
    n1 = cluster.get(resources.NODE, "n1")
    assert n1 is not None  # another controller's finalizer keeps the Node after ours is gone
    cluster.update(replace(n1, meta=n1.meta.with_finalizer("example.com/keep")))
    cluster.remove_node("n1")
    stale = cluster.get(resources.NODE, "n1")
    assert cleanup.NodeCleanup(cluster=cluster).reconcile("n1") is node.Outcome.DONE  # the other replica

    class Stale(Recording):
        def get(self, kind: resources.Kind[Any], name: str, *, namespace: str = "") -> Any:
            return stale if kind is resources.NODE and not self.writes else self.inner.get(kind, name)

    late = Stale(cluster)
    janitor = cleanup.NodeCleanup(cluster=late)
    assert janitor.reconcile("n1") is node.Outcome.RETRY  # its Node was stale: Conflict
    assert janitor.reconcile("n1") is node.Outcome.DONE  # a fresh read: the finalizer is gone already
    n1 = cluster.get(resources.NODE, "n1")
    assert n1 is not None and n1.meta.finalizers == ("example.com/keep",)
    assert claims(cluster) == {"share", "nosc", "other", "unscheduled"}


def test_claims_already_being_deleted_are_left_to_finish() -> None:
    cluster = Recording(node_with_claims())
    claim = cluster.inner.get(workloads.PVC, "a", namespace="app")
    assert claim is not None  # kubernetes.io/pvc-protection holds a claim while a pod uses it
    cluster.inner.update(replace(claim, meta=claim.meta.with_finalizer("kubernetes.io/pvc-protection")))
    cluster.inner.delete(workloads.PVC, "a", namespace="app")
    cluster.remove_node("n1")
    assert cleanup.NodeCleanup(cluster=cluster).reconcile("n1") is node.Outcome.DONE
    assert ("delete", "PersistentVolumeClaim", "app/a") not in cluster.writes
    assert ("delete", "PersistentVolumeClaim", "app/b") in cluster.writes


def test_an_unreachable_api_server_is_retried() -> None:
    cluster = Recording(node_with_claims())

    def down() -> None:
        raise errors.Unavailable("API server unreachable")

    cluster.before_delete["PersistentVolumeClaim"] = down
    cluster.remove_node("n1")
    janitor = cleanup.NodeCleanup(cluster=cluster)
    assert janitor.reconcile("n1") is node.Outcome.RETRY
    assert janitor.reconcile("n1") is node.Outcome.DONE
    assert_only_n2_and_other_claims_remain(cluster.inner)


def test_orphans_are_reported_then_collected_on_request() -> None:
    cluster, svc, ctl = make_world()
    provision(cluster, svc, ctl, "pvc-keep")
    provision(cluster, svc, ctl, "pvc-gone")
    gone = cluster.get(resources.LOGICAL_VOLUME, "pvc-gone")
    assert gone is not None
    # The CR vanished without the node agent's finalizer running (upstream #1104/#1213).
    cluster.update(replace(gone, meta=gone.meta.without_finalizer(constants.LOGICAL_VOLUME_FINALIZER)))
    cluster.delete(resources.LOGICAL_VOLUME, "pvc-gone")
    svc.create_lv(name="not-ours", device_class="ssd", size_bytes=GiB)  # no owner tag: never an orphan
    collector = cleanup.OrphanCollector(cluster=cluster, lvmd=svc)
    report = collector.collect(dry_run=True)
    assert [(o.lv_name, o.owner) for o in report] == [(gone.meta.uid, "pvc-gone")]
    assert len(svc.list_lvs(device_class="ssd")) == 3  # a dry run removes nothing
    collector.collect(dry_run=False)
    names = {lv.name for lv in svc.list_lvs(device_class="ssd")}
    keep = cluster.get(resources.LOGICAL_VOLUME, "pvc-keep")
    assert keep is not None and names == {keep.meta.uid, "not-ours"}
    assert collector.scan() == []


def test_an_lv_recorded_in_a_restored_crs_status_is_not_an_orphan() -> None:
    cluster, svc, ctl = make_world()
    provision(cluster, svc, ctl, "pvc-restored")
    cr = cluster.get(resources.LOGICAL_VOLUME, "pvc-restored")
    assert cr is not None
    # Restored from a backup: a new UID, the old volumeID in status (the PV still names that LV).
    cluster.update(replace(cr, meta=cr.meta.without_finalizer(constants.LOGICAL_VOLUME_FINALIZER)))
    cluster.delete(resources.LOGICAL_VOLUME, "pvc-restored")
    restored = cluster.create(replace(cr, meta=replace(cr.meta, uid="", resource_version="")))
    cluster.update_status(replace(restored, status=cr.status))
    assert restored.meta.uid != cr.meta.uid
    assert cleanup.OrphanCollector(cluster=cluster, lvmd=svc).scan() == []
    assert ctl.find_by_volume_id(cr.meta.uid) is not None


def test_capacity_publisher_drops_annotations_of_classes_no_longer_configured() -> None:
    cluster = kube_memory.InMemoryCluster()
    cluster.add_node("n1", annotations={"capacity.topolvm.io/old-class": "999", "unrelated": "x"})
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    publisher(model.NodeCapacity((model.DeviceClassStats("ssd", True, 10, 7),)))
    n = cluster.get(resources.NODE, "n1")
    assert n is not None and dict(n.meta.annotations) == {
        "capacity.topolvm.io/ssd": "7",
        "capacity.topolvm.io/00default": "7",
        "unrelated": "x",
    }
