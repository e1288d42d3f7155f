"""CreateVolume -> reconcile -> ready -> expand -> delete, driven single-threaded with no sleeps.

This is how the simulator drives the same code: the controller and node services decide, and a tiny event
loop (here: drain the watch queue into the reconciler) stands in for the runtime driver.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import pytest

from topolvm import clock, constants, errors
from topolvm.core import model, resources
from topolvm.kube import memory as kube_memory
from topolvm.lvm import memory as lvm_memory
from topolvm.services import controller, lvmd, node

GiB = 1 << 30


class World:
    """Two nodes, each with its own in-memory LVM, lvmd, reconciler and capacity publisher."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.clock = clock.ManualClock()
        self.cluster = kube_memory.InMemoryCluster(self.clock)
        self.queue: deque[str] = deque()
        self.reconcilers: dict[str, node.LogicalVolumeReconciler] = {}
        self.lvms: dict[str, lvm_memory.InMemoryLvm] = {}
        self.lvmds: dict[str, lvmd.LvmdService] = {}
        for name, size in sizes.items():
            self.cluster.add_node(name)
            lvm = lvm_memory.InMemoryLvm()
            lvm.add_vg("vg", [size])
            cfg = model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
            svc = lvmd.LvmdService(lvm=lvm, config=cfg)
            svc.start()
            svc.watch(node.CapacityPublisher(node_name=name, cluster=self.cluster))
            self.lvms[name], self.lvmds[name] = lvm, svc
            self.reconcilers[name] = node.LogicalVolumeReconciler(node_name=name, cluster=self.cluster, lvmd=svc)
        self.cluster.watch(resources.LOGICAL_VOLUME, lambda e: self.queue.append(e.object.name))
        self.controller = controller.ControllerService(cluster=self.cluster, clock=self.clock)

    def drain(self) -> int:
        """Deliver queued events to every node's reconciler until quiet; returns how many were handled."""
        handled = 0
        while self.queue:
            name = self.queue.popleft()
            for reconciler in self.reconcilers.values():
                if reconciler.reconcile(name) is node.Outcome.RETRY:
                    self.queue.append(name)
            handled += 1
            assert handled < 1000, "reconcile loop does not settle"
        return handled

    def annotation(self, node_name: str) -> int:
        n = self.cluster.get(resources.NODE, node_name)
        assert n is not None
        return int(n.meta.annotations[constants.capacity_annotation("ssd")])


def test_create_ready_expand_delete() -> None:
    w = World({"n1": 100 * GiB, "n2": 40 * GiB})
    assert (w.annotation("n1"), w.annotation("n2")) == (100 * GiB, 40 * GiB)
    assert w.controller.get_capacity("ssd") == 140 * GiB
    assert w.controller.get_capacity("", "n2") == 40 * GiB  # 00default

    pending = w.controller.create_volume(
        controller.VolumeRequest(name="pvc-a", required_bytes=10 * GiB, device_class="ssd")
    )
    assert isinstance(pending, controller.Pending)
    assert isinstance(w.controller.creation_state("pvc-a"), controller.Pending)
    w.drain()
    ready = w.controller.creation_state("pvc-a")
    assert isinstance(ready, controller.Ready)
    assert ready.node_name == "n1" and ready.size == 10 * GiB  # most free capacity wins
    cr = w.cluster.get(resources.LOGICAL_VOLUME, "pvc-a")
    assert cr is not None and ready.volume_id == cr.meta.uid
    assert constants.LOGICAL_VOLUME_FINALIZER in cr.meta.finalizers
    lv = w.lvms["n1"].report(vg_names=["vg"]).vgs["vg"].find_lv(ready.volume_id)
    assert lv is not None and lv.tags == (constants.MANAGED_TAG, constants.OWNER_TAG_PREFIX + "pvc-a")
    assert w.annotation("n1") == 90 * GiB

    # the same request again is answered from the CR, without a second volume
    assert (
        w.controller.create_volume(controller.VolumeRequest(name="pvc-a", required_bytes=10 * GiB, device_class="ssd"))
        == ready
    )
    with pytest.raises(errors.AlreadyExists):
        w.controller.create_volume(controller.VolumeRequest(name="pvc-a", required_bytes=20 * GiB, device_class="ssd"))

    assert isinstance(w.controller.expand_volume(ready.volume_id, 15 * GiB, 0), controller.Pending)
    w.drain()
    grown = w.controller.expansion_state("pvc-a", 15 * GiB)
    assert isinstance(grown, controller.Ready) and grown.size == 15 * GiB
    assert w.annotation("n1") == 85 * GiB
    with pytest.raises(errors.OutOfRange):
        w.controller.expand_volume(ready.volume_id, 5 * GiB, 0)

    w.controller.delete_volume(ready.volume_id)
    w.drain()
    assert w.cluster.get(resources.LOGICAL_VOLUME, "pvc-a") is None
    assert w.lvms["n1"].report(vg_names=["vg"]).vgs["vg"].lvs == ()
    assert w.annotation("n1") == 100 * GiB
    w.controller.delete_volume(ready.volume_id)  # idempotent


