"""simulator/fidelity.py on its own: the sequential trace, the simulator's outcome of it, and the comparison of
two outcomes (tests/e2e/test_fidelity.py compares the simulator's to the real control plane's)."""

from __future__ import annotations

import dataclasses

import pytest

from simulator import fidelity, trace
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
