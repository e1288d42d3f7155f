"""The ``Cluster`` port's contract, part one: versions, conflicts, finalizers, status subresources, indexes and
watches, on LogicalVolumes and Nodes — in every world of ``cluster_world`` (in-memory, a real kube-apiserver,
and the informer cache in front of each)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.contract.cluster_world import ClusterWorld, events_of, eventually, next_event
from topolvm import constants, errors
from topolvm.clock import ManualClock
from topolvm.core import resources
from topolvm.services import events

LV = resources.LOGICAL_VOLUME
GiB = 1 << 30


def new_lv(name: str, node: str = "n1", finalizers: tuple[str, ...] = ()) -> resources.LogicalVolume:
    return resources.LogicalVolume(
        resources.Meta(name=name, finalizers=finalizers),
        resources.LogicalVolumeSpec(name=name, node_name=node, size=GiB, device_class="ssd"),
    )


def test_create_assigns_uid_and_version_and_refuses_duplicates(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-a"
    lv = c.create(new_lv(name))
    assert lv.meta.uid and lv.meta.resource_version and lv.meta.creation_timestamp and lv.spec.size == GiB
    assert c.get(LV, name) == lv
    assert name in [x.name for x in c.list_of(LV)]
    with pytest.raises(errors.AlreadyExists):
        c.create(new_lv(name))
    assert c.get(LV, f"{world.prefix}-none") is None


def test_stale_writes_conflict(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-b"
    lv = c.create(new_lv(name))
    fresh = c.update(replace(lv, meta=lv.meta.with_finalizer("x.io/f")))
    with pytest.raises(errors.Conflict):
        c.update(replace(lv, spec=replace(lv.spec, size=2 * GiB)))
    with pytest.raises(errors.Conflict):
        c.update_status(replace(lv, status=resources.LogicalVolumeStatus(volume_id="v")))
    assert c.get(LV, name) == fresh


def test_status_and_spec_are_written_separately(world: ClusterWorld) -> None:
    c = world.cluster
    lv = c.create(new_lv(f"{world.prefix}-c"))
    with_status = c.update_status(
        replace(
            lv, status=resources.LogicalVolumeStatus(volume_id="v1", current_size=GiB), spec=replace(lv.spec, size=1)
        )
    )
    assert with_status.status.volume_id == "v1" and with_status.spec.size == GiB  # spec ignored
    grown = c.update(replace(with_status, spec=replace(lv.spec, size=2 * GiB), status=resources.LogicalVolumeStatus()))
    assert grown.spec.size == 2 * GiB and grown.status.volume_id == "v1"  # status kept


def test_create_drops_status(world: ClusterWorld) -> None:
    lv = world.cluster.create(replace(new_lv(f"{world.prefix}-s"), status=resources.LogicalVolumeStatus(volume_id="x")))
    assert lv.status.volume_id == ""


def test_finalizers_hold_deletion_and_none_can_be_added_meanwhile(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-d"
    c.create(new_lv(name, finalizers=(constants.LOGICAL_VOLUME_FINALIZER,)))
    q, sub = events_of(c, LV)
    try:
        assert next_event(q, name).type == "ADDED"
        c.delete(LV, name)
        held = eventually(lambda: c.get(LV, name), lambda lv: lv is not None and lv.meta.deleting)
        assert held is not None and held.meta.deleting
        assert next_event(q, name).type == "MODIFIED"
        with pytest.raises(errors.InvalidArgument):
            c.update(replace(held, meta=held.meta.with_finalizer("x.io/late")))
        c.update(replace(held, meta=held.meta.without_finalizer(constants.LOGICAL_VOLUME_FINALIZER)))
        assert eventually(lambda: c.get(LV, name), lambda lv: lv is None) is None
        assert next_event(q, name).type in ("MODIFIED", "DELETED")  # the API server may send both
        with pytest.raises(errors.NotFound):
            c.delete(LV, name)
    finally:
        sub.close()


def test_watch_replays_then_follows(world: ClusterWorld) -> None:
    c, a, b = world.cluster, f"{world.prefix}-e1", f"{world.prefix}-e2"
    c.create(new_lv(a))
    q, sub = events_of(c, LV)
    try:
        assert next_event(q, a).type == "ADDED"
        c.create(new_lv(b))
        assert next_event(q, b).type == "ADDED"
        c.delete(LV, b)  # no finalizers: gone at once
        assert next_event(q, b).type == "DELETED"
    finally:
        sub.close()


def test_indexes_by_node_and_by_volume_id(world: ClusterWorld) -> None:
    c, p = world.cluster, world.prefix
    mine = c.create(new_lv(f"{p}-i1", node=f"{p}-n1"))
    c.create(new_lv(f"{p}-i2", node=f"{p}-n2"))
    assert [lv.name for lv in c.list_of(LV, match={resources.BY_NODE: f"{p}-n1"})] == [mine.name]
    assert [lv.name for lv in c.list_of(LV, match={resources.BY_VOLUME_ID: mine.meta.uid})] == [mine.name]
    restored = c.update_status(replace(mine, status=resources.LogicalVolumeStatus(volume_id=f"{p}-old-uid")))
    found = eventually(lambda: c.list_of(LV, match={resources.BY_VOLUME_ID: f"{p}-old-uid"}), lambda lvs: len(lvs) == 1)
    assert [lv.name for lv in found] == [restored.name]  # a restored CR is found by the volumeID it keeps
    with pytest.raises(errors.InvalidArgument):
        c.list_of(LV, match={"no-such-index": "x"})


def test_a_watch_with_match_sees_only_its_node_and_hears_when_an_object_leaves(world: ClusterWorld) -> None:
    c, p = world.cluster, world.prefix
    here, there = f"{p}-w1", f"{p}-w2"
    c.create(new_lv(here, node=f"{p}-a"))
    q, sub = events_of(c, LV, match={resources.BY_NODE: f"{p}-a"})
    try:
        assert next_event(q, here).type == "ADDED"
        c.create(new_lv(there, node=f"{p}-b"))
        moved = c.create(new_lv(f"{p}-w3", node=f"{p}-a"))
        event = q.get(timeout=10)
        assert event.object.name == moved.name and event.type == "ADDED"  # nothing was heard about the b node
        current = c.get(LV, here)
        assert current is not None
        c.update(replace(current, spec=replace(current.spec, node_name=f"{p}-b")))
        assert next_event(q, here).type == "DELETED"
    finally:
        sub.close()


def test_nodes_annotations_taints_allocatable_and_finalizers(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-n1"
    node = world.add_node(name, annotations={"capacity.topolvm.io/ssd": "100", "keep": "x"})
    annotations = {"capacity.topolvm.io/ssd": "90", "capacity.topolvm.io/hdd": "7"}  # "keep" is dropped
    taint = resources.Taint("example.com/dedicated", resources.TaintEffect.NO_SCHEDULE, "db")
    meta = replace(node.meta.with_finalizer(constants.NODE_FINALIZER), annotations=annotations)
    updated = c.update(replace(node, meta=meta, spec=resources.NodeSpec(taints=(taint,))))
    assert updated.meta.annotations == annotations and constants.NODE_FINALIZER in updated.meta.finalizers
    assert updated.spec.taints == (taint,)
    with pytest.raises(errors.Conflict):
        c.update(node)
    allocatable = {"cpu": 3500, "memory": 8 * GiB, "pods": 110}
    with_status = c.update_status(replace(updated, status=resources.NodeStatus(allocatable)))
    assert with_status.status.allocatable == allocatable and with_status.spec.taints == (taint,)
    c.delete(resources.NODE, name)
    held = eventually(lambda: c.get(resources.NODE, name), lambda n: n is not None and n.meta.deleting)
    assert held is not None and held.meta.deleting and held.meta.resource_version != updated.meta.resource_version
    c.update(replace(held, meta=held.meta.without_finalizer(constants.NODE_FINALIZER)))
    assert eventually(lambda: c.get(resources.NODE, name), lambda n: n is None) is None
    assert name not in [n.name for n in c.list_of(resources.NODE)]


def test_events_about_a_logical_volume_round_trip(world: ClusterWorld) -> None:
    """``services.events``' Events: written whole, read back as written, found by the namespace they are put in
    (a cluster-scoped object's go to "default"); one the API refuses is logged, not raised."""
    c = world.cluster
    lv = c.create(new_lv(f"{world.prefix}-ev"))
    recorder = events.EventRecorder(cluster=c, clock=ManualClock(), component="topolvm-node", host="n1")
    ref = events.logical_volume_ref(lv)
    recorder.record(ref, reason="VolumeConditionAbnormal", message="INACCESSIBLE VolumeGroupLost: gone", warning=True)
    [event] = [e for e in c.list_of(resources.CLUSTER_EVENT, namespace="default") if e.involved == ref]
    assert event.name.startswith(f"{lv.name}.") and event.meta.uid
    assert (event.reason, event.message, event.warning, event.count) == (
        "VolumeConditionAbnormal",
        "INACCESSIBLE VolumeGroupLost: gone",
        True,
        1,
    )
    assert (event.component, event.host, event.first_timestamp, event.last_timestamp) == (
        "topolvm-node",
        "n1",
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:00:00Z",
    )
    # The same name again (a clock that did not move) is a conflict: logged, the first Event kept.
    recorder.record(ref, reason="VolumeConditionNormal", message="back", warning=False)
    assert [e.reason for e in c.list_of(resources.CLUSTER_EVENT, namespace="default") if e.involved == ref] == [
        "VolumeConditionAbnormal"
    ]
