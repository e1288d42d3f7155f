"""Snapshots and restores (thin classes; full copies on thick ones) through the controller and node services,
single-threaded."""

from __future__ import annotations

from collections import deque

import pytest

from topolvm import clock, errors
from topolvm.core import model, resources
from topolvm.kube import memory as kube_memory
from topolvm.lvm import memory as lvm_memory
from topolvm.services import controller, lvmd, node

GiB = 1 << 30


class ThinWorld:
    def __init__(self) -> None:
        self.cluster = kube_memory.InMemoryCluster(clock.ManualClock())
        self.cluster.add_node("n1")
        self.lvm = lvm_memory.InMemoryLvm()
        self.lvm.add_vg("vg", [20 * GiB])
        self.lvm.create_thin_pool(vg="vg", name="pool", size=10 * GiB)
        thin = model.DeviceClass(
            "thin", "vg", default=True, type=model.DeviceType.THIN, thin_pool=model.ThinPoolConfig("pool", 2.0)
        )
        thick = model.DeviceClass("thick", "vg", spare_bytes=0)
        self.lvmd = lvmd.LvmdService(lvm=self.lvm, config=model.LvmdConfig((thin, thick)))
        self.lvmd.start()
        self.lvmd.watch(node.CapacityPublisher(node_name="n1", cluster=self.cluster))
        self.reconciler = node.LogicalVolumeReconciler(node_name="n1", cluster=self.cluster, lvmd=self.lvmd)
        self.queue: deque[str] = deque()
        self.cluster.watch(resources.LOGICAL_VOLUME, lambda e: self.queue.append(e.object.name))
        self.ctl = controller.ControllerService(cluster=self.cluster, clock=clock.ManualClock())

    def drain(self) -> None:
        while self.queue:
            if self.reconciler.reconcile(name := self.queue.popleft()) is node.Outcome.RETRY:
                self.queue.append(name)

    def ready(self, state: controller.Ready | controller.Pending) -> controller.Ready:
        self.drain()
        result = self.ctl.creation_state(state.cr_name)
        assert isinstance(result, controller.Ready)
        return result


def test_snapshot_restore_clone_and_delete() -> None:
    w = ThinWorld()
    vol = w.ready(
        w.ctl.create_volume(controller.VolumeRequest(name="pvc-src", required_bytes=GiB, device_class="thin"))
    )
    snap = w.ready(w.ctl.create_snapshot(name="snap-1", source_volume_id=vol.volume_id))
    assert snap.node_name == vol.node_name and snap.size == GiB and snap.created_at
    lv = w.lvm.report(vg_names=["vg"]).vgs["vg"].find_lv(snap.volume_id)
    assert lv is not None and lv.origin == vol.volume_id and lv.read_only
    assert w.ready(w.ctl.create_snapshot(name="snap-1", source_volume_id=vol.volume_id)) == snap  # idempotent
    with pytest.raises(errors.AlreadyExists):
        w.ctl.create_snapshot(name="snap-1", source_volume_id=snap.volume_id)

    restored = w.ready(
        w.ctl.create_volume(
            controller.VolumeRequest(name="pvc-restore", required_bytes=2 * GiB, source_volume_id=snap.volume_id)
        )
    )
    lv = w.lvm.report(vg_names=["vg"]).vgs["vg"].find_lv(restored.volume_id)
    assert lv is not None and lv.origin == snap.volume_id and not lv.read_only and lv.size == 2 * GiB
    clone = w.ready(
        w.ctl.create_volume(
            controller.VolumeRequest(name="pvc-clone", required_bytes=GiB, source_volume_id=vol.volume_id)
        )
    )
    assert clone.node_name == vol.node_name
    elsewhere = controller.VolumeRequest(
        name="pvc-clone-elsewhere", required_bytes=GiB, source_volume_id=vol.volume_id, requisite_nodes=("n9",)
    )
    with pytest.raises(errors.InvalidArgument, match="accessibility requirements"):  # the source's node must be allowed
        w.ctl.create_volume(elsewhere)
    assert w.cluster.get(resources.LOGICAL_VOLUME, "pvc-clone-elsewhere") is None

    with pytest.raises(errors.OutOfRange):  # smaller than its source
        w.ctl.create_volume(
            controller.VolumeRequest(name="pvc-small", required_bytes=GiB // 2, source_volume_id=vol.volume_id)
        )

    with pytest.raises(errors.InvalidArgument):  # a snapshot's ID is not a volume's
        w.ctl.delete_volume(snap.volume_id)
    with pytest.raises(errors.InvalidArgument):
        w.ctl.delete_volume(vol.volume_id, snapshot=True)
    with pytest.raises(errors.AlreadyExists):  # same name, another source
        w.ctl.create_volume(
            controller.VolumeRequest(name="pvc-restore", required_bytes=2 * GiB, source_volume_id=vol.volume_id)
        )
    w.ctl.delete_volume(snap.volume_id, snapshot=True)
    for volume_id in (restored.volume_id, clone.volume_id, vol.volume_id):
        w.ctl.delete_volume(volume_id)
    w.drain()
    assert w.cluster.list_of(resources.LOGICAL_VOLUME) == []
    assert [lv.name for lv in w.lvm.report(vg_names=["vg"]).vgs["vg"].lvs] == ["pool"]


def test_thick_snapshots_are_full_copies_and_need_room_on_the_node() -> None:
    w = ThinWorld()  # 10 GiB of the VG outside the thin pool, for the thick class
    small = w.ready(
        w.ctl.create_volume(controller.VolumeRequest(name="pvc-small", required_bytes=2 * GiB, device_class="thick"))
    )
    snap = w.ready(w.ctl.create_snapshot(name="snap-small", source_volume_id=small.volume_id))
    lv = w.lvm.report(vg_names=["vg"]).vgs["vg"].find_lv(snap.volume_id)
    assert lv is not None and lv.read_only and not lv.origin and lv.size == 2 * GiB
    assert w.lvm.copied_from("vg", snap.volume_id) == small.volume_id
    # 6 GiB free now, 2 GiB after a 4 GiB volume: no room for a copy of it.
    big = w.ready(
        w.ctl.create_volume(controller.VolumeRequest(name="pvc-big", required_bytes=4 * GiB, device_class="thick"))
    )
    pending = w.ctl.create_snapshot(name="snap-big", source_volume_id=big.volume_id)
    w.drain()
    with pytest.raises(errors.InsufficientCapacity, match="cannot fit a copy"):
        w.ctl.creation_state(pending.cr_name)
    w.drain()
    assert w.cluster.get(resources.LOGICAL_VOLUME, "snap-big") is None
    lvs = {lv.name for lv in w.lvm.report(vg_names=["vg"]).vgs["vg"].lvs}
    assert lvs == {"pool", small.volume_id, snap.volume_id, big.volume_id}  # no half-made copy left


@pytest.mark.parametrize(
    ("name", "source", "error"),
    [
        pytest.param("snap", "", errors.InvalidArgument, id="no-source"),
        pytest.param("snap", "no-such-volume", errors.NotFound, id="unknown-source"),
        pytest.param("Snap;x", "whatever", errors.InvalidArgument, id="bad-name"),
    ],
)
def test_bad_snapshot_requests(name: str, source: str, error: type[Exception]) -> None:
    w = ThinWorld()
    with pytest.raises(error):
        w.ctl.create_snapshot(name=name, source_volume_id=source)
    assert w.cluster.list_of(resources.LOGICAL_VOLUME) == []
