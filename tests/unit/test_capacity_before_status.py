"""The node agent writes a node's capacity annotations before the status that reports its new or grown LV.

The status lets the claim and then the pod be bound, and the scheduler extender ends the pod's reservation on
that binding: if the annotation still lacked the LV then, the next pod would be promised its bytes. The capacity
stream's own delivery may fail or lag (a failed write, a reconnecting watch), so the reconciler does not rely on it.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from tests.support import memory_lvmd
from topolvm import clock, constants, errors
from topolvm.core import model, resources
from topolvm.kube import memory as kube_memory
from topolvm.services import lvmd, node

GiB = 1 << 30
KEY = constants.CAPACITY_KEY_PREFIX + "ssd"


class RecordingCluster(kube_memory.InMemoryCluster):
    """Remembers, at each LogicalVolume status write, what the Node's annotation said; can fail Node writes."""

    def __init__(self) -> None:
        super().__init__(clock.ManualClock())
        self.seen_at_status: list[str | None] = []
        self.node_writes_fail = 0

    def update(self, obj):  # type: ignore[no-untyped-def]
        if isinstance(obj, resources.Node) and self.node_writes_fail:
            self.node_writes_fail -= 1
            raise errors.Unavailable("the API server is restarting")
        return super().update(obj)

    def update_status(self, obj):  # type: ignore[no-untyped-def]
        if isinstance(obj, resources.LogicalVolume) and obj.status.volume_id:
            current = self.get(resources.NODE, "n1")
            assert current is not None
            self.seen_at_status.append(current.meta.annotations.get(KEY))
        return super().update_status(obj)


def world(*, with_publisher: bool) -> tuple[RecordingCluster, lvmd.LvmdService, node.LogicalVolumeReconciler]:
    cluster = RecordingCluster()
    cluster.add_node("n1")
    svc = memory_lvmd.started(10 * GiB)
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    publisher(svc.capacity())  # the agent's first report; the capacity stream itself is left out on purpose
    reconciler = node.LogicalVolumeReconciler(
        node_name="n1", cluster=cluster, lvmd=svc, publisher=publisher if with_publisher else None
    )
    return cluster, svc, reconciler


def new_lv(cluster: RecordingCluster, size: int) -> resources.LogicalVolume:
    return cluster.create(
        resources.LogicalVolume(
            meta=resources.Meta(name="pvc-1"),
            spec=resources.LogicalVolumeSpec(name="pvc-1", node_name="n1", device_class="ssd", size=size),
        )
    )


def test_the_annotation_counts_a_new_and_a_grown_lv_when_its_status_is_written() -> None:
    cluster, _svc, reconciler = world(with_publisher=True)
    lv = new_lv(cluster, 3 * GiB)
    assert reconciler.reconcile(lv.name) is node.Outcome.DONE
    grown = cluster.get(resources.LOGICAL_VOLUME, lv.name)
    assert grown is not None and grown.status.volume_id
    cluster.update(replace(grown, spec=replace(grown.spec, size=5 * GiB)))
    assert reconciler.reconcile(lv.name) is node.Outcome.DONE
    assert cluster.seen_at_status == [str(7 * GiB), str(5 * GiB)]


def test_without_the_publisher_the_status_would_report_an_lv_the_annotation_does_not_count() -> None:
    cluster, _svc, reconciler = world(with_publisher=False)
    reconciler.reconcile(new_lv(cluster, 3 * GiB).name)
    assert cluster.seen_at_status == [str(10 * GiB)]  # what the hook prevents


def test_a_failed_annotation_write_holds_the_status_back_until_a_retry_publishes_it() -> None:
    cluster, svc, reconciler = world(with_publisher=True)
    lv = new_lv(cluster, 3 * GiB)
    cluster.node_writes_fail = 1
    assert reconciler.reconcile(lv.name) is node.Outcome.RETRY
    pending = cluster.get(resources.LOGICAL_VOLUME, lv.name)
    assert pending is not None and not pending.status.volume_id  # not reported: the annotation says 10 GiB
    assert reconciler.reconcile(lv.name) is node.Outcome.DONE  # lvmd's create is idempotent: the same LV
    assert cluster.seen_at_status == [str(7 * GiB)]
    assert len(svc.list_lvs(device_class="ssd")) == 1


