"""The default score plugins that can move a TopoLVM pod, vectorised over the feasible nodes, and selectHost.

Each function takes the feasible nodes' slots (in the order the cycle found them) and returns the plugin's
*normalised, unweighted* score per node, with Go's integer arithmetic (truncating division, int64 conversions
of float64 expressions). Formulas, from kube-scheduler v1.37.2's plugins:

- NodeResourcesFit, LeastAllocated (cpu and memory, weight 1 each), on NonZeroRequested + the pod's non-zero
  request: per resource ``(allocatable - requested) * 100 / allocatable`` (0 when requested > allocatable;
  resources with allocatable 0 are left out), then the weighted mean, truncated.
- NodeResourcesBalancedAllocation, on the real requests: the score with the pod minus the score without it,
  ``50 + (50 + with - without) / 2``, where a score is ``int64((1 - std) * 100)`` and the std of two fractions
  (each capped at 1) is ``|f1 - f2| / 2``. Skipped (0 everywhere) for a pod without cpu and memory requests.
- TaintToleration: untolerated PreferNoSchedule taints, normalised reversed: ``100 - 100 * count / max``.
- NodeAffinity: sum of matching preferred-term weights, normalised ``100 * sum / max``.
- VolumeBinding (StorageCapacityScoring): per storage class of the dynamically provisioned claims, utilisation
  ``requested * 100 / capacity`` of the node's CSIStorageCapacity mapped through the shape (100 when over or
  capacity 0), averaged over classes with math.Round.

Plugins with no input in this model (PodTopologySpread, InterPodAffinity, ImageLocality, DynamicResources) give
every node the same score, so they are left out.
"""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt

from simulator.kube_scheduler import api, nodes, podinfo

Slots = npt.NDArray[np.intp]
MAX = api.MAX_NODE_SCORE


