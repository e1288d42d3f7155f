"""The filter plugins that matter for a TopoLVM pod, vectorised over every node, and the reasons they give.

Filter order is v1.37's default profile: NodeName, NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts,
NodeResourcesFit, VolumeRestrictions, NodeVolumeLimits, VolumeBinding, ... — a node is rejected by the first
plugin that fails, and only that plugin's reasons are counted for it.

What depends only on the pod's constraints and the nodes' labels/taints (NodeUnschedulable, TaintToleration,
NodeAffinity, and the inputs of the TaintToleration and NodeAffinity scores) is computed once per pod *shape*
and cached (``StaticCache``); a cycle then costs a few array passes for resources and storage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from simulator.kube_scheduler import api, nodes, podinfo

Int8s = npt.NDArray[np.int8]
Slots = npt.NDArray[np.intp]


@dataclass
class StaticEntry:
    code: Int8s  # podinfo.STATIC_* per slot
    prefer: nodes.Int64s  # untolerated PreferNoSchedule taints per slot
    affinity: nodes.Int64s | None  # matching preferred-term weights per slot; None: the pod prefers nothing
    ok: nodes.Bools = field(init=False)

    def __post_init__(self) -> None:
        self.ok = self.code == podinfo.STATIC_OK


class StaticCache:
    """Per-pod-shape static results, rebuilt when nodes are added or removed, patched when one is updated."""

    def __init__(self, table: nodes.NodeTable, size: int = 32) -> None:
        self._table = table
        self._size = size
        self._entries: dict[podinfo.Constraints, StaticEntry] = {}
        self._layout = table.layout

    def get(self, constraints: podinfo.Constraints) -> StaticEntry:
        if self._layout != self._table.layout:
            self._entries.clear()
            self._layout = self._table.layout
        entry = self._entries.get(constraints)
        if entry is None:
            if len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            entry = self._entries[constraints] = self._build(constraints)
        return entry

    def _build(self, c: podinfo.Constraints) -> StaticEntry:
        table, n = self._table, self._table.n
        entry = StaticEntry(
            np.zeros(n, dtype=np.int8),
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64) if c.preferred_terms else None,
        )
        if c.has_required or c.preferred_terms:
            candidates: range | npt.NDArray[np.intp] = range(n)
        else:  # only unschedulable or tainted nodes can differ from the all-pass default
            candidates = np.flatnonzero(table.bools("unschedulable") | table.bools("tainted"))
        for slot in candidates:
            self._fill(entry, c, int(slot))
        entry.ok = entry.code == podinfo.STATIC_OK
        return entry

    def _fill(self, entry: StaticEntry, c: podinfo.Constraints, slot: int) -> None:
        node = self._table.nodes[slot]
        entry.code[slot] = podinfo.static_code(node, c)
        entry.prefer[slot] = podinfo.intolerable_prefer_count(node, c.tolerations)
        if entry.affinity is not None:
            entry.affinity[slot] = podinfo.preferred_score(node.meta.labels, c.preferred_terms)
        entry.ok[slot] = entry.code[slot] == podinfo.STATIC_OK

    def node_updated(self, slot: int) -> None:
        if self._layout != self._table.layout:
            return
        for c, entry in self._entries.items():
            self._fill(entry, c, slot)


@dataclass(frozen=True)
class VolumePlan:
    """The pod's claims as the VolumeBinding plugin sorts them in PreFilter."""

    unbound_immediate: bool = False
    pinned: tuple[str, ...] = ()  # bound claims: the node their PV's affinity names
    selected: tuple[str, ...] = ()  # unbound WFFC claims already carrying a selected node
    tracked: tuple[tuple[str, int], ...] = ()  # unbound WFFC claims needing a CSIStorageCapacity: (class, bytes)


def plan_volumes(claims: Sequence[api.ClaimView]) -> VolumePlan:
    if not claims:
        return VolumePlan()
    pinned, selected, tracked = [], [], []
    immediate = False
    for claim in claims:
        if claim.bound_node is not None:
            pinned.append(claim.bound_node)
        elif not claim.wait_for_first_consumer:
            immediate = True
        else:
            if claim.selected_node is not None:
                selected.append(claim.selected_node)
            if claim.provisioner_has_capacity_tracking:
                tracked.append((claim.storage_class, claim.request_bytes))
    return VolumePlan(immediate, tuple(pinned), tuple(selected), tuple(tracked))


