"""Whole simulations on small clusters, their decisions checked against hand-computed expectations.

Five nodes of equal CPU and memory with one VG each — two of 400 GiB, one of 200, 100 and 50 GiB, no spare —
and the extender in spread mode (divisor 1, weight 200): a node's extender score is
``clamp(int(log2(free GiB)), 1, 10)``: 8 for 390..400 GiB, 7 for 200, 6 for 100, 5 for 50. kube-scheduler's own
plugins tie on empty, identical nodes; once a node runs a pod, LeastAllocated and BalancedAllocation prefer
the other. Ties of the extender's score: with ``tie-break: extender`` (the default) the node with the most free
bytes, then the first by name, keeps the top score and kube-scheduler takes it; with ``tie-break: scheduler``
kube-scheduler picks among the tied nodes at random.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from simulator import run, scenario, trace
from topolvm.core import resources, workloads

GiB = 1 << 30
BIG = ("big-00000", "big-00001")


def pool(name: str, count: int, disk: str) -> dict[str, Any]:
    return {
        "name": name,
        "count": count,
        "cpu": "8",
        "memory": "32Gi",
        "volume-groups": [{"name": "vg", "disks": [disk]}],
        "lvmd": {"device-classes": [{"name": "ssd", "volume-group": "vg", "default": True, "spare-gb": 0}]},
    }


FIVE: dict[str, Any] = {
    "name": "five",
    "seed": 7,
    "duration": "1h",
    "sample-interval": "10m",
    "latencies": {"watch": "0s", "reconcile": "0s", "lvm-command": "0s", "scheduling-cycle": "0s", "provisioner": "0s"},
    "cluster": {
        "node-pools": [
            pool("big", 2, "400Gi"),
            pool("mid", 1, "200Gi"),
            pool("small", 1, "100Gi"),
            pool("tiny", 1, "50Gi"),
        ],
        "storage-classes": [{"name": "sc", "device-class": "ssd"}],
    },
    "scheduler": {"mode": "extender", "extender": {"mode": "spread", "weight": 200}},
}


def pod(t: float, name: str, size: int) -> trace.CreatePod:
    return trace.CreatePod(
        t=t, namespace="default", name=name, claims=[trace.Claim(name=f"{name}-data", storage_class="sc", size=size)]
    )


OPS: list[trace.Op] = [
    pod(60, "p1", 10 * GiB),  # ties between the two big nodes
    pod(120, "p2", 10 * GiB),  # the other big node: its CPU and memory are free
    pod(180, "p3", 300 * GiB),  # only the big nodes (390 GiB) pass; they tie again
    pod(240, "p4", 300 * GiB),  # only one big node still has 300 GiB: the filter leaves one, no scoring
    pod(300, "p5", 150 * GiB),  # only the 200 GiB node passes
    pod(360, "p6", 500 * GiB),  # nowhere
]


def simulate(data: dict[str, Any], ops: list[trace.Op] | None = None, **kwargs: Any) -> run.Result:
    result = run.simulate(scenario.parse(copy.deepcopy(data), "test"), replay=ops, **kwargs)
    assert result.error is None, result.error
    return result


def by_pod(result: run.Result) -> dict[str, Any]:
    return {d.pod[1]: d for d in result.decisions}


def with_tie_break(tie_break: str) -> dict[str, Any]:
    data = copy.deepcopy(FIVE)
    data["scheduler"]["extender"]["tie-break"] = tie_break
    return data


@pytest.mark.parametrize("tie_break", ["extender", "scheduler"])
def test_decisions_on_five_nodes_match_the_hand_computed_ones(tie_break: str) -> None:
    result = simulate(with_tie_break(tie_break), OPS)
    d = by_pod(result)
    if tie_break == "extender":
        # p1 and p3 tie on the big nodes (same free bytes: the first by name); p2 goes where more is free.
        placed = [(d[p].node, d[p].tied) for p in ("p1", "p2", "p3")]
        assert placed == [(BIG[0], (BIG[0],)), (BIG[1], (BIG[1],)), (BIG[0], (BIG[0],))]
    else:
        assert set(d["p1"].tied) == set(BIG) and d["p1"].node in BIG
        other = BIG[1] if d["p1"].node == BIG[0] else BIG[0]
        assert (d["p2"].node, d["p2"].tied) == (other, (other,))
        assert set(d["p3"].tied) == set(BIG)
    assert d["p4"].node != d["p3"].node and d["p4"].node in BIG  # the lone survivor of the filter
    assert d["p5"].node == "mid-00000"
    assert "p6" not in d
    assert all(x.bound_at is not None for x in d.values())
    summary = result.summary
    assert summary["pods"]["created"] == 6 and summary["pods"]["bound"] == 5
    assert summary["pods"]["failed"] == 1  # p6 waits past the 5-minute SLO
    assert summary["scheduling"]["reasons"] == {"out of VG free space": 5 * summary["scheduling"]["failed_attempts"]}


def test_the_unschedulable_pod_says_why_as_kube_scheduler_does() -> None:
    result = simulate(FIVE, OPS)
    assert result.summary["pods"]["pending_at_end"] == 1
    assert result.summary["time_to_exhaustion_s"] == pytest.approx(360, abs=1)


@pytest.mark.parametrize(("tie_break", "expected"), [("scheduler", set(BIG)), ("extender", {BIG[0]})])
def test_ties_are_broken_at_random_by_the_seed_unless_the_extender_breaks_them(
    tie_break: str, expected: set[str]
) -> None:
    data = with_tie_break(tie_break)
    chosen = {by_pod(simulate(dict(data, seed=seed), OPS[:1]))["p1"].node for seed in range(12)}
    assert chosen == expected


def test_the_same_seed_gives_the_same_run() -> None:
    a, b = simulate(FIVE, OPS), simulate(FIVE, OPS)
    assert json.dumps(a.summary, sort_keys=True) == json.dumps(b.summary, sort_keys=True)
    assert a.series == b.series and a.decisions == b.decisions


def test_a_generated_run_is_deterministic_across_processes() -> None:
    """Same seed, same summary.json, whatever the interpreter's hash seed (no decision may depend on set order)."""
    data = copy.deepcopy(FIVE)
    data["duration"] = "3d"
    data["workloads"] = [
        {
            "name": "w",
            "rate": "40/d",
            "lifetime": {"exponential-mean": "1d"},
            "claims": [{"storage-class": "sc", "size": {"lognormal-median": "20Gi", "sigma": 1.0, "max": "300Gi"}}],
        }
    ]
    script = (
        "import json, sys, yaml; from simulator import run, scenario; "
        "r = run.simulate(scenario.parse(yaml.safe_load(sys.stdin.read()))); "
        "print(json.dumps(r.summary, sort_keys=True))"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-c", script], input=json.dumps(data), capture_output=True, text=True, env=env, check=True
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["pods"]["created"] > 50


def test_a_recorded_trace_replays_to_the_same_decisions(tmp_path: Any) -> None:
    data = copy.deepcopy(FIVE)
    data["duration"] = "2d"
    data["workloads"] = [
        {
            "name": "w",
            "rate": "30/d",
            "lifetime": {"exponential-mean": "12h"},
            "claims": [{"storage-class": "sc", "size": {"choice": ["10Gi", "50Gi"]}}],
        }
    ]
    generated = simulate(data, record_trace=True)
    path = tmp_path / "trace.jsonl"
    assert trace.write(path, generated.recorded) == len(generated.recorded) > 10
    replayed = simulate(data, list(trace.read(path)))
    assert [(d.pod, d.node) for d in replayed.decisions] == [(d.pod, d.node) for d in generated.decisions]
    assert replayed.summary["decisions_sha256"] == generated.summary["decisions_sha256"]


def test_capacity_tracking_over_commits_a_node_where_the_extender_does_not() -> None:
    """Three pods of 300 GiB at the same instant; only the two 400 GiB nodes fit one each. CSIStorageCapacity is
    refreshed once a minute, so kube-scheduler also sends the third to a big node, whose volume then fails and
    is rescheduled (upstream #117). The extender's reservations hold the first two pods' bytes back, so the
    third pod is refused at once and nothing is provisioned in vain."""
    burst = [pod(120, "a", 300 * GiB), pod(120, "b", 300 * GiB), pod(120, "c", 300 * GiB)]
    tracked = simulate(dict(FIVE, scheduler={"mode": "capacity-tracking"}), burst)
    assert tracked.summary["provisioner"]["rescheduled"] >= 1
    assert len([d for d in tracked.decisions if d.bound_at is not None]) == 2
    extender = simulate(FIVE, burst)
    assert extender.summary["provisioner"]["rescheduled"] == 0
    bound = {d.pod[1]: d.node for d in extender.decisions if d.bound_at is not None}
    assert len(bound) == 2 and set(bound.values()) == set(BIG)
    assert extender.summary["pods"]["pending_at_end"] == 1


def test_with_both_as_deploy_ships_them_a_pod_is_refused_by_either_check() -> None:
    """mode both: kube-scheduler's VolumeBinding needs a CSIStorageCapacity with room, then the extender filters.
    The burst above: the extender refuses the third pod at once, as alone. Then a stale CSIStorageCapacity: a's
    deletion at t=130 frees its big node's annotation at once, but the object says 100 GiB until the next poll
    (t=180); c (300 GiB, t=131) waits for it, where the extender alone places it at once."""
    both = dict(FIVE, scheduler={"mode": "both", "extender": {"mode": "spread", "weight": 200}})
    burst = [pod(120, "a", 300 * GiB), pod(120, "b", 300 * GiB), pod(120, "c", 300 * GiB)]
    refused = simulate(both, burst)
    assert refused.summary["mode"] == "both" and refused.summary["provisioner"]["rescheduled"] == 0
    assert len([d for d in refused.decisions if d.bound_at is not None]) == 2
    stale: list[trace.Op] = [
        pod(70, "a", 300 * GiB),
        pod(75, "b", 300 * GiB),
        trace.DeletePod(t=130, namespace="default", name="a"),
        pod(131, "c", 300 * GiB),
    ]
    waited, alone = simulate(both, stale), simulate(FIVE, stale)
    assert by_pod(waited)["c"].bound_at >= 180 > 140 > by_pod(alone)["c"].bound_at
    assert "node(s) did not have enough free storage" in waited.summary["scheduling"]["reasons"]
    assert alone.summary["scheduling"]["failed_attempts"] == 0


def test_a_failed_node_releases_its_volumes_and_an_added_disk_grows_capacity() -> None:
    data = copy.deepcopy(FIVE)
    ops: list[trace.Op] = [
        pod(60, "p1", 100 * GiB),
        trace.AddDisk(t=120, node="tiny-00000", volume_group="vg", size="400Gi"),
        trace.FailNode(t=180, name="mid-00000"),
        trace.AddNode(t=240, pool="mid"),
    ]
    result = simulate(data, ops)
    assert result.summary["nodes_at_end"] == 5
    last = result.series[-1]
    # 2 x 400 + 200 (the new mid node) + 100 + 450 (tiny with its new disk), minus p1's 100 GiB
    assert last["ssd.size"] == (800 + 200 + 100 + 450) * GiB
    assert last["ssd.used"] == 100 * GiB


def test_expansions_and_thin_snapshots_go_through_the_controller() -> None:
    data = copy.deepcopy(FIVE)
    for p in data["cluster"]["node-pools"]:
        p["thin-pools"] = [{"volume-group": "vg", "name": "pool", "size": "40Gi"}]
        p["lvmd"]["device-classes"].append(
            {
                "name": "thin",
                "volume-group": "vg",
                "type": "thin",
                "thin-pool": {"name": "pool", "overprovision-ratio": 2.0},
            }
        )
    data["cluster"]["storage-classes"].append({"name": "thin", "device-class": "thin"})
    ops: list[trace.Op] = [
        trace.CreatePod(
            t=60,
            namespace="default",
            name="t",
            claims=[trace.Claim(name="t-data", storage_class="thin", size=10 * GiB)],
        ),
        trace.ExpandClaim(t=120, namespace="default", name="t-data", size=15 * GiB),
        trace.Snapshot(t=180, namespace="default", claim="t-data", name="snap-1"),
    ]
    result = simulate(data, ops)
    stats = result.summary["provisioner"]
    assert (stats["provisioned"], stats["expanded"], stats["snapshots"]) == (1, 1, 1)


def test_pods_and_claims_are_what_kubernetes_would_hold() -> None:
    """After a replay the simulated API holds bound claims, PVs with node affinity, webhook-mutated pods."""
    loaded = scenario.parse(copy.deepcopy(FIVE))
    captured: dict[str, Any] = {}
    original = run.world.World.__init__

    def capture(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        captured["world"] = self

    run.world.World.__init__ = capture  # type: ignore[method-assign]
    try:
        result = run.simulate(loaded, replay=OPS[:1])
    finally:
        run.world.World.__init__ = original  # type: ignore[method-assign]
    cluster = captured["world"].cluster
    p1 = cluster.get(workloads.POD, "p1", namespace="default")
    assert p1.spec.node_name == by_pod(result)["p1"].node
    assert p1.meta.annotations["capacity.topolvm.io/ssd"] == str(10 * GiB)
    pvc = cluster.get(workloads.PVC, "p1-data", namespace="default")
    pv = cluster.get(workloads.PV, pvc.spec.volume_name)
    assert pvc.status.phase == "Bound" and pv.spec.node_name == p1.spec.node_name
    lv = cluster.get(resources.LOGICAL_VOLUME, pvc.spec.volume_name)
    assert lv.status.volume_id == pv.spec.volume_handle


def test_a_statefulset_pod_on_a_failed_node_comes_back_elsewhere_with_a_new_claim() -> None:
    """The pod garbage collector deletes the pods of a deleted node; TopoLVM's node cleanup deletes the node's
    claims (as upstream does) and releases its LogicalVolumes; the StatefulSet controller creates the pod again
    with a new claim of the same name, which is provisioned on a live node, and the old PV's volume is deleted."""
    member = trace.CreatePod(
        t=60,
        namespace="default",
        name="db-0",
        owner="db",
        claims=[trace.Claim(name="db-0-data", storage_class="sc", size=10 * GiB)],
    )
    ops: list[trace.Op] = [member, trace.FailNode(t=120, name=BIG[0]), trace.FailNode(t=120, name=BIG[1])]
    result = simulate(FIVE, ops)
    s = result.summary
    assert (s["volumes_lost_with_nodes"], s["pods_recreated"], s["pods"]["pending_at_end"]) == (1, 1, 0)
    assert s["pods"]["created"] == 2 and s["pods"]["bound"] == 2
    assert (s["provisioner"]["provisioned"], s["provisioner"]["deleted"]) == (2, 1)
    first, again = result.decisions
    assert first.node in BIG and again.node not in BIG


@pytest.mark.parametrize("mode", ["extender", "capacity-tracking", "both"])
def test_answering_hopeless_retries_without_a_cycle_changes_no_outcome(mode: str) -> None:
    """A full cluster keeps pods pending and retried on every event; retries that cannot succeed (no node offers
    enough) are answered without running the cycle. The run must come out the same as one that runs them all."""
    data = copy.deepcopy(FIVE)
    data["duration"] = "4d"
    data["scheduler"] = {"mode": mode, "extender": {"weight": 200}}
    data["workloads"] = [
        {
            "name": "w",
            "rate": "60/d",
            "lifetime": {"exponential-mean": "2d"},
            "cpu": "2",
            "claims": [{"storage-class": "sc", "size": {"lognormal-median": "60Gi", "sigma": 0.8, "max": "390Gi"}}],
        }
    ]
    fast = simulate(data)
    slow = simulate(data, settle_hopeless=False)
    assert fast.summary["pods"]["failed"] > 0 and fast.summary["scheduling"]["settled_without_cycle"] > 100
    assert slow.summary["scheduling"]["settled_without_cycle"] == 0
    assert fast.decisions == slow.decisions
    # A settled retry repeats its last real attempt's reasons and rejecting plugins, so only the mix of reasons, and
    # of the events that moved the pod back first, may differ, not their totals.
    a, b = copy.deepcopy(fast.summary), copy.deepcopy(slow.summary)
    reasons_a, reasons_b = a["scheduling"].pop("reasons"), b["scheduling"].pop("reasons")
    a["scheduling"].pop("settled_without_cycle"), b["scheduling"].pop("settled_without_cycle")
    moved_a, moved_b = a["scheduling"].pop("moved_back_by"), b["scheduling"].pop("moved_back_by")
    assert sum(moved_a.values()) == sum(moved_b.values())
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert sum(reasons_a.values()) == sum(reasons_b.values())


def test_thick_snapshots_take_their_source_size_on_its_node() -> None:
    """A thick snapshot is a full copy (lvmd's thick_copy): the simulated VG loses its source's size, on the
    source's node, for as long as the snapshot lives (samples every 600 s)."""
    ops: list[trace.Op] = [
        pod(60, "p1", 100 * GiB),
        trace.Snapshot(t=1000, namespace="default", claim="p1-data", name="snap-1"),
        trace.DeleteSnapshot(t=2000, name="snap-1"),
    ]
    result = simulate(copy.deepcopy(FIVE), ops)
    assert result.summary["provisioner"]["snapshots"] == 1
    used = {row["t"]: row["ssd.used"] for row in result.series}
    assert (used[600], used[1200], used[1800], used[2400]) == (100 * GiB, 200 * GiB, 200 * GiB, 100 * GiB)