def test_topology_and_capacity_errors() -> None:
    w = World({"n1": 100 * GiB, "n2": 40 * GiB})
    req = controller.VolumeRequest(name="pvc-b", required_bytes=30 * GiB, device_class="ssd", preferred_nodes=("n2",))
    w.controller.create_volume(req)
    w.drain()
    ready = w.controller.creation_state("pvc-b")
    assert isinstance(ready, controller.Ready) and ready.node_name == "n2"
    with pytest.raises(errors.InsufficientCapacity):  # n2 has 10 GiB left and is the only allowed node
        w.controller.create_volume(
            controller.VolumeRequest(name="pvc-c", required_bytes=20 * GiB, device_class="ssd", requisite_nodes=("n2",))
        )
    with pytest.raises(errors.InsufficientCapacity):
        w.controller.create_volume(controller.VolumeRequest(name="pvc-d", required_bytes=200 * GiB, device_class="ssd"))
    assert (
        w.cluster.get(resources.LOGICAL_VOLUME, "pvc-c") is None
        and w.cluster.get(resources.LOGICAL_VOLUME, "pvc-d") is None
    )


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        pytest.param(controller.VolumeRequest(name="PVC-Upper"), errors.InvalidArgument, id="upper-case-name"),
        pytest.param(controller.VolumeRequest(name="a;b"), errors.InvalidArgument, id="metachar-name"),
        pytest.param(controller.VolumeRequest(name="pvc", device_class="-x"), errors.InvalidArgument, id="bad-class"),
        pytest.param(controller.VolumeRequest(name="pvc", fstype="ntfs"), errors.InvalidArgument, id="bad-fstype"),
        pytest.param(
            controller.VolumeRequest(name="pvc", device_class="nvme"), errors.InvalidArgument, id="unknown-class"
        ),
        pytest.param(
            controller.VolumeRequest(name="pvc", required_bytes=2, limit_bytes=1), errors.OutOfRange, id="range"
        ),
        pytest.param(controller.VolumeRequest(name="pvc", source_volume_id="nope"), errors.NotFound, id="no-source"),
    ],
)
def test_bad_requests_create_nothing(request_: controller.VolumeRequest, error: type[Exception]) -> None:
    w = World({"n1": 10 * GiB})
    with pytest.raises(error):
        w.controller.create_volume(request_)
    assert w.cluster.list_of(resources.LOGICAL_VOLUME) == []


def test_node_failure_is_recorded_and_returned() -> None:
    w = World({"n1": 10 * GiB})
    # The annotation says 10 GiB, but something else took the space meanwhile (a stale annotation).
    w.lvms["n1"].create_lv(vg="vg", name="intruder", size=8 * GiB)
    w.controller.create_volume(controller.VolumeRequest(name="pvc-e", required_bytes=5 * GiB, device_class="ssd"))
    w.drain()
    with pytest.raises(errors.InsufficientCapacity):
        w.controller.creation_state("pvc-e")
    # the failed attempt is cleaned up, and a retry once the space is back succeeds
    with pytest.raises(errors.Unavailable):
        w.controller.create_volume(controller.VolumeRequest(name="pvc-e", required_bytes=5 * GiB, device_class="ssd"))
    w.drain()
    assert w.cluster.get(resources.LOGICAL_VOLUME, "pvc-e") is None
    w.lvms["n1"].remove_lv(vg="vg", name="intruder")  # the operator cleans up...
    w.lvmds["n1"].refresh()  # ...and lvmd's background refresh notices
    w.controller.create_volume(controller.VolumeRequest(name="pvc-e", required_bytes=5 * GiB, device_class="ssd"))
    w.drain()
    assert isinstance(w.controller.creation_state("pvc-e"), controller.Ready)


def test_crash_after_lvcreate_is_adopted_not_duplicated() -> None:
    w = World({"n1": 10 * GiB})
    w.controller.create_volume(controller.VolumeRequest(name="pvc-f", required_bytes=GiB, device_class="ssd"))
    cr = w.cluster.get(resources.LOGICAL_VOLUME, "pvc-f")
    assert cr is not None
    # The agent created the LV, then died before writing status.
    w.lvmds["n1"].create_lv(name=cr.meta.uid, device_class="ssd", size_bytes=GiB, tags=[node.owner_tag("pvc-f")])
    w.drain()
    ready = w.controller.creation_state("pvc-f")
    assert isinstance(ready, controller.Ready)
    assert [lv.name for lv in w.lvms["n1"].report(vg_names=["vg"]).vgs["vg"].lvs] == [cr.meta.uid]


