"""The simulator and the real control plane agree on the checked-in fidelity trace (docs/fidelity.md):
simulator/traces/fidelity-20-nodes.jsonl, over 500 events on 20 nodes (thick-only nodes on loop-device VGs, thin
nodes whose lvmd runs over in-memory LVM), with both of deploy/'s device classes, node adds and deletes,
expansions and deletions (simulator/fidelity_trace.py made it and says how to make it again).

Each test replays the trace through the real programs (tests/support/replay.py) in one scheduler mode and fails
when the agreement drops below the thresholds below; it writes the fidelity view of the simulator's HTML report
(simulator/report_fidelity.py) to ``$FIDELITY_REPORT_DIR`` (else the test's tmp_path), with the real outcome as
``fidelity-<mode>.real.json`` (``topolvm-sim fidelity --real`` draws the view again from it), and prints its figures.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from simulator import fidelity, fidelity_cli, fidelity_trace, report_fidelity, trace
from tests.e2e.scene import Scene
from tests.support.replay import Disks, Replayer

pytestmark = pytest.mark.root

GiB = 1 << 30
# Thresholds: unique decisions and picks within the simulated tied set must all agree; the per-node placements of
# the real run and of the simulator at the trace's seed and the REPEATS seeds, pooled, must pass the chi-square
# homogeneity test at fidelity.P_THRESHOLD (claims of one trace depend on each other, so its p-value is a yardstick
# rather than a calibrated error rate; docs/fidelity.md); free bytes and failures must be equal unless a tied pick
# made the clusters diverge.
UNIQUE_AGREEMENT = 1.0
TIED_AGREEMENT = 1.0
REPEATS = (1, 2, 3, 4, 5)  # simulator seeds: kube-scheduler's random tie-breaks, if any, draw from them
MODES = {"both": "extender and Storage Capacity Tracking (deploy/)", "capacity-tracking": "Storage Capacity Tracking"}


# make test replays the whole trace in both modes (about 11 minutes each on 2 cores: docs/fidelity.md, "Runtime")
def disks() -> dict[str, Disks]:
    return {n: Disks((s.vg_gib * GiB,), s.pool_gib * GiB) for n, s in fidelity_trace.NODES.items()}


def replay(scene: Scene, ops: list[trace.Op]) -> tuple[fidelity.Outcome, dict[str, float]]:
    """The real plane's outcome, and what it took: wall seconds for the initial Nodes and for the events, and
    how many batches of deletions and expansions (tests/support/replay.py) the events went in."""
    replayer = Replayer(scene.stack, scene.ns, scene.tag, disks())
    start = time.monotonic()
    replayer.start()
    for node in fidelity_trace.INITIAL:
        replayer.add_node(node)
    nodes = time.monotonic()
    batches = replayer.replay(ops)
    spent = {"nodes": nodes - start, "events": time.monotonic() - nodes, "batches": batches}
    return replayer.outcome(), spent | {"expansions skipped": len(replayer.skipped)}


def mended(scene: Scene) -> int:
    """How often the session's node agents logged a capacity resync that rewrote their annotations so far."""
    logs = scene.stack.cluster.workdir.glob("topolvm-node-*.log")
    return sum(path.read_text(errors="replace").count("capacity annotations were") for path in logs)


def seeds(mode: str, ops: list[trace.Op]) -> list[fidelity.Outcome]:
    """The simulator's outcomes at every seed of REPEATS, pooled by the distribution test."""
    return [fidelity.simulated(fidelity_trace.simulate(mode, ops, seed), ops) for seed in REPEATS]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_the_real_plane_agrees_with_the_simulator_on_the_scale_trace(scene: Scene, mode: str, tmp_path: Path) -> None:
    if mode == "capacity-tracking":
        scene.skip_webhook()  # kube-scheduler never asks the extender: VolumeBinding decides by CSIStorageCapacity
    ops = fidelity_trace.load()
    assert sum(isinstance(op, trace.CreatePod | trace.DeletePod | trace.ExpandClaim) for op in ops) >= 500
    simulated = fidelity.simulated(fidelity_trace.simulate(mode, ops), ops)
    mended_before = mended(scene)
    began = time.monotonic()
    # Without an extender ties are frequent: with one filter goroutine kube-scheduler breaks them as the model does
    with scene.one_filter_worker() if mode == "capacity-tracking" else contextlib.nullcontext():
        real, spent = replay(scene, ops)
    seconds = time.monotonic() - began
    rewrites = mended(scene) - mended_before
    agreement = fidelity.compare(simulated, real, reference=[simulated, *seeds(mode, ops)])
    distribution = agreement.distribution
    out = Path(os.environ.get("FIDELITY_REPORT_DIR") or tmp_path)
    facts = [
        ("trace", f"{fidelity_trace.TRACE.name}: {len(ops)} events"),
        ("scheduler mode", MODES[mode]),
        ("real-plane replay, wall seconds", round(seconds, 1)),
        (f"chi-square p against the simulator at the trace's seed and seeds {list(REPEATS)}", distribution.p_value),
        ("capacity annotations topolvm-node's resync had to mend (a lost write)", rewrites),
    ]
    page = report_fidelity.write(agreement, simulated, real, out / f"fidelity-{mode}.html", title=mode, facts=facts)
    # the real outcome, for `topolvm-sim fidelity --real` to compare and draw again without a cluster
    kept = fidelity_cli.dump(real, mode=mode, path=out / f"fidelity-{mode}.real.json")
    assert fidelity_cli.load(str(kept)) == (mode, real)
    print(f"fidelity ({mode}): {agreement.as_dict()}")
    print(f"fidelity ({mode}): replay {seconds:.0f} s, per kind {spent}; pooled {distribution}; view {page};"
          f" annotations mended by the resync: {rewrites}; again: topolvm-sim fidelity --real {kept}")  # fmt: skip
    assert agreement.ok, "\n".join(agreement.mismatches)
    tied = agreement.compared - agreement.unique
    assert agreement.unique_same >= UNIQUE_AGREEMENT * agreement.unique
    assert agreement.in_tied_set - agreement.unique_same >= TIED_AGREEMENT * tied
    assert distribution.p_value >= fidelity.P_THRESHOLD
    assert agreement.claims >= 300 and agreement.unplaced[0] >= 10  # the trace's 311 claims and 12 too-large pods
    assert spent["expansions skipped"] == 0  # only a claim on a deleted node is skipped: the worlds differed
    assert rewrites == 0  # every capacity change reached the annotations by itself (docs/fidelity.md)
    # no tie went elsewhere: every claim compared, free bytes and failures equal
    assert not agreement.diverged_at and agreement.same_node == agreement.compared == agreement.claims
    assert agreement.vgs_equal == agreement.vgs and agreement.unplaced[0] == agreement.unplaced[1]
    scene.delete_all()