def test_the_stream_listener_logs_what_publish_raises(caplog: pytest.LogCaptureFixture) -> None:
    cluster, svc, _reconciler = world(with_publisher=True)
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    svc.create_lv(name="x", device_class="ssd", size_bytes=GiB, tags=[])
    cluster.node_writes_fail = 1
    publisher(svc.capacity())  # no exception into lvmd's stream
    assert "capacity annotations not written" in caplog.text
    with pytest.raises(errors.Unavailable):
        cluster.node_writes_fail = 1
        publisher.publish(svc.capacity())


def test_the_periodic_resync_rewrites_annotations_a_lost_write_left_stale(caplog: pytest.LogCaptureFixture) -> None:
    """topolvm-node's --capacity-resync-interval: a Node whose annotation says other than lvmd (someone wrote it
    back, or a change's write was lost) on two checks in a row is rewritten, with a warning; when it agrees
    nothing is written."""
    cluster = kube_memory.InMemoryCluster(clock.ManualClock())
    cluster.add_node("n1")
    svc = memory_lvmd.started(10 * GiB)
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    assert publisher.publish(svc.capacity()) is True
    stale = cluster.get(resources.NODE, "n1")
    assert stale is not None and stale.meta.annotations[KEY] == str(10 * GiB)
    cluster.update(replace(stale, meta=replace(stale.meta, annotations={**stale.meta.annotations, KEY: str(7 * GiB)})))
    with caplog.at_level("WARNING", logger="topolvm.services.node"):
        assert publisher.resync(svc.capacity) is False  # seen once: perhaps a write in flight
        left = cluster.get(resources.NODE, "n1")
        assert left is not None and left.meta.annotations[KEY] == str(7 * GiB) and "rewritten" not in caplog.text
        assert publisher.resync(svc.capacity) is True  # the same mismatch again: a lost write
    fixed = cluster.get(resources.NODE, "n1")
    assert fixed is not None and fixed.meta.annotations[KEY] == str(10 * GiB)
    assert f"capacity annotations were {{'{KEY}': '{7 * GiB}', " in caplog.text
    assert f"not lvmd's {{'{KEY}': '{10 * GiB}', " in caplog.text and "rewritten" in caplog.text
    version = fixed.meta.resource_version
    caplog.clear()
    assert publisher.resync(svc.capacity) is False
    again = cluster.get(resources.NODE, "n1")
    assert again is not None and again.meta.resource_version == version and "rewritten" not in caplog.text


def test_the_resync_gives_way_to_a_change_the_capacity_stream_writes_meanwhile() -> None:
    """The resync reads the Node, then lvmd; had it read lvmd first, a removal written by the stream between the
    two would be overwritten by the older figure. Its write is conditional on the Node it read: a stream write
    in between makes it give way, and the newer figure stays."""
    cluster = kube_memory.InMemoryCluster(clock.ManualClock())
    cluster.add_node("n1")
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    svc = memory_lvmd.started(10 * GiB)
    publisher.publish(svc.capacity())
    stale = cluster.get(resources.NODE, "n1")
    assert stale is not None
    cluster.update(replace(stale, meta=replace(stale.meta, annotations={**stale.meta.annotations, KEY: str(GiB)})))

    def read_while_the_stream_writes() -> model.NodeCapacity:
        older = svc.capacity()  # 10 GiB, what lvmd said a moment ago
        newer = cluster.get(resources.NODE, "n1")
        assert newer is not None
        cluster.update(replace(newer, meta=replace(newer.meta, annotations={**newer.meta.annotations, KEY: "12"})))
        return older

    assert publisher.resync(svc.capacity) is False  # the first sight of the mismatch
    assert publisher.resync(read_while_the_stream_writes) is False
    kept = cluster.get(resources.NODE, "n1")
    assert kept is not None and kept.meta.annotations[KEY] == "12"


