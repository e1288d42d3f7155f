"""The kube-scheduler model's score plugins and selectHost, against numbers computed by hand from v1.37.2's
formulas (every node has 4000m cpu and 8 GiB memory unless the case says otherwise)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from simulator.kube_scheduler import api, fake, model, scores
from tests.sim.kube_cluster import GiB, cluster, load, node, pod, req, taint
from topolvm.core import workloads

Tol = workloads.Toleration
Op = workloads.Operator
FIT, BAL, TT, NA, VB, EXT = (
    api.NODE_RESOURCES_FIT,
    api.BALANCED_ALLOCATION,
    api.TAINT_TOLERATION,
    api.NODE_AFFINITY,
    api.VOLUME_BINDING,
    api.EXTENDER,
)


def test_least_allocated_uses_non_zero_defaults_for_pods_without_requests() -> None:
    ks = cluster(3)
    load(ks, "n1")  # counted as 100m / 200 MiB
    load(ks, "n2", cpu=2000, memory=4 * GiB)
    result = ks.schedule(pod(), explain=True)
    # n0: cpu (4000-100)*100/4000 = 97; memory (8192-200)*100/8192 MiB = 97 -> 97
    # n1: (4000-200)*100/4000 = 95; (8192-400)*100/8192 = 95 -> 95
    # n2: (4000-2100)*100/4000 = 47; (8192-4296)*100/8192 = 47 -> 47
    assert {n: b[FIT] for n, b in result.breakdown.items()} == {"n0": 97, "n1": 95, "n2": 47}
    assert all(BAL not in b for b in result.breakdown.values())  # skipped for a best-effort pod
    assert result.scores == {"n0": 397, "n1": 395, "n2": 347}
    assert result.node == "n0"


def test_balanced_allocation_scores_the_change_in_balance() -> None:
    ks = cluster(2)
    load(ks, "n1", cpu=2000, memory=GiB)
    result = ks.schedule(pod(cpu=1000, memory=4 * GiB), explain=True)
    # n0: with the pod 0.25/0.5 -> std 0.125 -> 87; without 0/0 -> 100; 50 + (50+87-100)/2 = 68
    #     LeastAllocated (3000*100/4000=75 + 4*100/8=50) / 2 = 62
    # n1: with 0.75/0.625 -> 93; without 0.5/0.125 -> 81; 50 + (50+93-81)/2 = 81
    #     LeastAllocated (1000*100/4000=25 + 3*100/8=37) / 2 = 31
    assert result.breakdown["n0"] == {TT: 300, FIT: 62, BAL: 68}
    assert result.breakdown["n1"] == {TT: 300, FIT: 31, BAL: 81}
    assert result.node == "n0"


@pytest.mark.parametrize(
    ("tolerations", "expected"),
    [
        # untolerated PreferNoSchedule taints 0, 2, 1 -> reversed normalisation 100, 0, 50 -> x3
        pytest.param((), {"n0": 300, "n1": 0, "n2": 150}, id="none"),
        pytest.param((Tol("a", Op.EXISTS, effect="NoSchedule"),), {"n0": 300, "n1": 0, "n2": 150}, id="hard-only"),
        # counts 0, 1, 0 -> 100, 0, 100
        pytest.param((Tol("a", Op.EXISTS),), {"n0": 300, "n1": 0, "n2": 300}, id="tolerates-a"),
        pytest.param((Tol("", Op.EXISTS),), {"n0": 300, "n1": 300, "n2": 300}, id="tolerates-all"),
    ],
)
def test_taint_toleration_score(tolerations: tuple[Tol, ...], expected: dict[str, int]) -> None:
    soft = "PreferNoSchedule"
    ks = cluster(
        [node("n0"), node("n1", taints=[taint("a", soft), taint("b", soft)]), node("n2", taints=[taint("a", soft)])]
    )
    result = ks.schedule(pod(tolerations=tolerations), explain=True)
    assert {n: b[TT] for n, b in result.breakdown.items()} == expected


def test_node_affinity_score_normalises_preferred_weights() -> None:
    labels = [{"zone": "a"}, {}, {"disk": "ssd"}, {"zone": "a", "disk": "ssd"}]
    ks = cluster([node(f"n{i}", labels=label) for i, label in enumerate(labels)])
    preferred = (
        workloads.PreferredTerm(10, (req("zone", "In", "a"),)),
        workloads.PreferredTerm(30, (req("disk", "In", "ssd"),)),
        workloads.PreferredTerm(0, (req("zone", "Exists"),)),  # weight 0: ignored
    )
    result = ks.schedule(pod(preferred=preferred), explain=True)
    # sums 10, 0, 30, 40 -> 100*sum/40 = 25, 0, 75, 100 -> x2
    assert {n: b[NA] for n, b in result.breakdown.items()} == {"n0": 50, "n1": 0, "n2": 150, "n3": 200}
    assert result.node == "n3"


def volume_cluster(config: api.SchedulerConfig | None = None) -> model.KubeScheduler:
    ks = cluster(4, config=config)
    for name, ssd, hdd, maximum in (("n0", 10, 4, None), ("n1", 20, 8, None), ("n2", 3, 8, None), ("n3", None, 8, 50)):
        ks.set_capacity(name, "ssd", ssd and ssd * GiB, maximum and maximum * GiB)
        ks.set_capacity(name, "hdd", hdd * GiB, None)
    return ks


SSD = api.ClaimView("a", "ssd", 3 * GiB)
HDD = api.ClaimView("b", "hdd", GiB)


@pytest.mark.parametrize(
    ("config", "claims", "expected"),
    [
        # utilisation 3/10 = 30 -> 70; 3/20 = 15 -> 85; 3/3 = 100 -> 0; capacity unset (only maximumVolumeSize) -> 0
        pytest.param(api.SchedulerConfig(), [SSD], {"n0": 70, "n1": 85, "n2": 0, "n3": 0}, id="default-shape"),
        # n0: (70 + 1/4 -> 75) / 2 = 72.5 -> 73; n1: (85 + 1/8 -> 12 -> 88) / 2 = 86.5 -> 87 (math.Round)
        pytest.param(api.SchedulerConfig(), [SSD, HDD], {"n0": 73, "n1": 87, "n2": 44, "n3": 44}, id="two-classes"),
        # two claims of one class: requested 6 GiB against the class capacity: 60 -> 40; 30 -> 70
        pytest.param(api.SchedulerConfig(), [SSD, SSD], {"n0": 40, "n1": 70, "n2": 0, "n3": 0}, id="one-class-summed"),
        pytest.param(
            api.SchedulerConfig(volume_binding_shape=((0, 0), (100, 10))),
            [SSD],
            {"n0": 30, "n1": 15, "n2": 100, "n3": 100},
            id="bin-packing-shape",
        ),
    ],
)
def test_volume_binding_capacity_score(
    config: api.SchedulerConfig, claims: list[api.ClaimView], expected: dict[str, int]
) -> None:
    result = volume_cluster(config).schedule(pod(), claims, explain=True)
    assert {n: b[VB] for n, b in result.breakdown.items()} == expected


def test_volume_binding_score_off_without_storage_capacity_scoring() -> None:
    result = volume_cluster(api.SchedulerConfig(storage_capacity_scoring=False)).schedule(pod(), [SSD], explain=True)
    assert result.breakdown and all(VB not in b for b in result.breakdown.values())


def test_extender_score_is_scaled_by_weight_and_ten() -> None:
    ext = fake.FakeExtender(scores={"n1": 3, "n2": 1})
    result = cluster(3, extender=ext, config=api.SchedulerConfig(extender_weight=5)).schedule(pod(), explain=True)
    assert {n: b[EXT] for n, b in result.breakdown.items()} == {"n0": 0, "n1": 150, "n2": 50}
    assert result.node == "n1"
    assert ext.prioritize_calls == [("n0", "n1", "n2")]
    assert result.scores == {n: sum(b.values()) for n, b in result.breakdown.items()}


# --- selectHost ----------------------------------------------------------------------------------------------------


def test_without_extender_ties_go_to_the_heaps_preorder_first() -> None:
    ks = cluster(5)
    for name in ("n0", "n1", "n4"):
        load(ks, name, cpu=1000)
    result = ks.schedule(pod(cpu=100))
    # heap positions 2 and 3 tie at the top; 3 is a child of 1, so heap.Init lifts it to the root before 2 gets there
    assert result.tied == ("n2", "n3")
    assert result.node == "n3"
    assert cluster(5).schedule(pod()).node == "n0"


def go_heap_pop(totals: list[int]) -> int:
    """container/heap Init then Pop over nodeScoreHeap (TotalScore desc, Randomizer 0): the popped index."""
    h = list(range(len(totals)))

    def less(i: int, j: int) -> bool:
        return totals[h[i]] > totals[h[j]]

    def down(i: int, n: int) -> None:
        while 2 * i + 1 < n:
            j = 2 * i + 1
            if j + 1 < n and less(j + 1, j):
                j += 1
            if not less(j, i):
                return
            h[i], h[j] = h[j], h[i]
            i = j

    for i in range(len(h) // 2 - 1, -1, -1):
        down(i, len(h))
    return h[0]


@pytest.mark.parametrize("seed", range(40))
def test_preorder_rule_matches_go_heap(seed: int) -> None:
    rng = random.Random(seed)
    totals = [rng.randrange(3) for _ in range(rng.randrange(1, 300))]
    chosen, tied = scores.select(np.array(totals, dtype=np.int64), False, rng)
    assert chosen == go_heap_pop(totals)
    assert chosen in tied.tolist()


def test_extender_ties_break_uniformly_with_the_seeded_rng() -> None:
    chosen = set()
    for seed in range(200):
        result = cluster(4, extender=fake.FakeExtender(default_score=5), seed=seed).schedule(pod())
        assert result.tied == ("n0", "n1", "n2", "n3")
        chosen.add(result.node)
    assert chosen == {"n0", "n1", "n2", "n3"}


def test_resources_with_zero_allocatable_are_left_out_of_both_scores() -> None:
    ks = cluster([node("n0"), node("n1", cpu=0)])
    load(ks, "n1", memory=4 * GiB)
    result = ks.schedule(pod(memory=GiB), explain=True)
    # n0: LeastAllocated cpu (4000-100)*100/4000 = 97, memory (8192-1024)*100/8192 = 87 -> 92
    #     Balanced: with 0/0.125 -> std 0.0625 -> 93, without 100 -> 50 + (50+93-100)/2 = 71
    # n1: cpu allocatable 0 is left out: memory (8192-5120)*100/8192 = 37 alone; Balanced has one fraction,
    #     std 0 with and without the pod -> 75
    assert result.breakdown["n0"] == {TT: 300, FIT: 92, BAL: 71}
    assert result.breakdown["n1"] == {TT: 300, FIT: 37, BAL: 75}
