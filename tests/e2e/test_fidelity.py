"""The simulator and the real control plane agree on the same trace (docs/fidelity.md).

One seeded trace (simulator/fidelity.py's ``sequential_trace``: pods of one or two thick claims, deletions,
expansions, a node added halfway, pods no node can hold) is run by the simulator and replayed, event by settled
event, through the real programs (tests/support/replay.py): kube-scheduler with our extender and deploy/'s
Storage Capacity Tracking, csi-provisioner, csi-resizer, our controller and node agents on kwok Nodes.

The nodes have distinct sizes and the extender breaks its own ties (deploy/'s ``tie-break: extender`` at weight
200), so every decision is unique: each claim must land on the same node in both worlds, each VG must end with
the same free bytes, and the same pods must fail to schedule. With ``tie-break: scheduler`` (the last test) some
decisions are random ties of kube-scheduler's: the real pick must lie in the simulated tied set.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from simulator import fidelity, run, scenario
from tests.e2e.scene import Scene
from tests.support.replay import Disks, Replayer

pytestmark = pytest.mark.root

GiB = 1 << 30
SEED = 11
INITIAL = {"n10": 10, "n12": 12, "n14": 14, "n16": 16, "n20": 20}  # node -> its one disk, GiB
LATE = {"n18": 18}


def _pool(node: str, gib: int, count: int) -> dict[str, Any]:
    return {
        "name": f"pool-{node}",
        "count": count,
        "node-names": [node],
        "cpu": "1000",  # kwok's default Node: 1k CPUs, 1 TiB (tests/support/cluster.py)
        "memory": "1Ti",
        "volume-groups": [{"name": "vg", "disks": [f"{gib}Gi"]}],
        "lvmd": {"device-classes": [{"name": "ssd", "volume-group": "vg", "default": True, "spare-gb": 0}]},
    }


SHAPE = fidelity.TraceShape(late_nodes=tuple((f"pool-{n}", n) for n in LATE))
SCENARIO: dict[str, Any] = {
    "name": "fidelity-thick",
    "seed": SEED,
    "sample-interval": "1m",
    "latencies": {"watch": "0s", "reconcile": "0s", "lvm-command": "0s", "scheduling-cycle": "0s", "provisioner": "0s"},
    "cluster": {
        "node-pools": [_pool(n, g, 1) for n, g in INITIAL.items()] + [_pool(n, g, 0) for n, g in LATE.items()],
        "storage-classes": [{"name": SHAPE.storage_class, "fstype": "xfs"}],
    },
    # deploy/ as shipped: the extender and Storage Capacity Tracking; CSIStorageCapacity refreshed well within an
    # event's gap (the real csi-provisioner refreshes a node's right after provisioning or deleting there)
    "scheduler": {"mode": "both", "capacity-poll-interval": "10s"},
}


def simulate(
    mode: str = "both", shape: fidelity.TraceShape = SHAPE, tie_break: str = "extender", seed: int = SEED
) -> tuple[list[Any], fidelity.Outcome]:
    ops = fidelity.sequential_trace(SEED, sum(INITIAL.values()) * GiB, shape)
    data = copy.deepcopy(SCENARIO)
    data["seed"] = seed  # the trace stays SEED's; the seed draws the simulated kube-scheduler's random picks
    data["scheduler"]["mode"] = mode
    data["scheduler"]["extender"] = {"tie-break": tie_break}
    data["duration"] = f"{int(fidelity.duration_of(ops, shape.gap))}s"
    result = run.simulate(scenario.parse(data, "fidelity"), replay=ops)
    assert result.error is None, result.error
    assert result.summary["workload_errors"] == []
    return ops, fidelity.simulated(result, ops)


def replay(scene: Scene, ops: list[Any]) -> fidelity.Outcome:
    """The trace on the real plane: the initial Nodes, then every event, each awaited (tests/support/replay.py)."""
    disks = {n: Disks((g * GiB,)) for n, g in (INITIAL | LATE).items()}
    replayer = Replayer(scene.stack, scene.ns, scene.tag, disks)
    replayer.start()
    for node in INITIAL:
        replayer.add_node(node)
    for op in ops:
        replayer.apply(op)
    return replayer.outcome()


def test_the_real_plane_places_every_claim_where_the_simulator_does(scene: Scene) -> None:
    ops, simulated = simulate()
    assert all(len(tied) == 1 for tied in simulated.tied.values() if tied)  # no ties: every decision unique
    agreement = fidelity.compare(simulated, replay(scene, ops))
    print("fidelity:", agreement.as_dict())
    assert agreement.ok, "\n".join(agreement.mismatches)
    assert agreement.same_node == agreement.claims == agreement.unique
    assert agreement.unplaced[0] >= 2  # the trace's pods too large for any node
    scene.delete_all()


def test_capacity_tracking_alone_agrees_until_a_tie_goes_elsewhere(scene: Scene) -> None:
    """Pods of a namespace the webhook skips: kube-scheduler never asks the extender, and VolumeBinding filters
    and scores (StorageCapacityScoring) by the CSIStorageCapacity objects alone, which the replayer lets catch up
    with each VG after every event. Its scores tie more often: a real pick inside the simulated tied set agrees,
    and once it differs from the simulated pick the clusters differ and the rest is not compared."""
    scene.skip_webhook()
    shape = dataclasses.replace(SHAPE, events=16)
    ops, simulated = simulate("capacity-tracking", shape)
    agreement = fidelity.compare(simulated, replay(scene, ops))
    print("fidelity (capacity tracking):", agreement.as_dict())
    assert agreement.ok, "\n".join(agreement.mismatches)
    assert agreement.compared >= 5
    scene.delete_all()


def test_random_ties_left_to_kube_scheduler_land_in_the_tied_set(scene: Scene) -> None:
    """The extender with ``tie-break: scheduler`` (restarted so for this test): where several nodes share the top
    total score, kube-scheduler's selectHost picks one at random. The real pick must lie in the simulated tied
    set; once it is not the simulated pick the clusters differ and the rest is not compared. Across simulator
    seeds the tied sets must really be ties (different picks), so the test can tell random from fixed."""
    shape = dataclasses.replace(SHAPE, events=16)
    runs = [simulate("both", shape, tie_break="scheduler", seed=seed) for seed in (1, 2, 3, 4, 5)]
    ops, simulated = runs[0]
    ties = [key for key, tied in simulated.tied.items() if len(tied) > 1]
    assert ties, "the trace has no tie left to kube-scheduler: the test would prove nothing"
    first = ties[0]
    assert len({outcome.nodes.get(first) for _, outcome in runs}) > 1, "the first tie went one way for every seed"
    scene.stack.restart_extender(tie_break="scheduler")
    try:
        agreement = fidelity.compare(simulated, replay(scene, ops))
    finally:
        scene.stack.restart_extender()  # as deploy/ ships it, for the session's other tests
    print("fidelity (tie-break: scheduler):", agreement.as_dict())
    assert agreement.ok, "\n".join(agreement.mismatches)
    # every claim up to and including the first tie compared, the tie's real pick within the tied set
    assert agreement.compared >= list(simulated.nodes).index(first) + 1
    assert agreement.in_tied_set == agreement.compared and agreement.unique_same == agreement.unique
    scene.delete_all()
