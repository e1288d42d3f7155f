"""InMemoryCluster keeps the API server's semantics: versions, conflicts, finalizers, status, watches."""

from __future__ import annotations

from dataclasses import replace

import pytest

from topolvm import errors
from topolvm.core import resources
from topolvm.kube import memory


def new_lv(name: str = "pvc-1", finalizers: tuple[str, ...] = ()) -> resources.LogicalVolume:
    return resources.LogicalVolume(
        resources.Meta(name=name, finalizers=finalizers),
        resources.LogicalVolumeSpec(name=name, node_name="n1", size=1 << 30, device_class="ssd"),
    )


def test_create_assigns_uid_and_version_and_refuses_duplicates() -> None:
    c = memory.InMemoryCluster()
    lv = c.create_logical_volume(lv=new_lv())
    assert lv.meta.uid and lv.meta.resource_version
    with pytest.raises(errors.AlreadyExists):
        c.create_logical_volume(lv=new_lv())


def test_stale_writes_conflict() -> None:
    c = memory.InMemoryCluster()
    lv = c.create_logical_volume(lv=new_lv())
    fresh = c.update_logical_volume(lv=replace(lv, meta=lv.meta.with_finalizer("x")))
    with pytest.raises(errors.Conflict):
        c.update_logical_volume(lv=replace(lv, spec=replace(lv.spec, size=2 << 30)))
    with pytest.raises(errors.Conflict):
        c.update_logical_volume_status(lv=replace(lv, status=resources.LogicalVolumeStatus(volume_id="v")))
    assert c.get_logical_volume(name="pvc-1") == fresh


def test_status_and_spec_are_written_separately() -> None:
    c = memory.InMemoryCluster()
    lv = c.create_logical_volume(lv=new_lv())
    with_status = c.update_logical_volume_status(
        lv=replace(lv, status=resources.LogicalVolumeStatus(volume_id="v1"), spec=replace(lv.spec, size=1))
    )
    assert with_status.status.volume_id == "v1" and with_status.spec.size == 1 << 30  # spec ignored
    grown = c.update_logical_volume(
        lv=replace(with_status, spec=replace(lv.spec, size=2 << 30), status=resources.LogicalVolumeStatus())
    )
    assert grown.spec.size == 2 << 30 and grown.status.volume_id == "v1"  # status kept


def test_finalizers_hold_deletion() -> None:
    c = memory.InMemoryCluster()
    events: list[resources.Event] = []
    c.create_logical_volume(lv=new_lv(finalizers=("topolvm.io/logicalvolume",)))
    c.watch_logical_volumes(events.append)
    c.delete_logical_volume(name="pvc-1")
    held = c.get_logical_volume(name="pvc-1")
    assert held is not None and held.meta.deleting
    c.update_logical_volume(lv=replace(held, meta=held.meta.without_finalizer("topolvm.io/logicalvolume")))
    assert c.get_logical_volume(name="pvc-1") is None
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    with pytest.raises(errors.NotFound):
        c.delete_logical_volume(name="pvc-1")


def test_watch_replays_then_follows_and_stops_when_closed() -> None:
    c = memory.InMemoryCluster()
    c.create_logical_volume(lv=new_lv("a"))
    seen: list[tuple[str, str]] = []
    sub = c.watch_logical_volumes(lambda e: seen.append((e.type, e.object.name)))
    c.create_logical_volume(lv=new_lv("b"))
    c.delete_logical_volume(name="b")  # no finalizers: gone at once
    sub.close()
    c.create_logical_volume(lv=new_lv("c"))
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "b")]


def test_nodes_annotations_and_finalizers() -> None:
    c = memory.InMemoryCluster()
    node = c.add_node("n1", annotations={"capacity.topolvm.io/ssd": "100"})
    updated = c.update_node(node=replace(node, meta=replace(node.meta.with_finalizer("topolvm.io/node"))))
    with pytest.raises(errors.Conflict):
        c.update_node(node=node)
    c.remove_node("n1")
    held = c.get_node(name="n1")
    assert held is not None and held.meta.deleting and held.meta.resource_version != updated.meta.resource_version
    c.update_node(node=replace(held, meta=held.meta.without_finalizer("topolvm.io/node")))
    assert c.list_nodes() == []
