"""simulator/fidelity.py on its own: the sequential trace, the simulator's outcome of it, and the comparison of
two outcomes (tests/e2e/test_fidelity.py compares the simulator's to the real control plane's)."""

from __future__ import annotations

import dataclasses

import pytest

from simulator import chi_square, fidelity, trace
from tests.e2e import test_fidelity as e2e

GiB = 1 << 30


def test_the_trace_is_seeded_and_mixes_every_kind_of_event() -> None:
    ops = fidelity.sequential_trace(e2e.SEED, 72 * GiB, e2e.SHAPE)
    assert [trace.encode(o) for o in ops] == [
        trace.encode(o) for o in fidelity.sequential_trace(e2e.SEED, 72 * GiB, e2e.SHAPE)
    ]
    kinds = {type(o) for o in ops}
    assert kinds == {trace.CreatePod, trace.DeletePod, trace.ExpandClaim, trace.AddNode}
    assert [o.t for o in ops] == [(i + 1) * e2e.SHAPE.gap for i in range(len(ops))]


def test_the_simulated_decisions_are_unique_and_agree_with_themselves() -> None:
    _, simulated = e2e.simulate()
    assert all(len(simulated.tied[key]) == 1 for key, node in simulated.nodes.items() if node)
    assert simulated.unplaced == 2  # the two pods too large for any node
    assert set(simulated.free) == {(n, "ssd") for n in e2e.INITIAL | e2e.LATE}
    agreement = fidelity.compare(simulated, simulated)
    assert agreement.ok and agreement.same_node == agreement.claims == agreement.unique and not agreement.mismatches


def test_after_a_tied_pick_went_elsewhere_nothing_later_is_compared() -> None:
    first, second = ("ns", "c1"), ("ns", "c2")
    simulated = fidelity.Outcome({first: "a", second: "a"}, {first: ("a", "b"), second: ("a",)}, {("a", "ssd"): 1}, 0)
    real = fidelity.Outcome({first: "b", second: "c"}, {}, {("a", "ssd"): 5}, 1)
    agreement = fidelity.compare(simulated, real)
    assert agreement.ok and (agreement.claims, agreement.compared, agreement.diverged_at) == (2, 1, "ns/c1")
    assert agreement.mismatches == ()


def test_a_pick_among_tied_nodes_agrees_but_is_not_the_same_node() -> None:
    key = ("ns", "c")
    simulated = fidelity.Outcome({key: "a"}, {key: ("a", "b")}, {("a", "ssd"): 1}, 0)
    real = fidelity.Outcome({key: "b"}, {}, {("a", "ssd"): 1}, 0)
    agreement = fidelity.compare(simulated, real)
    assert agreement.ok and (agreement.same_node, agreement.in_tied_set, agreement.unique) == (0, 1, 0)
    assert agreement.diverged_at == "ns/c"
    moved = dataclasses.replace(real, nodes={key: "c"}, free={("a", "ssd"): 2}, unplaced=1)
    agreement = fidelity.compare(simulated, moved)
    assert not agreement.ok
    assert agreement.mismatches == (
        "claim ns/c: simulated a (tied ['a', 'b']), real c",
        "a ssd: 1 free bytes simulated, 2 real",
        "pods never placed: 0 simulated, 1 real",
    )


def test_tied_picks_that_always_go_one_way_fail_the_distribution_test() -> None:
    """Every pick in its tied set, but the real plane put all 30 claims on one node where the simulator spread
    them over two: chi-square homogeneity (simulator/chi_square.py) of 30/0 against 15/15 rejects it."""
    keys = [("ns", f"c{i}") for i in range(30)]
    simulated = fidelity.Outcome({k: "ab"[i % 2] for i, k in enumerate(keys)}, dict.fromkeys(keys, ("a", "b")), {}, 0)
    real = fidelity.Outcome(dict.fromkeys(keys, "a"), {}, {}, 0)
    agreement = fidelity.compare(simulated, real)
    assert agreement.in_tied_set == agreement.compared
    assert agreement.distribution.statistic == pytest.approx(20.0)  # expected 22.5 and 7.5 per row: 2 x (2.5 + 7.5)
    assert agreement.distribution.p_value < fidelity.P_THRESHOLD
    assert not agreement.same_distribution and not agreement.ok
    assert fidelity.compare(simulated, simulated).same_distribution


def test_the_tie_trace_deletes_every_pod_before_the_next() -> None:
    ops = fidelity.tie_trace(3, e2e.SHAPE)
    assert [type(o).__name__ for o in ops] == ["CreatePod", "DeletePod"] * 3
    assert [o.name for o in ops] == ["tie000", "tie000", "tie001", "tie001", "tie002", "tie002"]
    assert all(o.delete_claims for o in ops if isinstance(o, trace.DeletePod))
    assert [o.t for o in ops] == [(i + 1) * e2e.SHAPE.gap for i in range(6)]


