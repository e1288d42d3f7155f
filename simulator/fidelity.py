"""Fidelity: the simulator and the real control plane replay the same trace; what each world ended with, and
how far the two agree (docs/fidelity.md).

``sequential_trace`` makes a seeded trace whose events each settle before the next (spaced ``gap`` simulated
seconds; the real replayer, tests/support/replay.py, waits for each to settle), so no outcome depends on how
fast one world is. ``simulated`` reads a simulator run as an ``Outcome``, the real replayer builds one from the
cluster, and ``compare`` puts the two side by side: per claim the node each world chose (the real pick must be
the simulated one where the decision is unique, one of the simulated tied set where kube-scheduler picks at
random), per node and device class the final free bytes, and the count of pods never placed.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from typing import Any

from simulator import chi_square, run, trace

GiB = 1 << 30
P_THRESHOLD = 0.05  # the chi-square homogeneity test of per-node placements fails below this p-value
# ... and below this one where the real plane's placements are random by design (``tie_trace``): a test at level
# alpha fails alpha of good runs, and CI should not fail one run in twenty; docs/fidelity.md has its power
P_THRESHOLD_RANDOM = 0.001
ClaimKey = tuple[str, str]  # (namespace, name)
VgKey = tuple[str, str]  # (node, device class)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one world ended with after a trace."""

    nodes: dict[ClaimKey, str | None]  # claim -> the node its volume went to (None: never placed)
    tied: dict[ClaimKey, tuple[str, ...]]  # claim -> the nodes sharing the top score when it was placed
    free: dict[VgKey, int]  # (node, device class) -> free bytes at the end
    unplaced: int  # pods of the trace never placed

    def per_node(self) -> dict[str, int]:
        """Claims placed per node over the whole trace: the distribution the chi-square test compares."""
        counts: dict[str, int] = {}
        for node in self.nodes.values():
            if node is not None:
                counts[node] = counts.get(node, 0) + 1
        return counts


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Counts over the claims compared: those placed while both worlds still had the same cluster. A real pick
    that differs from the simulated one within a tied set is allowed, but from then on the two clusters differ,
    so later placements, free bytes and failures are not compared (``diverged_at`` names that claim)."""

    claims: int
    compared: int
    same_node: int  # the real pick is the simulated one
    in_tied_set: int  # the real pick is one of the simulated tied set (same_node counts here too)
    unique: int  # compared claims whose simulated decision had no tie
    unique_same: int
    vgs: int
    vgs_equal: int
    unplaced: tuple[int, int]  # (simulated, real)
    diverged_at: str  # "namespace/claim" of the first tied pick that went elsewhere, or ""
    mismatches: tuple[str, ...]
    distribution: chi_square.ChiSquare  # per-node placements, real against the simulator's (``compare``)
    reference_per_node: dict[str, float]  # the simulator's side of that test: counts pooled, or expected
    threshold: float  # the p-value below which the distributions differ

    @property
    def same_distribution(self) -> bool:
        return self.distribution.p_value >= self.threshold

    @property
    def ok(self) -> bool:
        """Every unique decision the same, every pick in its tied set, per-node placements homogeneous (chi-square
        p >= ``threshold``); equal free bytes and failure counts unless a tie made the worlds diverge."""
        return (
            self.same_distribution
            and self.unique_same == self.unique
            and self.in_tied_set == self.compared
            and (bool(self.diverged_at) or (self.vgs_equal == self.vgs and self.unplaced[0] == self.unplaced[1]))
        )

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok, "same_distribution": self.same_distribution}


def compare(
    simulated_: Outcome,
    real: Outcome,
    *,
    reference: Sequence[Outcome] | None = None,
    tie_model: bool = False,
    threshold: float = P_THRESHOLD,
) -> Agreement:
    """Claims in the simulated outcome's order (the trace's), then any only the real one has.

    The distribution test of the real per-node placements: by default chi-square homogeneity against the
    simulator's placements in ``simulated_``, or pooled over ``reference`` (runs of the same trace at other
    seeds); with ``tie_model``, chi-square goodness of fit against what the simulator's model of kube-scheduler's
    random tie-break expects (``tie_expectation``), exact where seeds would only sample it."""
    mismatches: list[str] = []
    claims = list(simulated_.nodes) + [key for key in real.nodes if key not in simulated_.nodes]
    compared = same = in_tied = unique = unique_same = 0
    diverged_at = ""
    for key in claims:
        if diverged_at:
            break
        compared += 1
        sim_node, real_node = simulated_.nodes.get(key), real.nodes.get(key)
        tied = simulated_.tied.get(key, (sim_node,) if sim_node else ())
        if len(tied) <= 1:
            unique += 1
        if sim_node == real_node:
            same += 1
            unique_same += len(tied) <= 1
        if real_node == sim_node or (real_node is not None and real_node in tied):
            in_tied += 1
            if real_node != sim_node:
                diverged_at = f"{key[0]}/{key[1]}"
        else:
            mismatches.append(f"claim {key[0]}/{key[1]}: simulated {sim_node} (tied {list(tied)}), real {real_node}")
    vgs = sorted(set(simulated_.free) | set(real.free))
    equal = 0
    for vg in vgs:
        a, b = simulated_.free.get(vg), real.free.get(vg)
        if a == b:
            equal += 1
        elif not diverged_at:
            mismatches.append(f"{vg[0]} {vg[1]}: {a} free bytes simulated, {b} real")
    if simulated_.unplaced != real.unplaced and not diverged_at:
        mismatches.append(f"pods never placed: {simulated_.unplaced} simulated, {real.unplaced} real")
    return Agreement(
        len(claims), compared, same, in_tied, unique, unique_same, len(vgs), equal,
        (simulated_.unplaced, real.unplaced), diverged_at, tuple(mismatches),
        *_distribution(simulated_, real, reference, tie_model), threshold,
    )  # fmt: skip


def _distribution(
    simulated_: Outcome, real: Outcome, reference: Sequence[Outcome] | None, tie_model: bool
) -> tuple[chi_square.ChiSquare, dict[str, float]]:
    if tie_model:
        observed, expected = tie_expectation(simulated_, real)
        return chi_square.goodness_of_fit(observed, expected), expected
    pooled = pooled_per_node([simulated_] if reference is None else reference)
    return chi_square.homogeneity(pooled, real.per_node()), {node: float(n) for node, n in pooled.items()}


def tie_expectation(simulated_: Outcome, real: Outcome) -> tuple[dict[str, int], dict[str, float]]:
    """The real plane's placements of the claims the simulator placed, per node, and the counts the simulator's
    model expects of them: kube-scheduler picks each node of a claim's tied set with equal probability (a unique
    decision is a tied set of one), so a claim adds 1 / |tied set| to each of its tied nodes."""
    observed: dict[str, int] = {}
    expected: dict[str, float] = {}
    for key, node in real.nodes.items():
        sim_node = simulated_.nodes.get(key)
        tied = simulated_.tied.get(key) or ((sim_node,) if sim_node else ())
        if node is None or not tied:
            continue
        observed[node] = observed.get(node, 0) + 1
        for candidate in tied:
            expected[candidate] = expected.get(candidate, 0.0) + 1.0 / len(tied)
    return observed, expected


def pooled_per_node(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """Claims placed per node, summed over several runs (the simulator at several seeds)."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        for node, count in outcome.per_node().items():
            counts[node] = counts.get(node, 0) + count
    return counts