class Evaluator:
    """The filter verdicts of one cycle's pod, for any subset of slots (a cycle evaluates only the nodes its walk
    reaches), and the reasons of the rejected ones."""

    def __init__(
        self,
        table: nodes.NodeTable,
        capacity: nodes.CapacityStore,
        entry: StaticEntry,
        req: podinfo.Requests,
        plan: VolumePlan,
    ) -> None:
        self.table, self.entry, self.req = table, entry, req
        self.static_ok = entry.ok
        self.free_pods = table.ints("free_pods")
        self.free_cpu = table.ints("free_cpu") if req.cpu > 0 else None
        self.free_memory = table.ints("free_memory") if req.memory > 0 else None
        # Claims needing a CSIStorageCapacity: (limit column, size); a node passes when limit >= size.
        self.tracked = [(capacity.columns(c)[0], size) for c, size in plan.tracked]
        # Bound claims and selected nodes pin the pod to named nodes: full-length "fails here" masks.
        self.pv_affinity = _pinned_elsewhere(table, [table.slots_with_topology(v) for v in plan.pinned])
        self.bind_conflict = _pinned_elsewhere(
            table, [[s] if (s := table.slot.get(v)) is not None else [] for v in plan.selected]
        )

    def ok(self, slots: Slots) -> nodes.Bools:
        """Per given slot: passes every modelled filter plugin."""
        ok = self.static_ok[slots] & (self.free_pods[slots] > 0)
        if self.free_cpu is not None:
            ok &= self.free_cpu[slots] >= self.req.cpu
        if self.free_memory is not None:
            ok &= self.free_memory[slots] >= self.req.memory
        for limit, size in self.tracked:
            ok &= limit[slots] >= size
        for elsewhere in (self.pv_affinity, self.bind_conflict):
            if elsewhere is not None:
                ok &= ~elsewhere[slots]
        return ok

    def reasons(self, rejected: Slots) -> Counter[str]:
        """The reasons of the rejected slots, each node counted under the first plugin that rejects it."""
        out: Counter[str] = Counter()
        if not len(rejected):
            return out
        code = self.entry.code[rejected]
        for value, reason in (
            (podinfo.STATIC_UNSCHEDULABLE, api.REASON_UNSCHEDULABLE),
            (podinfo.STATIC_TAINT, api.REASON_TAINT),
            (podinfo.STATIC_AFFINITY, api.REASON_AFFINITY),
        ):
            if count := int(np.count_nonzero(code == value)):
                out[reason] = count
        rest = rejected[code == podinfo.STATIC_OK]
        pods = self.free_pods[rest] <= 0
        cpu = np.zeros(len(rest), dtype=np.bool_) if self.free_cpu is None else self.free_cpu[rest] < self.req.cpu
        memory = (
            np.zeros(len(rest), dtype=np.bool_)
            if self.free_memory is None
            else self.free_memory[rest] < self.req.memory
        )
        for mask, reason in ((pods, api.REASON_TOO_MANY_PODS), (cpu, api.REASON_CPU), (memory, api.REASON_MEMORY)):
            if count := int(np.count_nonzero(mask)):
                out[reason] = count
        rest = rest[~(pods | cpu | memory)]
        if len(rest):
            # FindPodVolumes: PV affinity, then a claim selected for another node (which returns before any
            # capacity check), then capacity.
            pv = np.zeros(len(rest), dtype=np.bool_) if self.pv_affinity is None else self.pv_affinity[rest]
            bind = np.zeros(len(rest), dtype=np.bool_) if self.bind_conflict is None else self.bind_conflict[rest]
            space = np.zeros(len(rest), dtype=np.bool_)
            for limit, size in self.tracked:
                space |= limit[rest] < size
            space &= ~bind
            for mask, reason in (
                (pv, api.REASON_PV_NODE_AFFINITY),
                (bind, api.REASON_BIND_CONFLICT),
                (space, api.REASON_NOT_ENOUGH_SPACE),
            ):
                if count := int(np.count_nonzero(mask)):
                    out[reason] = count
        return out


def _pinned_elsewhere(table: nodes.NodeTable, allowed: list[list[int]]) -> nodes.Bools | None:
    """True on the slots outside any one of the ``allowed`` sets; None when there are no sets."""
    if not allowed:
        return None
    out = np.zeros(table.n, dtype=np.bool_)
    for slots in allowed:
        here = np.zeros(table.n, dtype=np.bool_)
        here[slots] = True
        out |= ~here
    return out
