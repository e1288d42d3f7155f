"""lvmd's capacity stream keeps every change, even when a one-shot reader subscribes in the middle of one.

topolvm-node asks lvmd for capacity with a one-shot Watch (``LvmdClient.capacity()``: its health sweep, its
capacity resync). Such a subscription opened while an lvremove held lvmd's state lock read the removal's new
value as its first, which marked that value delivered, and the removal's own delivery was then dropped as not
newer: the long-lived stream that writes the Node's capacity annotation never heard of the removal (seen in the
fidelity replays as an annotation stuck at its value from before a removal: docs/fidelity.md).
"""

from __future__ import annotations

import queue
import threading
import time

from topolvm import clock, constants
from topolvm.core import model, resources
from topolvm.kube import memory as kube_memory
from topolvm.lvm import memory as lvm_memory
from topolvm.services import lvmd, node

GiB = 1 << 30
KEY = constants.CAPACITY_KEY_PREFIX + "ssd"


class HeldRemove(lvm_memory.InMemoryLvm):
    """An lvremove that waits for the test's word (on real lvm2 it takes hundreds of milliseconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.removing = threading.Event()
        self.release = threading.Event()

    def remove_lv(self, *, vg: str, name: str) -> None:
        self.removing.set()
        assert self.release.wait(10)
        super().remove_lv(vg=vg, name=name)


def annotation(cluster: kube_memory.InMemoryCluster) -> str | None:
    found = cluster.get(resources.NODE, "n1")
    assert found is not None
    return found.meta.annotations.get(KEY)


def test_a_removal_reaches_the_annotation_though_a_one_shot_reader_subscribed_during_it() -> None:
    lvm = HeldRemove()
    lvm.add_vg("vg", [10 * GiB])
    svc = lvmd.LvmdService(
        lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    )
    svc.start()
    cluster = kube_memory.InMemoryCluster(clock.ManualClock())
    cluster.add_node("n1")
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    stream = svc.watch(publisher)  # topolvm-node's long-lived capacity stream
    reconciler = node.LogicalVolumeReconciler(node_name="n1", cluster=cluster, lvmd=svc, publisher=publisher)
    spec = resources.LogicalVolumeSpec(name="pvc-1", node_name="n1", device_class="ssd", size=3 * GiB)
    lv = cluster.create(resources.LogicalVolume(meta=resources.Meta(name="pvc-1"), spec=spec))
    assert reconciler.reconcile(lv.name) is node.Outcome.DONE
    assert annotation(cluster) == str(7 * GiB)
    cluster.delete(resources.LOGICAL_VOLUME, lv.name)  # its finalizer keeps it, deleting

    remover = threading.Thread(target=reconciler.reconcile, args=(lv.name,))
    remover.start()
    assert lvm.removing.wait(10)  # lvremove running, lvmd's state lock held
    first: queue.SimpleQueue[model.NodeCapacity] = queue.SimpleQueue()
    reader = threading.Thread(target=lambda: svc.watch(first.put).close())  # what one LvmdClient.capacity() does
    reader.start()
    deadline = time.monotonic() + 10
    while not svc._broadcast._lock.locked():  # the reader is in subscribe, waiting for the state lock
        assert time.monotonic() < deadline, "the reader never subscribed"
        time.sleep(0.005)
    lvm.release.set()
    remover.join(10)
    reader.join(10)
    stream.close()

    assert first.get_nowait().for_class("ssd").free_bytes == 10 * GiB
    assert annotation(cluster) == str(10 * GiB), "the removal never reached the capacity stream"