def least_allocated(table: nodes.NodeTable, slots: Slots, req: podinfo.Requests) -> nodes.Int64s:
    if table.all_allocatable:
        alloc_cpu, alloc_memory = table.ints("alloc_cpu")[slots], table.ints("alloc_memory")[slots]
        cpu = (alloc_cpu - (table.ints("nz_cpu")[slots] + req.nonzero_cpu)) * MAX // alloc_cpu
        memory = (alloc_memory - (table.ints("nz_memory")[slots] + req.nonzero_memory)) * MAX // alloc_memory
        # over-allocated nodes get a negative quotient, which the clip turns into upstream's 0
        result: nodes.Int64s = (np.maximum(cpu, 0) + np.maximum(memory, 0)) // 2
        return result
    total = np.zeros(len(slots), dtype=np.int64)
    weights = np.zeros(len(slots), dtype=np.int64)
    for alloc_col, used_col, pod in (
        ("alloc_cpu", "nz_cpu", req.nonzero_cpu),
        ("alloc_memory", "nz_memory", req.nonzero_memory),
    ):
        alloc = table.ints(alloc_col)[slots]
        requested = table.ints(used_col)[slots] + pod
        counted = alloc != 0
        safe = np.where(counted, alloc, 1)
        total += np.where(counted, np.maximum((alloc - requested) * MAX // safe, 0), 0)
        weights += counted
    return np.where(weights == 0, 0, total // np.maximum(weights, 1))


def _balance(f0: npt.NDArray[np.float64], f1: npt.NDArray[np.float64], both: nodes.Bools | None) -> nodes.Int64s:
    """int64((1 - std) * 100) for two resources; a node where fewer than two count has std 0."""
    std = np.abs((f0 - f1) / 2)
    if both is not None:
        std = np.where(both, std, 0.0)
    return ((1 - std) * float(MAX)).astype(np.int64)


def balanced_allocation(table: nodes.NodeTable, slots: Slots, req: podinfo.Requests) -> nodes.Int64s | None:
    """None when the plugin skips the pod (no cpu and no memory request)."""
    if req.cpu == 0 and req.memory == 0:
        return None
    fractions: list[npt.NDArray[np.float64]] = []  # cpu with, cpu without, memory with, memory without
    counted: list[nodes.Bools] = []
    for alloc_col, used_col, pod in (("alloc_cpu", "req_cpu", req.cpu), ("alloc_memory", "req_memory", req.memory)):
        alloc = table.ints(alloc_col)[slots]
        used = table.ints(used_col)[slots]
        present = alloc != 0
        counted.append(present)
        denominator = (alloc if table.all_allocatable else np.where(present, alloc, 1)).astype(np.float64)
        fractions.append(np.minimum((used + pod) / denominator, 1.0))
        fractions.append(np.minimum(used / denominator, 1.0))
    both = None if table.all_allocatable else counted[0] & counted[1]
    with_pod = _balance(fractions[0], fractions[2], both)
    without = _balance(fractions[1], fractions[3], both)
    half = MAX // 2
    result: nodes.Int64s = half + (half + with_pod - without) // 2
    return result


def taint_toleration(entry_prefer: nodes.Int64s, slots: Slots) -> nodes.Int64s:
    counts = entry_prefer[slots]
    top = int(counts.max()) if len(counts) else 0
    if top == 0:
        return np.full(len(slots), MAX, dtype=np.int64)
    return MAX - MAX * counts // top


def node_affinity(entry_affinity: nodes.Int64s | None, slots: Slots) -> nodes.Int64s | None:
    if entry_affinity is None:
        return None
    sums = entry_affinity[slots]
    top = int(sums.max()) if len(sums) else 0
    if top == 0:
        return np.zeros(len(slots), dtype=np.int64)
    return MAX * sums // top


_SHAPE_TABLES: dict[tuple[tuple[int, int], ...], nodes.Int64s] = {}


def shape_score(shape: tuple[tuple[int, int], ...], utilization: nodes.Int64s) -> nodes.Int64s:
    """helper.BuildBrokenLinearFunction over VolumeBindingArgs.shape, scores scaled from 0..10 to 0..100: the
    first point whose utilization is >= p, interpolated from the point before it with Go's integer division.
    Utilization is always 0..100 here, so the function is tabulated once per shape."""
    table = _SHAPE_TABLES.get(shape)
    if table is None:
        points = [(u, s * (MAX // 10)) for u, s in shape]
        values = []
        for p in range(101):
            i = next((i for i, (u, _) in enumerate(points) if p <= u), None)
            if i is None:
                values.append(points[-1][1])
            elif i == 0:
                values.append(points[0][1])
            else:
                (u0, s0), (u1, s1) = points[i - 1], points[i]
                numerator = (s1 - s0) * (p - u0)
                quotient = abs(numerator) // (u1 - u0)  # Go truncates toward zero
                values.append(s0 + (quotient if numerator >= 0 else -quotient))
        table = _SHAPE_TABLES[shape] = np.array(values, dtype=np.int64)
    return table[utilization]


def volume_binding(
    capacity: nodes.CapacityStore, slots: Slots, tracked: tuple[tuple[str, int], ...], config: api.SchedulerConfig
) -> nodes.Int64s | None:
    """None when the plugin gives every node 0 (scoring off, or no claim with a CSIStorageCapacity)."""
    if not config.storage_capacity_scoring or not tracked:
        return None
    requested: dict[str, int] = {}
    for storage_class, size in tracked:
        requested[storage_class] = requested.get(storage_class, 0) + size
    total = np.zeros(len(slots), dtype=np.int64)
    for storage_class, size in requested.items():
        cap = capacity.columns(storage_class)[1][slots]
        over = (cap == 0) | (size > cap)
        utilization = np.where(over, 100, size * 100 // np.where(over, 1, cap))
        total += shape_score(config.volume_binding_shape, utilization)
    # math.Round(float64(sum) / float64(classes)): halves away from zero; the sum is never negative here.
    return np.floor(total / len(requested) + 0.5).astype(np.int64)


def preorder_first(candidates: npt.NDArray[np.intp]) -> int:
    """Which of the tied heap positions ``candidates`` selectHost pops when no node has a Randomizer.

    heap.Init sifts down from the last parent to the root; an element moves only below a strictly better child,
    and of two equal children the left one rises. So the root ends up being the top-score element that comes
    first in a pre-order walk of the implicit tree (0, 1, 3, 7, ..., 4, ..., 2, 5, ...): an ancestor before its
    descendants, a left subtree before the right one."""
    v = candidates.astype(np.int64) + 1
    depth = np.frexp(v.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2(v)), exact below 2**53
    deepest = int(depth.max())
    path = (v - (np.int64(1) << depth)) << (deepest - depth)
    return int(candidates[np.lexsort((depth, path))[0]])


def select(totals: nodes.Int64s, randomized: bool, rng: random.Random) -> tuple[int, npt.NDArray[np.intp]]:
    """selectHost: (chosen position, tied positions). With an extender's scores every node carries a random
    Randomizer, so ties break uniformly at random; otherwise the heap's structure decides."""
    tied = np.flatnonzero(totals == totals.max())
    if len(tied) == 1:
        return int(tied[0]), tied
    if randomized:
        return int(tied[rng.randrange(len(tied))]), tied
    return preorder_first(tied), tied