def test_a_mismatch_the_pending_write_mends_raises_no_alarm(caplog: pytest.LogCaptureFixture) -> None:
    """A check that falls between an lvm change and the annotation write it causes sees a mismatch; the write
    lands before the next check, so nothing is rewritten and nothing is logged."""
    cluster = kube_memory.InMemoryCluster(clock.ManualClock())
    cluster.add_node("n1")
    svc = memory_lvmd.started(10 * GiB)
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    publisher.publish(svc.capacity())
    with caplog.at_level("WARNING", logger="topolvm.services.node"):
        svc.create_lv(name="a", device_class="ssd", size_bytes=GiB, tags=[])  # its write not yet done
        assert publisher.resync(svc.capacity) is False
        assert publisher.publish(svc.capacity()) is True  # the pending write lands
        svc.create_lv(name="b", device_class="ssd", size_bytes=GiB, tags=[])  # and the next change's is pending
        assert publisher.resync(svc.capacity) is False  # the annotations moved since: not a lost write
        assert publisher.publish(svc.capacity()) is True
        assert publisher.resync(svc.capacity) is False
    written = cluster.get(resources.NODE, "n1")
    assert written is not None and written.meta.annotations[KEY] == str(8 * GiB)
    assert "rewritten" not in caplog.text


def test_a_lost_write_on_a_busy_node_is_mended_with_lvmds_latest_figures() -> None:
    """lvmd's figures move between the two checks (more changes, their writes lost too): the annotations did not
    move, which is what marks a lost write, so the second check writes what lvmd says then."""
    cluster = kube_memory.InMemoryCluster(clock.ManualClock())
    cluster.add_node("n1")
    svc = memory_lvmd.started(10 * GiB)
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    publisher.publish(svc.capacity())
    svc.create_lv(name="a", device_class="ssd", size_bytes=GiB, tags=[])  # write lost
    assert publisher.resync(svc.capacity) is False
    svc.create_lv(name="b", device_class="ssd", size_bytes=2 * GiB, tags=[])  # write lost too
    assert publisher.resync(svc.capacity) is True
    mended = cluster.get(resources.NODE, "n1")
    assert mended is not None and mended.meta.annotations[KEY] == str(7 * GiB)


def test_the_resync_thread_writes_nothing_once_shutdown_began() -> None:
    """topolvm-node's resync loop: lvmd answering after shutdown began (the process then closes its API client)
    ends the loop without a write, even for a mismatch already seen once."""
    from topolvm.cmd import node as node_cmd

    cluster = kube_memory.InMemoryCluster(clock.ManualClock())
    cluster.add_node("n1")
    svc = memory_lvmd.started(10 * GiB)
    publisher = node.CapacityPublisher(node_name="n1", cluster=cluster)
    publisher.publish(svc.capacity())
    svc.create_lv(name="a", device_class="ssd", size_bytes=GiB, tags=[])  # its write lost
    assert publisher.resync(svc.capacity) is False  # the mismatch seen once: the next check would rewrite
    stop = threading.Event()
    answered = threading.Event()

    class SlowLvmd:
        def capacity(self) -> model.NodeCapacity:
            stop.set()  # shutdown begins while lvmd is being asked
            answered.set()
            return svc.capacity()

    thread = node_cmd.start_capacity_resync(0.01, publisher, SlowLvmd(), stop)  # type: ignore[arg-type]
    assert thread is not None
    thread.join(10)
    assert answered.is_set() and not thread.is_alive()
    kept = cluster.get(resources.NODE, "n1")
    assert kept is not None and kept.meta.annotations[KEY] == str(10 * GiB)
    assert publisher.resync(svc.capacity) is True  # without the shutdown, that check would have rewritten it
