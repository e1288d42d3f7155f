"""The checked-in fidelity trace (simulator/fidelity_trace.py, docs/fidelity.md): what it holds, that its
command makes it again, and what the simulator does with it in both scheduler modes (the real plane's side is
tests/e2e/test_fidelity_scale.py)."""

from __future__ import annotations

import collections

import pytest

from simulator import fidelity, fidelity_trace, trace

OPS = fidelity_trace.load()


def test_the_trace_has_500_claim_and_pod_events_on_20_nodes_of_two_classes() -> None:
    kinds = collections.Counter(type(op).__name__ for op in OPS)
    assert kinds["CreatePod"] + kinds["DeletePod"] + kinds["ExpandClaim"] >= 500
    assert min(kinds["CreatePod"], kinds["DeletePod"], kinds["ExpandClaim"]) >= 50
    assert kinds["AddNode"] == 4 and kinds["FailNode"] == 2 and kinds["DrainNode"] == 2
    assert len(fidelity_trace.NODES) == 20
    assert {n for n, s in fidelity_trace.NODES.items() if s.pool_gib} == {f"t{i:02d}" for i in range(1, 11)}
    classes = {c.storage_class for op in OPS if isinstance(op, trace.CreatePod) for c in op.claims}
    assert classes == {fidelity_trace.THICK_SC, fidelity_trace.THIN_SC}
    assert [op.t for op in OPS] == [(i + 1) * fidelity_trace.GAP for i in range(len(OPS))]


@pytest.mark.slow
def test_the_documented_command_makes_the_checked_in_trace_again(tmp_path) -> None:
    out = tmp_path / "trace.jsonl"
    assert fidelity_trace.main(["--seed", str(fidelity_trace.SEED), "--events", "520", "--out", str(out)]) == 0
    assert out.read_bytes() == fidelity_trace.TRACE.read_bytes()


@pytest.mark.parametrize("mode", ["both", "capacity-tracking"])
def test_the_simulator_replays_it_and_deletes_only_empty_nodes(mode: str) -> None:
    result = fidelity_trace.simulate(mode, OPS)
    assert result.summary["workload_errors"] == []
    outcome = fidelity.simulated(result, OPS)
    huge = sum(1 for op in OPS if isinstance(op, trace.CreatePod) and op.name.startswith("huge-"))
    assert outcome.unplaced == huge >= 10  # exactly the pods no node can hold
    failed_at = {op.name: op.t for op in OPS if isinstance(op, trace.FailNode)}
    deleted_at = {op.name: op.t for op in OPS if isinstance(op, trace.DeletePod)}
    for decision in result.decisions:  # every pod of a deleted node was deleted before it
        if decision.node in failed_at and decision.chosen_at < failed_at[decision.node]:
            assert deleted_at[decision.pod[1]] < failed_at[decision.node], decision
    assert {node for node, _ in outcome.free} == set(fidelity_trace.NODES) - set(failed_at)
    assert {cls for _, cls in outcome.free} == {fidelity_trace.THICK_CLASS, fidelity_trace.THIN_CLASS}
    ties = sum(len(t) > 1 for t in outcome.tied.values())
    assert (ties == 0) == (mode == "both")  # deploy/'s extender breaks its own ties; kube-scheduler alone ties
    assert fidelity.compare(outcome, outcome).ok
