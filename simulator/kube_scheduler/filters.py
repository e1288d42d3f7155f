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

    @property
    def empty(self) -> bool:
        return not (self.pinned or self.selected or self.tracked)


def plan_volumes(claims: tuple[api.ClaimView, ...] | list[api.ClaimView]) -> VolumePlan:
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


@dataclass
class VolumeMasks:
    """Per-slot failures of the VolumeBinding filter, by reason (None: no node fails that way)."""

    pv_affinity: nodes.Bools | None = None
    bind_conflict: nodes.Bools | None = None
    no_space: nodes.Bools | None = None

    def failing(self) -> nodes.Bools | None:
        masks = [m for m in (self.pv_affinity, self.bind_conflict, self.no_space) if m is not None]
        if not masks:
            return None
        out = masks[0].copy()
        for m in masks[1:]:
            out |= m
        return out


def volume_masks(table: nodes.NodeTable, capacity: nodes.CapacityStore, plan: VolumePlan) -> VolumeMasks:
    n = table.n
    masks = VolumeMasks()
    for value in plan.pinned:
        here = np.zeros(n, dtype=np.bool_)
        here[table.slots_with_topology(value)] = True
        masks.pv_affinity = ~here if masks.pv_affinity is None else masks.pv_affinity | ~here
    for name in plan.selected:
        elsewhere = np.ones(n, dtype=np.bool_)
        if (slot := table.slot.get(name)) is not None:
            elsewhere[slot] = False
        masks.bind_conflict = elsewhere if masks.bind_conflict is None else masks.bind_conflict | elsewhere
    for storage_class, size in plan.tracked:
        short = capacity.columns(storage_class)[0] < size
        masks.no_space = short if masks.no_space is None else masks.no_space | short
    if masks.no_space is not None and masks.bind_conflict is not None:
        # FindPodVolumes returns at the first claim selected for another node, before any capacity check.
        masks.no_space &= ~masks.bind_conflict
    return masks


def feasible(table: nodes.NodeTable, entry: StaticEntry, req: podinfo.Requests, vol: VolumeMasks | None) -> nodes.Bools:
    """Per slot: passes every modelled filter plugin."""
    ok = entry.ok & (table.ints("pods") < table.ints("alloc_pods"))
    if req.cpu > 0:
        ok &= table.ints("alloc_cpu") - table.ints("req_cpu") >= req.cpu
    if req.memory > 0:
        ok &= table.ints("alloc_memory") - table.ints("req_memory") >= req.memory
    if vol is not None and (failing := vol.failing()) is not None:
        ok &= ~failing
    return ok


def reasons(
    table: nodes.NodeTable, entry: StaticEntry, req: podinfo.Requests, vol: VolumeMasks | None, rejected: Slots
) -> Counter[str]:
    """The reasons of the rejected slots, each node counted under the first plugin that rejects it."""
    out: Counter[str] = Counter()
    if not len(rejected):
        return out
    code = entry.code[rejected]
    for value, reason in (
        (podinfo.STATIC_UNSCHEDULABLE, api.REASON_UNSCHEDULABLE),
        (podinfo.STATIC_TAINT, api.REASON_TAINT),
        (podinfo.STATIC_AFFINITY, api.REASON_AFFINITY),
    ):
        if count := int(np.count_nonzero(code == value)):
            out[reason] = count
    rest = rejected[code == podinfo.STATIC_OK]
    pods = table.ints("pods")[rest] >= table.ints("alloc_pods")[rest]
    cpu = np.zeros(len(rest), dtype=np.bool_)
    memory = np.zeros(len(rest), dtype=np.bool_)
    if req.cpu > 0:
        cpu = table.ints("alloc_cpu")[rest] - table.ints("req_cpu")[rest] < req.cpu
    if req.memory > 0:
        memory = table.ints("alloc_memory")[rest] - table.ints("req_memory")[rest] < req.memory
    for mask, reason in ((pods, api.REASON_TOO_MANY_PODS), (cpu, api.REASON_CPU), (memory, api.REASON_MEMORY)):
        if count := int(np.count_nonzero(mask)):
            out[reason] = count
    rest = rest[~(pods | cpu | memory)]
    if vol is not None and len(rest):
        for maybe, reason in (
            (vol.pv_affinity, api.REASON_PV_NODE_AFFINITY),
            (vol.bind_conflict, api.REASON_BIND_CONFLICT),
            (vol.no_space, api.REASON_NOT_ENOUGH_SPACE),
        ):
            if maybe is not None and (count := int(np.count_nonzero(maybe[rest]))):
                out[reason] = count
    return out
