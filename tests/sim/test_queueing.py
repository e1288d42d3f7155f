"""kube-scheduler's queueing hints as the simulator models them: which cluster events move a pod that the given
plugins rejected back towards the active queue (simulator.kube_scheduler.queueing)."""

from __future__ import annotations

import dataclasses

import pytest

from simulator.kube_scheduler import api
from simulator.kube_scheduler import queueing as q
from tests.sim import test_simulation
from topolvm.core import resources, workloads

E = q.Event
OWN = ("default", "data-0")
OTHER = ("default", "data-1")
GiB = 1 << 30


@pytest.mark.parametrize(
    ("rejectors", "event", "claim", "moves"),
    [
        pytest.param({api.VOLUME_BINDING}, E.PV_ADD_UPDATE, None, True, id="volume-binding-new-pv"),
        pytest.param({api.VOLUME_BINDING}, E.CAPACITY_LIMIT_UP, None, True, id="volume-binding-capacity-grew"),
        pytest.param({api.VOLUME_BINDING}, E.CAPACITY_OTHER, None, False, id="volume-binding-capacity-shrank"),
        pytest.param({api.VOLUME_BINDING}, E.NODE_ANNOTATION, None, False, id="volume-binding-annotation"),
        pytest.param({api.VOLUME_BINDING}, E.PVC_ADD_UPDATE, OWN, True, id="volume-binding-own-claim"),
        pytest.param({api.VOLUME_BINDING}, E.PVC_ADD_UPDATE, OTHER, False, id="volume-binding-other-claim"),
        pytest.param({api.VOLUME_BINDING}, E.ASSIGNED_POD_DELETE, None, False, id="volume-binding-pod-gone"),
        pytest.param({api.NODE_RESOURCES_FIT}, E.ASSIGNED_POD_DELETE, None, True, id="fit-pod-gone"),
        pytest.param({api.NODE_RESOURCES_FIT}, E.PV_ADD_UPDATE, None, False, id="fit-new-pv"),
        pytest.param({api.NODE_UNSCHEDULABLE}, E.NODE_SCHEDULABLE, None, True, id="uncordoned"),
        pytest.param({api.NODE_UNSCHEDULABLE}, E.NODE_UNSCHEDULABLE, None, False, id="cordoned"),
        pytest.param({api.EXTENDER}, E.NODE_ANNOTATION, None, True, id="extender-annotation"),
        pytest.param({api.EXTENDER}, E.PVC_DELETE, None, True, id="extender-any-event"),
        pytest.param(set(), E.NODE_ADD, None, False, id="no-plugin-is-never-parked"),
    ],
)
def test_an_event_moves_a_pod_only_when_a_plugin_that_rejected_it_says_it_may_help(
    rejectors: set[str], event: q.Event, claim: tuple[str, str] | None, moves: bool
) -> None:
    moved_by = q.requeued_by(frozenset(rejectors), [(event, claim)], frozenset({OWN}))
    assert moved_by is (event if moves else None)


def test_a_node_update_is_told_apart_by_what_changed() -> None:
    node = resources.Node(resources.Meta(name="n0", labels={"a": "1"}), resources.NodeSpec(unschedulable=True))
    annotated = dataclasses.replace(node, meta=dataclasses.replace(node.meta, annotations={"capacity": "1"}))
    assert q.node_changes(node, annotated) == [E.NODE_ANNOTATION]
    uncordoned = dataclasses.replace(node, spec=resources.NodeSpec(unschedulable=False))
    assert q.node_changes(node, uncordoned) == [E.NODE_SCHEDULABLE]
    assert q.node_changes(uncordoned, node) == [E.NODE_UNSCHEDULABLE]


def capacity(size: int | None, maximum: int | None = None) -> workloads.CSIStorageCapacity:
    return workloads.CSIStorageCapacity(resources.Meta(name="c"), "sc", {}, size, maximum)


def test_a_capacity_update_helps_only_when_the_volume_limit_grows() -> None:
    assert q.capacity_change(None, capacity(1)) is E.CAPACITY_ADD
    assert q.capacity_change(capacity(1), capacity(2)) is E.CAPACITY_LIMIT_UP
    assert q.capacity_change(capacity(2), capacity(1)) is E.CAPACITY_OTHER
    # maximumVolumeSize, when set, is the limit: more capacity under the same maximum helps no claim
    assert q.capacity_change(capacity(1, 5), capacity(9, 5)) is E.CAPACITY_OTHER


VOLUME_BINDING_EVENTS = {
    "PersistentVolume/Add|Update",
    "CSIStorageCapacity/Add",
    "CSIStorageCapacity/Update(larger volume limit)",
    "UnschedulableTimeout",
}


@pytest.mark.parametrize("mode", ["extender", "capacity-tracking"])
def test_the_pod_no_node_can_take_is_moved_back_by_the_events_its_rejecting_plugin_registered(mode: str) -> None:
    """The five-node run's 500 GiB pod fits nowhere; a 10 GiB pod comes after it. Turned down by the extender
    (no hints), the big one is moved back by that pod's events of every kind, its claim's updates first; turned
    down by VolumeBinding (CSIStorageCapacity), only by the new PV, a CSIStorageCapacity that grew, or the
    5-minute flush."""
    data = test_simulation.with_tie_break("extender")
    data["scheduler"]["mode"] = mode
    ops = [*test_simulation.OPS, test_simulation.pod(600, "p7", 10 * GiB)]
    result = test_simulation.simulate(data, ops)
    moved = result.summary["scheduling"]["moved_back_by"]
    if mode == "extender":
        assert "PersistentVolumeClaim/Add|Update" in moved
    else:
        assert set(moved) <= VOLUME_BINDING_EVENTS and "PersistentVolume/Add|Update" in moved
    assert {d.pod[1] for d in result.decisions} == {"p1", "p2", "p3", "p4", "p5", "p7"}