def simulated(result: run.Result, ops: Iterable[trace.Op]) -> Outcome:
    """A simulator run of ``ops`` as an Outcome: placements from its decisions, free bytes from its last sample."""
    decisions = {d.pod: d for d in result.decisions}
    nodes: dict[ClaimKey, str | None] = {}
    tied: dict[ClaimKey, tuple[str, ...]] = {}
    unplaced = 0
    for op in ops:
        if not isinstance(op, trace.CreatePod):
            continue
        decision = decisions.get((op.namespace, op.name))
        for claim in op.claims:
            key = (op.namespace, claim.name)
            nodes[key] = decision.node if decision else None
            tied[key] = decision.tied if decision else ()
        unplaced += decision is None
    last = max((row[0] for row in result.per_node), default=0.0)
    free = {(node, cls): free for t, node, cls, _, free in result.per_node if t == last}
    return Outcome(nodes, tied, free, unplaced)


@dataclasses.dataclass(frozen=True)
class TraceShape:
    """What ``sequential_trace`` draws from: claim sizes in whole GiB, the share of live bytes it keeps below."""

    events: int = 48
    storage_class: str = "topolvm-provisioner"
    namespace: str = "fidelity"
    sizes_gib: tuple[int, ...] = (1, 2, 3)
    too_large_gib: int = 64  # a claim no node can hold: a pod that fails to schedule in both worlds
    too_large_every: int = 16
    fill: float = 0.5  # live claims stay below this share of all nodes' bytes
    gap: float = 30.0  # simulated seconds between two events
    late_nodes: tuple[tuple[str, str], ...] = ()  # (pool, name) added halfway through


