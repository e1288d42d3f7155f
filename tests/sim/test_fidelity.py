"""The simulated cluster does what a real one would around TopoLVM: the API server's rules for claims, the
node-deletion cleanup, when external-resizer acts.

Runs on the five-node cluster of test_simulation.py (two 400 GiB nodes, then 200, 100 and 50 GiB; no latencies).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from simulator import trace, world
from tests.sim.test_simulation import BIG, FIVE, pod, pool, simulate
from topolvm.core import resources, workloads

GiB = 1 << 30


@pytest.fixture
def worlds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[world.World]]:
    """The worlds of the runs made in the test, to look at the cluster they end with."""
    made: list[world.World] = []
    original = world.World.__init__

    def capture(self: world.World, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(world.World, "__init__", capture)
    yield made


def claim(w: world.World, name: str) -> workloads.PersistentVolumeClaim | None:
    return w.cluster.get(workloads.PVC, name, namespace="default")


def test_an_expansion_of_a_claim_not_bound_yet_waits_until_it_is(worlds: list[world.World]) -> None:
    """The API server refuses a request change before the claim is Bound, and external-resizer acts only on bound
    claims: the expansion is applied once the claim is bound, so the pod is placed, and its volume created, at the
    size it asked for (its webhook-stamped capacity request), and then grown."""
    ops: list[trace.Op] = [
        pod(60, "p1", 10 * GiB),
        trace.ExpandClaim(t=60, namespace="default", name="p1-data", size=15 * GiB),  # while it is Pending
        pod(60, "p6", 500 * GiB),  # fits nowhere: never bound
        trace.ExpandClaim(t=60, namespace="default", name="p6-data", size=600 * GiB),
    ]
    result = simulate(FIVE, ops)
    s = result.summary
    assert s["expansions_deferred"] == 2
    assert (s["provisioner"]["provisioned"], s["provisioner"]["expanded"], s["provisioner"]["rescheduled"]) == (1, 1, 0)
    assert s["workload_errors"] == []
    (w,) = worlds
    p1, p6 = claim(w, "p1-data"), claim(w, "p6-data")
    assert p1 is not None and p6 is not None
    assert (p1.spec.request_bytes, p1.status.phase, p1.status.capacity_bytes) == (15 * GiB, "Bound", 15 * GiB)
    lv = w.cluster.get(resources.LOGICAL_VOLUME, p1.spec.volume_name)
    assert lv is not None and lv.status.current_size == 15 * GiB
    assert (p6.spec.request_bytes, p6.status.phase) == (500 * GiB, "Pending")  # still waiting to be bound


def test_a_failed_nodes_claims_are_deleted_by_topolvms_node_cleanup(worlds: list[world.World]) -> None:
    """topolvm-controller's NodeCleanup deletes the claims of a deleted Node (selected-node annotation, TopoLVM's
    StorageClass) and releases its LogicalVolumes; a pod that is not a StatefulSet's is not created again."""
    ops: list[trace.Op] = [
        pod(60, "p1", 10 * GiB),
        pod(60, "p2", 10 * GiB),
        trace.FailNode(t=120, name=BIG[0]),
        trace.FailNode(t=120, name=BIG[1]),
    ]
    result = simulate(FIVE, ops)
    assert {d.node for d in result.decisions} == set(BIG)
    (w,) = worlds
    assert claim(w, "p1-data") is None and claim(w, "p2-data") is None
    assert w.cluster.list_of(workloads.PVC) == []
    assert w.cluster.list_of(resources.LOGICAL_VOLUME) == []
    s = result.summary
    assert (s["volumes_lost_with_nodes"], s["pods_recreated"], s["pods"]["bound"]) == (2, 0, 2)


def test_a_volume_shows_in_its_nodes_annotation_before_its_pod_is_bound() -> None:
    """With the default latencies. Pod a's 300 GiB volume is created on the only node; the extender holds a's
    request there until the node's annotation drops by it, or a is bound. The annotation changes with the same lvm
    command that makes the volume Ready, so it drops before a is bound: b, 80 ms after a, is refused by the
    extender (out of VG free space) instead of being sent to the node, failing there and being rescheduled."""
    data = copy.deepcopy(FIVE)
    del data["latencies"]
    data["cluster"]["node-pools"] = [pool("one", 1, "400Gi")]
    result = simulate(data, [pod(60, "a", 300 * GiB), pod(60.08, "b", 300 * GiB)])
    s = result.summary
    assert [d.pod[1] for d in result.decisions] == ["a"]
    assert s["provisioner"]["rescheduled"] == 0
    assert set(s["scheduling"]["reasons"]) == {"out of VG free space"}


def test_a_failed_expansion_is_tried_again_at_external_resizers_next_backoff_step(worlds: list[world.World]) -> None:
    """a's expansion fails for want of room (t=120) and external-resizer backs off (1 s doubling, at most 5 min).
    b's deletion at t=1000 frees room; the resizer tries again at its next step (t≈1231), not at the deletion, so
    c, created a second after the deletion, gets the room first — and the expansion fails again."""
    data = copy.deepcopy(FIVE)
    del data["latencies"]
    data["cluster"]["node-pools"] = [pool("one", 1, "400Gi")]
    ops: list[trace.Op] = [
        pod(60, "a", 200 * GiB),
        pod(61, "b", 150 * GiB),
        trace.ExpandClaim(t=120, namespace="default", name="a-data", size=300 * GiB),
        trace.DeletePod(t=1000, namespace="default", name="b"),
        pod(1001, "c", 120 * GiB),
    ]
    result = simulate(data, ops)
    assert [d.pod[1] for d in result.decisions if d.bound_at is not None] == ["a", "b", "c"]
    stats = result.summary["provisioner"]
    assert stats["expanded"] == 0 and stats["expansion_failures"] >= 2
    (w,) = worlds
    a = claim(w, "a-data")
    assert a is not None and (a.spec.request_bytes, a.status.capacity_bytes) == (300 * GiB, 200 * GiB)


def test_a_claim_of_a_class_without_expansion_is_not_grown(worlds: list[world.World]) -> None:
    """The API server's PersistentVolumeClaimResize admission refuses it; the refusal is a workload error."""
    data = copy.deepcopy(FIVE)
    data["cluster"]["storage-classes"] = [{"name": "sc", "device-class": "ssd", "allow-expansion": False}]
    ops: list[trace.Op] = [
        pod(60, "p1", 10 * GiB),
        trace.ExpandClaim(t=120, namespace="default", name="p1-data", size=15 * GiB),
    ]
    result = simulate(data, ops)
    [error] = result.summary["workload_errors"]
    assert "storageclass that provisions the pvc must support resize" in error
    (w,) = worlds
    p1 = claim(w, "p1-data")
    assert p1 is not None and p1.spec.request_bytes == 10 * GiB