def test_simulated_ties_on_equal_nodes_are_random_only_where_the_extender_leaves_them() -> None:
    """The tie trace on four equal nodes: every decision ties on all four. Left to kube-scheduler with the
    extender's scores (``tie-break: scheduler``), the simulator's picks spread over all of them, the same way at
    each seed count (homogeneous with a uniform draw); broken by the extender, or by kube-scheduler's score heap
    without an extender, every pod goes to one node."""
    ops = fidelity.tie_trace(e2e.TIE_PODS, dataclasses.replace(e2e.SHAPE, late_nodes=()))
    runs = [e2e.simulate_ops(ops, "both", "scheduler", seed, e2e.TIE_NODES) for seed in range(1, 11)]
    assert all(set(tied) == set(e2e.TIE_NODES) for r in runs for tied in r.tied.values())
    pooled = fidelity.pooled_per_node(runs)
    assert set(pooled) == set(e2e.TIE_NODES) and sum(pooled.values()) == 10 * e2e.TIE_PODS
    uniform = dict.fromkeys(e2e.TIE_NODES, 10 * e2e.TIE_PODS // 4)
    assert chi_square.homogeneity(uniform, pooled).p_value >= fidelity.P_THRESHOLD_RANDOM
    assert len({tuple(sorted(r.per_node().items())) for r in runs}) > 1  # the seed draws the picks
    for mode, tie_break in (("both", "extender"), ("capacity-tracking", "extender")):
        fixed = e2e.simulate_ops(ops, mode, tie_break, 1, e2e.TIE_NODES)
        assert len(fixed.per_node()) == 1, (mode, fixed.per_node())


def test_random_picks_are_tested_against_the_tie_model_at_their_threshold() -> None:
    """36 picks, each tied on four nodes: the tie model expects 9 per node. Spread picks fit at
    P_THRESHOLD_RANDOM; picks that always take one node, or only two of the four, do not; a pick outside the
    tied set cannot fit at all."""
    nodes = ("a", "b", "c", "d")
    keys = [("ns", f"c{i}") for i in range(36)]
    simulated = fidelity.Outcome({k: nodes[i % 4] for i, k in enumerate(keys)}, dict.fromkeys(keys, nodes), {}, 0)

    def agreement(picks: list[str]) -> fidelity.Agreement:
        real = fidelity.Outcome(dict(zip(keys, picks, strict=True)), {}, {}, 0)
        return fidelity.compare(simulated, real, tie_model=True, threshold=fidelity.P_THRESHOLD_RANDOM)

    spread = agreement(["a"] * 11 + ["b"] * 7 + ["c"] * 8 + ["d"] * 10)
    assert spread.reference_per_node == dict.fromkeys(nodes, pytest.approx(9.0))
    assert (spread.distribution.test, spread.distribution.dof) == ("goodness of fit", 3)
    assert spread.distribution.statistic == pytest.approx(10 / 9)
    assert spread.same_distribution and spread.ok and spread.threshold == fidelity.P_THRESHOLD_RANDOM
    one, two = agreement(["a"] * 36), agreement(["a"] * 18 + ["b"] * 18)
    assert one.distribution.p_value < 1e-15 and two.distribution.p_value < 1e-6
    assert not one.same_distribution and not two.same_distribution and not one.ok
    outside = agreement(["a"] * 35 + ["z"])
    assert outside.distribution.p_value == 0.0 and not outside.ok


def test_the_tie_model_expects_one_over_the_tied_set_and_skips_claims_the_simulator_did_not_place() -> None:
    simulated = fidelity.Outcome(
        {("ns", "u"): "a", ("ns", "t"): "a", ("ns", "never"): None}, {("ns", "t"): ("a", "b", "c")}, {}, 1
    )
    real = fidelity.Outcome({("ns", "u"): "a", ("ns", "t"): "c", ("ns", "never"): "b", ("ns", "new"): "b"}, {}, {}, 0)
    observed, expected = fidelity.tie_expectation(simulated, real)
    assert observed == {"a": 1, "c": 1}
    assert expected == {"a": pytest.approx(4 / 3), "b": pytest.approx(1 / 3), "c": pytest.approx(1 / 3)}


def test_reference_runs_are_pooled_and_an_empty_reference_is_not_the_default() -> None:
    key = ("ns", "c")
    runs = [fidelity.Outcome({key: node}, {key: ("a", "b")}, {}, 0) for node in "aab"]
    real = fidelity.Outcome({key: "b"}, {}, {}, 0)
    pooled = fidelity.compare(runs[0], real, reference=runs)
    assert pooled.reference_per_node == {"a": 2.0, "b": 1.0} and pooled.distribution.test == "homogeneity"
    assert fidelity.compare(runs[0], real).reference_per_node == {"a": 1.0}
    assert fidelity.compare(runs[0], real, reference=[]).reference_per_node == {}
    assert fidelity.compare(runs[0], runs[0]).threshold == fidelity.P_THRESHOLD