def sequential_trace(seed: int, total_bytes: int, shape: TraceShape) -> list[trace.Op]:
    """A seeded mix of pods (one or two claims), deletions (with claims), expansions (one GiB more) and node
    adds, one event every ``shape.gap`` seconds.

    Live claims stay below ``shape.fill`` of ``total_bytes``, so every pod that can fit finds room on the node
    the extender prefers, whatever CSIStorageCapacity objects csi-provisioner has published by then (their
    refresh after a deletion is a race in the real world; docs/fidelity.md)."""
    rng = random.Random(f"fidelity/{seed}")  # noqa: S311 (a workload, not secrets)
    ops: list[trace.Op] = []
    live: dict[str, list[trace.Claim]] = {}  # placeable pods still there -> their claims
    sizes: dict[str, int] = {}  # claim -> bytes requested
    used = 0
    late = list(shape.late_nodes)
    for i in range(shape.events):
        t = (i + 1) * shape.gap
        ns = shape.namespace
        if late and i == shape.events // 2:
            pool, name = late.pop(0)
            ops.append(trace.AddNode(t=t, pool=pool, name=name))
            continue
        if shape.too_large_every and i % shape.too_large_every == shape.too_large_every // 2:
            name = f"huge-{i:03d}"
            claim = trace.Claim(name=f"{name}-data", storage_class=shape.storage_class, size=shape.too_large_gib * GiB)
            ops.append(trace.CreatePod(t=t, namespace=ns, name=name, claims=[claim]))
            continue
        roll = rng.random()
        if live and roll < 0.2:
            pod = rng.choice(sorted(live))
            used -= sum(sizes.pop(c.name) for c in live.pop(pod))
            ops.append(trace.DeletePod(t=t, namespace=ns, name=pod, delete_claims=True))
            continue
        if live and roll < 0.35 and used + GiB <= shape.fill * total_bytes:
            claim_name = rng.choice(sorted(c.name for claims in live.values() for c in claims))
            sizes[claim_name] += GiB
            used += GiB
            ops.append(trace.ExpandClaim(t=t, namespace=ns, name=claim_name, size=sizes[claim_name]))
            continue
        count = 2 if rng.random() < 0.2 else 1
        wanted = [rng.choice(shape.sizes_gib) * GiB for _ in range(count)]
        if used + sum(wanted) > shape.fill * total_bytes:  # full enough: free some room instead
            pod = rng.choice(sorted(live))
            used -= sum(sizes.pop(c.name) for c in live.pop(pod))
            ops.append(trace.DeletePod(t=t, namespace=ns, name=pod, delete_claims=True))
            continue
        name = f"p{i:03d}"
        claims = [
            trace.Claim(name=f"{name}-d{j}", storage_class=shape.storage_class, size=size)
            for j, size in enumerate(wanted)
        ]
        live[name] = claims
        for c, size in zip(claims, wanted, strict=True):
            sizes[c.name] = size
        used += sum(wanted)
        ops.append(trace.CreatePod(t=t, namespace=ns, name=name, claims=claims))
    return ops


def tie_trace(pods: int, shape: TraceShape) -> list[trace.Op]:
    """Pods of one claim of ``shape.sizes_gib[0]`` GiB, one at a time, each deleted with its claim before the next:
    every decision is made from the same cluster, so on nodes of one shape every pod ties on all of them and the
    picks are independent draws of kube-scheduler's tie-break (tests/e2e/test_fidelity.py, the repeats)."""
    ops: list[trace.Op] = []
    size = shape.sizes_gib[0] * GiB
    for i in range(pods):
        name = f"tie{i:03d}"
        claim = trace.Claim(name=f"{name}-d0", storage_class=shape.storage_class, size=size)
        ops.append(trace.CreatePod(t=(2 * i + 1) * shape.gap, namespace=shape.namespace, name=name, claims=[claim]))
        ops.append(trace.DeletePod(t=(2 * i + 2) * shape.gap, namespace=shape.namespace, name=name))
    return ops


def duration_of(ops: Sequence[trace.Op], gap: float) -> float:
    """Simulated seconds enough for the last event to settle."""
    return (ops[-1].t if ops else 0.0) + 4 * gap
