"""Node deletion cleanup, node registration, and the orphan LV collector on in-memory adapters."""

from __future__ import annotations

from dataclasses import replace

from topolvm import clock, constants
from topolvm.core import model, resources
from topolvm.kube import memory as kube_memory
from topolvm.lvm import memory as lvm_memory
from topolvm.services import cleanup, controller, lvmd, node

GiB = 1 << 30


def make_world() -> tuple[kube_memory.InMemoryCluster, lvmd.LvmdService, controller.ControllerService]:
    cluster = kube_memory.InMemoryCluster()
    cluster.add_node("n1")
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [20 * GiB])
    svc = lvmd.LvmdService(
        lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    )
    svc.start()
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
