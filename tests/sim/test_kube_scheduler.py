"""The kube-scheduler model's cycle: filters, failure messages, extender filtering, sampling and walk order.

Expectations are computed by hand from kube-scheduler v1.37.2's code (the comments show the arithmetic).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from simulator.kube_scheduler import api, fake, filters, podinfo, reference
from tests.sim.kube_cluster import GiB, MiB, cluster, load, node, pod, req, taint
from topolvm.core import resources, workloads

Tol = workloads.Toleration
Op = workloads.Operator
LABELS = {
    "n0": {"disk": "ssd", "gen": "3"},
    "n1": {"disk": "hdd", "gen": "5"},
    "n2": {"gen": "x"},
    "n3": {"disk": "ssd", "gen": "7"},
    "n4": {},
}


def labelled() -> list[resources.Node]:
    return [node(name, labels=labels) for name, labels in LABELS.items()]


@pytest.mark.parametrize(
    ("p", "feasible", "reason"),
    [
        pytest.param(pod(node_selector={"disk": "ssd"}), {"n0", "n3"}, api.REASON_AFFINITY, id="node-selector"),
        pytest.param(pod(required=((req("disk", "In", "ssd", "hdd"),),)), {"n0", "n1", "n3"}, None, id="in"),
        pytest.param(pod(required=((req("disk", "NotIn", "ssd"),),)), {"n1", "n2", "n4"}, None, id="not-in-absent-ok"),
        pytest.param(pod(required=((req("disk", "Exists"),),)), {"n0", "n1", "n3"}, None, id="exists"),
        pytest.param(pod(required=((req("disk", "DoesNotExist"),),)), {"n2", "n4"}, None, id="does-not-exist"),
        pytest.param(pod(required=((req("gen", "Gt", "4"),),)), {"n1", "n3"}, None, id="gt-skips-non-integers"),
        pytest.param(pod(required=((req("gen", "Lt", "5"),),)), {"n0"}, None, id="lt"),
        pytest.param(pod(required=((req("gen", "Gt", "x"),),)), set(), None, id="gt-invalid-value-matches-nothing"),
        pytest.param(
            pod(required=((req("disk", "In", "ssd"), req("gen", "Gt", "4")), (req("gen", "In", "x"),))),
            {"n2", "n3"},
            None,
            id="terms-ored-expressions-anded",
        ),
        pytest.param(
            pod(node_selector={"disk": "ssd"}, required=((req("gen", "Lt", "5"),),)),
            {"n0"},
            None,
            id="selector-and-terms",
        ),
    ],
)
def test_node_affinity_filter(p: workloads.Pod, feasible: set[str], reason: str | None) -> None:
    ks = cluster(labelled())
    result = ks.schedule(p)
    chosen = {result.node} if result.node else set()
    assert chosen <= feasible
    assert set(result.scores) == (feasible if len(feasible) > 1 else set())
    expected = {api.REASON_AFFINITY: 5 - len(feasible)} if len(feasible) < 5 else {}
    assert result.failures == expected


NO_SCHEDULE = taint("dedicated", value="db")


@pytest.mark.parametrize(
    ("tolerations", "tolerated"),
    [
        pytest.param((), False, id="none"),
        pytest.param((Tol("dedicated", Op.EQUAL, "db"),), True, id="equal"),
        pytest.param((Tol("dedicated", Op.EQUAL, "web"),), False, id="equal-other-value"),
        pytest.param((Tol("dedicated", Op.EXISTS),), True, id="exists"),
        pytest.param((Tol("", Op.EXISTS),), True, id="empty-key-exists-tolerates-all"),
        pytest.param((Tol("dedicated", Op.EXISTS, effect="NoExecute"),), False, id="other-effect"),
        pytest.param((Tol("dedicated", Op.EXISTS, effect="NoSchedule"),), True, id="same-effect"),
        pytest.param((Tol("dedicated", Op.GT, "1"),), False, id="gt-needs-alpha-gate"),
    ],
)
def test_taint_filter(tolerations: tuple[Tol, ...], tolerated: bool) -> None:
    ks = cluster([node("n0", taints=[NO_SCHEDULE, taint("soft", "PreferNoSchedule")]), node("n1", cpu=100)])
    result = ks.schedule(pod(cpu=500, tolerations=tolerations))
    if tolerated:
        assert result.node == "n0"
        assert result.scores == {}  # n1 lacks cpu: one feasible node, no scoring
    else:
        assert result.node is None
        assert result.message == "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s)."


@pytest.mark.parametrize(
    ("tolerations", "schedulable"),
    [
        pytest.param((), False, id="cordoned"),
        pytest.param((Tol(podinfo.UNSCHEDULABLE_TAINT_KEY, Op.EXISTS, effect="NoSchedule"),), True, id="tolerated"),
        pytest.param((Tol(podinfo.UNSCHEDULABLE_TAINT_KEY, Op.EXISTS, effect="NoExecute"),), False, id="wrong-effect"),
    ],
)
def test_unschedulable_filter(tolerations: tuple[Tol, ...], schedulable: bool) -> None:
    ks = cluster([node("n0", unschedulable=True, taints=[NO_SCHEDULE])])
    result = ks.schedule(pod(tolerations=tolerations))
    # NodeUnschedulable runs before TaintToleration: a cordoned node is reported as unschedulable only.
    expected = api.REASON_TAINT if schedulable else api.REASON_UNSCHEDULABLE
    assert result.failures == {expected: 1}


@pytest.mark.parametrize(
    ("p", "node_kwargs", "loads", "reasons"),
    [
        pytest.param(pod(cpu=3001), {}, [{"cpu": 1000}], {api.REASON_CPU: 1}, id="cpu"),
        pytest.param(pod(cpu=3000), {}, [{"cpu": 1000}], {}, id="cpu-exact-fit"),
        pytest.param(pod(memory=7 * GiB + 1), {}, [{"memory": GiB}], {api.REASON_MEMORY: 1}, id="memory"),
        pytest.param(
            pod(cpu=3500, memory=8 * GiB + 1), {}, [{"cpu": 1000}], {api.REASON_CPU: 1, api.REASON_MEMORY: 1}, id="both"
        ),
        # init containers: max(sum of containers, any init container) = max(100, 3500)
        pytest.param(pod(cpu=100, init=[{"cpu": 3500}]), {}, [{"cpu": 1000}], {api.REASON_CPU: 1}, id="init-max"),
        pytest.param(pod(cpu=100, init=[{"cpu": 2900}]), {}, [{"cpu": 1000}], {}, id="init-fits"),
        pytest.param(pod(), {"pods": 1}, [{}], {api.REASON_TOO_MANY_PODS: 1}, id="pods-count"),
        pytest.param(pod(), {"pods": 2}, [{}], {}, id="pods-count-room"),
        # pods without requests pass any cpu/memory check (the non-zero defaults are for scoring only)
        pytest.param(pod(), {"cpu": 0, "memory": 0}, [], {}, id="no-requests-no-allocatable"),
    ],
)
def test_resources_filter(
    p: workloads.Pod, node_kwargs: dict[str, int], loads: list[dict[str, int]], reasons: dict[str, int]
) -> None:
    ks = cluster([node("n0", **node_kwargs)])
    for extra in loads:
        load(ks, "n0", **extra)
    result = ks.schedule(p)
    assert result.failures == reasons
    assert (result.node is None) == bool(reasons)
    if reasons:
        parts = ", ".join(sorted(f"{c} {r}" for r, c in reasons.items()))
        assert result.message == f"0/1 nodes are available: {parts}."


def test_failure_message_counts_and_sorts_every_reason() -> None:
    nodes = [
        node("n0", unschedulable=True),
        node("n1", unschedulable=True),
        node("n2", taints=[NO_SCHEDULE]),
        node("n3", cpu=1000, memory=GiB),
        node("n4", memory=GiB),
    ]
    result = cluster(nodes).schedule(pod(cpu=2000, memory=2 * GiB))
    assert result.node is None
    # n3 lacks both cpu and memory and counts for both; strings sort byte-wise ("I" < "n")
    assert result.message == (
        "0/5 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint(s), "
        "2 Insufficient memory, 2 node(s) were unschedulable."
    )
    assert result.evaluated == 5


def test_extender_failures_are_counted_and_unresolvable_wins() -> None:
    ext = fake.FakeExtender(
        failed={"n0": "node(s) have no room", "n1": "node(s) have no room"}, unresolvable={"n1": "no such device class"}
    )
    nodes = [node("n0"), node("n1"), node("n2", taints=[NO_SCHEDULE])]
    result = cluster(nodes, extender=ext).schedule(pod())
    assert ext.filter_calls == [("n0", "n1")]
    assert result.message == (
        "0/3 nodes are available: 1 no such device class, 1 node(s) had untolerated taint(s), 1 node(s) have no room."
    )


def test_extender_is_asked_only_about_pods_with_its_resource() -> None:
    ext = fake.FakeExtender(failed={"n0": "full"})
    ks = cluster(3, extender=ext)
    result = ks.schedule(pod(topolvm=False))
    assert ext.filter_calls == [] and ext.prioritize_calls == []
    assert result.node in {"n0", "n1", "n2"}


def test_single_feasible_node_skips_prioritize() -> None:
    ext = fake.FakeExtender(failed={"n0": "full", "n1": "full", "n3": "full"}, scores={"n2": 10})
    result = cluster(4, extender=ext).schedule(pod())
    assert result.node == "n2"
    assert result.scores == {} and result.tied == ("n2",)
    assert (result.evaluated, result.feasible) == (4, 1)
    assert ext.filter_calls == [("n0", "n1", "n2", "n3")]
    assert ext.prioritize_calls == []


# --- volumes ---------------------------------------------------------------------------------------------------


def claim(size: int = GiB, **kwargs: object) -> api.ClaimView:
    storage_class = str(kwargs.pop("storage_class", "ssd"))
    return api.ClaimView("data", storage_class, size, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("claims", "feasible", "reasons"),
    [
        # capacities: n0 10 GiB, n1 5 GiB with maximumVolumeSize 2 GiB, n2 none, n3 3 GiB, n4 3 GiB
        pytest.param([claim(3 * GiB)], {"n0", "n3", "n4"}, {api.REASON_NOT_ENOUGH_SPACE: 2}, id="capacity"),
        pytest.param([claim(2 * GiB)], {"n0", "n1", "n3", "n4"}, {api.REASON_NOT_ENOUGH_SPACE: 1}, id="max-size"),
        # each claim is checked alone: two 3 GiB claims both fit a 3 GiB node
        pytest.param(
            [claim(3 * GiB), claim(3 * GiB)], {"n0", "n3", "n4"}, {api.REASON_NOT_ENOUGH_SPACE: 2}, id="alone"
        ),
        pytest.param(
            [claim(100 * GiB, provisioner_has_capacity_tracking=False)],
            {"n0", "n1", "n2", "n3", "n4"},
            {},
            id="untracked",
        ),
        pytest.param([claim(bound_node="n3")], {"n3"}, {api.REASON_PV_NODE_AFFINITY: 4}, id="bound-pins"),
        pytest.param(
            [claim(bound_node="n2"), claim(GiB)],
            set(),
            {api.REASON_PV_NODE_AFFINITY: 4, api.REASON_NOT_ENOUGH_SPACE: 1},
            id="bound-and-no-space",
        ),
        pytest.param(
            [claim(9 * GiB, selected_node="n1")],
            set(),
            {api.REASON_BIND_CONFLICT: 4, api.REASON_NOT_ENOUGH_SPACE: 1},
            id="selected",
        ),
        pytest.param([claim(storage_class="hdd")], set(), {api.REASON_NOT_ENOUGH_SPACE: 5}, id="no-capacity-objects"),
    ],
)
def test_volume_binding_filter(claims: list[api.ClaimView], feasible: set[str], reasons: dict[str, int]) -> None:
    ks = cluster(5)
    for name, cap, maximum in (("n0", 10, None), ("n1", 5, 2), ("n3", 3, None), ("n4", 3, None)):
        ks.set_capacity(name, "ssd", cap * GiB, maximum and maximum * GiB)
    result = ks.schedule(pod(), claims)
    assert result.failures == reasons
    assert (set(result.scores) or ({result.node} if result.node else set())) == feasible
    np.testing.assert_array_equal(
        reference.feasible_by_loop(ks, pod(), claims), [n in feasible for n in ("n0", "n1", "n2", "n3", "n4")]
    )


def test_unbound_immediate_claim_fails_in_prefilter() -> None:
    ks = cluster(5)
    result = ks.schedule(pod(), [claim(wait_for_first_consumer=False)])
    assert result.message == "0/5 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    assert ks.next_start_index == 0  # PreFilter failures return before the index moves


@pytest.mark.parametrize(
    ("node_name", "cpu", "message"),
    [
        pytest.param("n3", 100, None, id="fits"),
        pytest.param(
            "n3",
            9000,
            "0/5 nodes are available: 1 Insufficient cpu, 4 node(s) didn't satisfy plugin(s) [NodeName].",
            id="no-fit",
        ),
        pytest.param(
            "gone", 100, "0/5 nodes are available: 5 node(s) didn't satisfy plugin(s) [NodeName].", id="missing"
        ),
    ],
)
def test_node_name_prefilter(node_name: str, cpu: int, message: str | None) -> None:
    result = cluster(5).schedule(pod(cpu=cpu, node_name=node_name))
    assert result.node == (None if message else node_name)
    assert result.message == (message or "")


# --- sampling and walk order -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "percentage", "expected"),
    [
        pytest.param(50, 0, 50, id="50-all-below-100"),
        pytest.param(100, 0, 100, id="100"),  # 50% of 100 = 50, raised to the minimum 100
        pytest.param(1000, 0, 420, id="1000"),  # 50 - 1000/125 = 42%
        pytest.param(5000, 0, 500, id="5000"),  # 50 - 40 = 10%
        pytest.param(50000, 0, 2500, id="50000"),  # 50 - 400 < 5: 5%
        pytest.param(1000, 30, 300, id="configured-30"),
        pytest.param(200, 10, 100, id="configured-at-least-100"),
    ],
)
def test_num_feasible_nodes_to_find(nodes: int, percentage: int, expected: int) -> None:
    assert api.num_feasible_nodes_to_find(percentage, nodes) == expected


def test_start_index_rotates_by_nodes_processed() -> None:
    # 300 nodes, the first 50 tainted. 300 -> 48% -> 144 to find. The first cycle walks n000..n193: 50 rejected,
    # 144 feasible; the 145th feasible node (n194) stops the walk and is not counted.
    nodes = [node(f"n{i:03}", taints=[NO_SCHEDULE] if i < 50 else []) for i in range(300)]
    ks = cluster(nodes)
    first = ks.schedule(pod())
    assert (first.evaluated, first.feasible, ks.next_start_index) == (194, 144, 194)
    assert first.failures == {api.REASON_TAINT: 50}
    assert sorted(first.scores) == [f"n{i:03}" for i in range(50, 194)]
    # The second cycle starts at n194, wraps around after n299 and skips the tainted n000..n049 on its way.
    second = ks.schedule(pod())
    assert sorted(second.scores) == sorted([f"n{i:03}" for i in range(194, 300)] + [f"n{i:03}" for i in range(50, 88)])
    assert (second.evaluated, ks.next_start_index) == (194, (194 + 194) % 300)


def test_zones_interleave_in_the_walk_and_reorder_only_on_add_or_remove() -> None:
    zone = "topology.kubernetes.io/zone"
    ks = cluster([node("a1", labels={zone: "a"}), node("a2", labels={zone: "a"}), node("b1", labels={zone: "b"})])
    assert ks.node_order() == ["a1", "b1", "a2"]
    ks.set_node(node("a2", labels={zone: "c"}))  # a label update: the snapshot list is not rebuilt
    assert ks.node_order() == ["a1", "b1", "a2"]
    ks.set_node(node("b2", labels={zone: "b"}))
    assert ks.node_order() == ["a1", "b1", "a2", "b2"]  # zones a, b, c: a1 b1 a2 / b2
    ks.remove_node("a1")
    assert ks.node_order() == ["b1", "a2", "b2"]  # zone a is gone: b, c


def test_same_seed_same_choices() -> None:
    def run(seed: int) -> list[str]:
        ks = cluster(20, extender=fake.FakeExtender(default_score=5), seed=seed)
        out = []
        for i in range(30):
            result = ks.schedule(pod(f"p{i}", cpu=100, memory=64 * MiB))
            assert result.node is not None
            ks.add_pod(pod(f"p{i}", cpu=100, memory=64 * MiB), result.node)
            out.append(result.node)
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_vectorised_filter_matches_the_per_node_loop() -> None:
    rng = random.Random(3)
    nodes = []
    for i in range(300):
        taints = [NO_SCHEDULE] if rng.random() < 0.2 else []
        labels = {"disk": rng.choice(["ssd", "hdd"])} if rng.random() < 0.7 else {}
        nodes.append(
            node(f"n{i}", cpu=rng.choice([1000, 4000]), labels=labels, taints=taints, unschedulable=rng.random() < 0.1)
        )
    ks = cluster(nodes)
    for i in range(300):
        load(ks, f"n{i}", cpu=rng.choice([0, 500, 900]))
        ks.set_capacity(f"n{i}", "ssd", rng.choice([GiB, 5 * GiB]), None)
    p = pod(cpu=200, node_selector={"disk": "ssd"}, tolerations=(Tol("dedicated", Op.EXISTS),))
    claims = [claim(2 * GiB)]
    entry = ks.static.get(podinfo.constraints_of(p))
    evaluator = filters.Evaluator(ks.table, ks.capacity, entry, podinfo.pod_requests(p), filters.plan_volumes(claims))
    vectorised = evaluator.ok(np.arange(300))
    assert vectorised.tolist() == reference.feasible_by_loop(ks, p, claims)
    assert 0 < vectorised.sum() < 300