def test_delete_before_ready_removes_a_half_made_lv() -> None:
    """Upstream #1104/#1213: a PVC deleted before its volume is ready must not leave an orphaned LV."""
    w = World({"n1": 10 * GiB})
    w.controller.create_volume(controller.VolumeRequest(name="pvc-g", required_bytes=GiB, device_class="ssd"))
    w.queue.clear()
    cr = w.cluster.get(resources.LOGICAL_VOLUME, "pvc-g")
    assert cr is not None
    w.reconcilers["n1"].reconcile("pvc-g")  # adds the finalizer and creates the LV
    w.cluster.delete(resources.LOGICAL_VOLUME, "pvc-g")
    w.queue.clear()
    w.queue.append("pvc-g")
    w.drain()
    assert w.cluster.get(resources.LOGICAL_VOLUME, "pvc-g") is None
    assert w.lvms["n1"].report(vg_names=["vg"]).vgs["vg"].lvs == ()


def test_conflicting_writer_makes_the_reconciler_retry() -> None:
    w = World({"n1": 10 * GiB})
    w.controller.create_volume(controller.VolumeRequest(name="pvc-h", required_bytes=GiB, device_class="ssd"))
    w.queue.clear()
    real_update = w.cluster.update
    calls = {"n": 0}

    def racing_update(lv: resources.LogicalVolume) -> resources.LogicalVolume:
        calls["n"] += 1
        if calls["n"] == 1:
            current = w.cluster.get(resources.LOGICAL_VOLUME, lv.name)
            assert current is not None
            real_update(replace(current, meta=replace(current.meta, labels={"other": "writer"})))
        return real_update(lv)

    w.cluster.update = racing_update  # type: ignore[method-assign, assignment]
    assert w.reconcilers["n1"].reconcile("pvc-h") is node.Outcome.RETRY
    assert w.reconcilers["n1"].reconcile("pvc-h") is node.Outcome.DONE
    assert isinstance(w.controller.creation_state("pvc-h"), controller.Ready)


def test_failed_expansion_is_retried_once_space_is_back() -> None:
    w = World({"n1": 100 * GiB})
    small = w.controller.create_volume(
        controller.VolumeRequest(name="pvc-s", required_bytes=10 * GiB, device_class="ssd")
    )
    big = w.controller.create_volume(
        controller.VolumeRequest(name="pvc-b", required_bytes=60 * GiB, device_class="ssd")
    )
    w.drain()
    s_ready, b_ready = w.controller.creation_state(small.cr_name), w.controller.creation_state(big.cr_name)
    assert isinstance(s_ready, controller.Ready) and isinstance(b_ready, controller.Ready)
    first = w.controller.expand_volume(s_ready.volume_id, 50 * GiB, 0)
    assert isinstance(first, controller.Pending)
    w.drain()
    with pytest.raises(errors.InsufficientCapacity):
        w.controller.expansion_state("pvc-s", 50 * GiB, first.request)
    w.controller.delete_volume(b_ready.volume_id)
    w.drain()
    retry = w.controller.expand_volume(s_ready.volume_id, 50 * GiB, 0)  # same size: the CO retries
    assert isinstance(retry, controller.Pending)
    assert isinstance(
        w.controller.expansion_state("pvc-s", 50 * GiB, retry.request), controller.Pending
    )  # not the old failure
    w.drain()
    grown = w.controller.expansion_state("pvc-s", 50 * GiB, retry.request)
    assert isinstance(grown, controller.Ready) and grown.size == 50 * GiB


def test_a_failed_expansion_can_be_lowered_back() -> None:
    w = World({"n1": 20 * GiB})
    vol = w.controller.create_volume(
        controller.VolumeRequest(name="pvc-l", required_bytes=10 * GiB, device_class="ssd")
    )
    w.drain()
    ready = w.controller.creation_state(vol.cr_name)
    assert isinstance(ready, controller.Ready)
    failing = w.controller.expand_volume(ready.volume_id, 40 * GiB, 0)
    w.drain()
    assert isinstance(failing, controller.Pending)
    with pytest.raises(errors.InsufficientCapacity):
        w.controller.expansion_state("pvc-l", 40 * GiB, failing.request)
    lowered = w.controller.expand_volume(ready.volume_id, 15 * GiB, 0)  # the user asks for less than before
    w.drain()
    assert isinstance(lowered, controller.Pending)
    done = w.controller.expansion_state("pvc-l", 15 * GiB, lowered.request)
    assert isinstance(done, controller.Ready) and done.size == 15 * GiB
