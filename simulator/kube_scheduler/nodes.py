"""The model's scheduler cache: nodes as numpy columns, the pods counted on them, CSIStorageCapacity per class.

Nodes live in *slots* (insertion order, compacted on removal) so that a pod's bookkeeping is O(1). The order in
which a cycle walks them is the snapshot's list order, which upstream takes from the cache's node tree
(backend/cache/node_tree.go): nodes grouped by zone (region + zone labels), zones in order of first appearance,
and the list interleaves them round-robin — one node of each zone in turn. The snapshot rebuilds that list only
when a node is added or removed (cache.go, updateAllLists), so a label change that moves a node to another zone
reorders the walk only at the next add or remove; this table does the same. With one zone (or none) the walk is
insertion order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.kube_scheduler import podinfo
from topolvm import constants
from topolvm.core import resources, workloads

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

ZONE_LABELS = ("failure-domain.beta.kubernetes.io/zone", "topology.kubernetes.io/zone")
REGION_LABELS = ("failure-domain.beta.kubernetes.io/region", "topology.kubernetes.io/region")
INT_COLUMNS = (
    *("alloc_cpu", "alloc_memory", "alloc_pods", "req_cpu", "req_memory", "nz_cpu", "nz_memory", "pods"),
    *("free_cpu", "free_memory", "free_pods"),  # allocatable - requested, kept up to date for the filter
)
BOOL_COLUMNS = ("unschedulable", "tainted")
USAGE_COLUMNS = ("req_cpu", "req_memory", "nz_cpu", "nz_memory", "pods")
FREE_COLUMNS = (
    ("free_cpu", "alloc_cpu", "req_cpu"),
    ("free_memory", "alloc_memory", "req_memory"),
    ("free_pods", "alloc_pods", "pods"),
)


def zone_key(labels: Mapping[str, str]) -> str:
    """component-helpers' GetZoneKey: the beta labels win over the GA ones; "" when neither region nor zone."""
    zone = next((labels[k] for k in ZONE_LABELS if k in labels), "")
    region = next((labels[k] for k in REGION_LABELS if k in labels), "")
    return f"{region}:\x00:{zone}" if region or zone else ""


@dataclass
class _PodRecord:
    node: str
    requests: podinfo.Requests


class NodeTable:
    """Per-node state in slot order, plus the snapshot's walk order (``order``: position -> slot)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.nodes: list[resources.Node] = []
        self.slot: dict[str, int] = {}
        self._capacity = 0
        self._cols: dict[str, npt.NDArray[np.generic]] = {}
        self._grow(64)
        # Bumped whenever slots move (add/remove): arrays indexed by slot elsewhere must be rebuilt.
        self.layout = 0
        self._zones: list[str] = []
        self._tree: dict[str, list[str]] = {}
        self._order: npt.NDArray[np.intp] | None = None
        self.order_is_identity = True
        self._topology: dict[str, list[int]] = {}
        self._usage: dict[str, list[int]] = {}
        self._pods: dict[tuple[str, str], _PodRecord] = {}
        self._name_array: npt.NDArray[np.object_] | None = None
        self._all_allocatable: bool | None = None
        self.version = 0  # bumped on every change of a node or of the pods counted on it
        self._most: dict[str, int] = {}  # free column -> its largest value, at ``version``
        self._most_version = -1

    @property
    def name_array(self) -> npt.NDArray[np.object_]:
        """The node names by slot, for gathering many at once."""
        if self._name_array is None or len(self._name_array) != self.n:
            self._name_array = np.array(self.names, dtype=object)
        return self._name_array

    @property
    def n(self) -> int:
        return len(self.names)

    def _grow(self, capacity: int) -> None:
        for name in INT_COLUMNS:
            col = np.zeros(capacity, dtype=np.int64)
            col[: self._capacity] = self._cols[name][: self._capacity] if name in self._cols else 0
            self._cols[name] = col
        for name in BOOL_COLUMNS:
            bcol = np.zeros(capacity, dtype=np.bool_)
            bcol[: self._capacity] = self._cols[name][: self._capacity] if name in self._cols else False
            self._cols[name] = bcol
        self._capacity = capacity

    @property
    def all_allocatable(self) -> bool:
        """Every node has non-zero cpu and memory allocatable (the score plugins' common case)."""
        if self._all_allocatable is None:
            self._all_allocatable = bool(self.ints("alloc_cpu").all() and self.ints("alloc_memory").all())
        return self._all_allocatable

    def ints(self, name: str) -> Int64s:
        """A view of one integer column over the present nodes."""
        col: Int64s = self._cols[name][: self.n]  # type: ignore[assignment]
        return col

    def bools(self, name: str) -> Bools:
        col: Bools = self._cols[name][: self.n]  # type: ignore[assignment]
        return col

    # --- nodes ------------------------------------------------------------------------------------------------

    def most_free(self, column: str) -> int:
        """The largest value of a free column over all nodes (0 without nodes), cached until something changes."""
        if self._most_version != self.version:
            self._most.clear()
            self._most_version = self.version
        if column not in self._most:
            values = self.ints(column)
            self._most[column] = int(values.max()) if len(values) else 0
        return self._most[column]

    def set_node(self, node: resources.Node) -> int:
        """Add or update a node (labels, taints, allocatable, unschedulable); returns its slot."""
        self.version += 1
        name = node.meta.name
        slot = self.slot.get(name)
        if slot is None:
            slot = self.n
            if slot == self._capacity:
                self._grow(2 * self._capacity)
            self.names.append(name)
            self.nodes.append(node)
            self.slot[name] = slot
            self._tree_add(name, zone_key(node.meta.labels))
            self.layout += 1
            self._order = None
            usage = self._usage.get(name, [0, 0, 0, 0, 0])
            for col, value in zip(USAGE_COLUMNS, usage, strict=True):
                self._cols[col][slot] = value
        else:
            old_zone, new_zone = zone_key(self.nodes[slot].meta.labels), zone_key(node.meta.labels)
            if old_zone != new_zone:
                self._tree_remove(name, old_zone)
                self._tree_add(name, new_zone)
            self._topology_forget(slot)
            self.nodes[slot] = node
        allocatable = node.status.allocatable
        self._all_allocatable = None
        self._cols["alloc_cpu"][slot] = allocatable.get(workloads.CPU, 0)
        self._cols["alloc_memory"][slot] = allocatable.get(workloads.MEMORY, 0)
        self._cols["alloc_pods"][slot] = allocatable.get(workloads.PODS, 0)
        for free, alloc, used in FREE_COLUMNS:
            self._cols[free][slot] = self._cols[alloc][slot] - self._cols[used][slot]
        self._cols["unschedulable"][slot] = node.spec.unschedulable
        self._cols["tainted"][slot] = bool(node.spec.taints)
        self._topology.setdefault(self.topology_value(slot), []).append(slot)
        return slot

    def remove_node(self, name: str) -> bool:
        self.version += 1
        slot = self.slot.pop(name, None)
        if slot is None:
            return False
        self._tree_remove(name, zone_key(self.nodes[slot].meta.labels))
        del self.names[slot]
        del self.nodes[slot]
        for key, col in self._cols.items():
            col[slot : self.n] = col[slot + 1 : self.n + 1]
            self._cols[key] = col
        for i in range(slot, self.n):
            self.slot[self.names[i]] = i
        self._topology = {}
        for i in range(self.n):
            self._topology.setdefault(self.topology_value(i), []).append(i)
        self.layout += 1
        self._order = None
        self._name_array = None
        self._all_allocatable = None
        return True

    def topology_value(self, slot: int) -> str:
        """The node's topology.topolvm.io/node label, which a TopoLVM PV's node affinity names; topolvm-node
        registers it with the node's own name, which stands in when the label is absent."""
        return self.nodes[slot].meta.labels.get(constants.TOPOLOGY_NODE_KEY, self.names[slot])

    def slots_with_topology(self, value: str) -> list[int]:
        return self._topology.get(value, [])

    def _topology_forget(self, slot: int) -> None:
        slots = self._topology.get(self.topology_value(slot), [])
        if slot in slots:
            slots.remove(slot)

    # --- the snapshot's walk order ----------------------------------------------------------------------------

    def _tree_add(self, name: str, zone: str) -> None:
        if zone not in self._tree:
            self._zones.append(zone)
            self._tree[zone] = []
        self._tree[zone].append(name)

    def _tree_remove(self, name: str, zone: str) -> None:
        members = self._tree.get(zone, [])
        if name in members:
            members.remove(name)
            if not members:
                del self._tree[zone]
                self._zones.remove(zone)

    def tree_list(self) -> Iterator[str]:
        """nodeTree.list(): one node of each zone in turn until every zone is exhausted."""
        depth = max((len(m) for m in self._tree.values()), default=0)
        for index in range(depth):
            for zone in self._zones:
                members = self._tree[zone]
                if index < len(members):
                    yield members[index]

    @property
    def order(self) -> npt.NDArray[np.intp]:
        if self._order is None:
            order = np.fromiter((self.slot[name] for name in self.tree_list()), dtype=np.intp, count=self.n)
            self.order_is_identity = bool(np.array_equal(order, np.arange(self.n)))
            self._order = order
        return self._order

    # --- pods -------------------------------------------------------------------------------------------------

    def add_pod(self, namespace: str, name: str, node: str, requests: podinfo.Requests) -> None:
        self.remove_pod(namespace, name)
        self._pods[(namespace, name)] = _PodRecord(node, requests)
        self._account(node, requests, 1)

    def remove_pod(self, namespace: str, name: str) -> None:
        record = self._pods.pop((namespace, name), None)
        if record is not None:
            self._account(record.node, record.requests, -1)

    def _account(self, node: str, r: podinfo.Requests, sign: int) -> None:
        self.version += 1
        usage = self._usage.setdefault(node, [0, 0, 0, 0, 0])
        deltas = (r.cpu, r.memory, r.nonzero_cpu, r.nonzero_memory, 1)
        slot = self.slot.get(node)
        for i, (col, delta) in enumerate(zip(USAGE_COLUMNS, deltas, strict=True)):
            usage[i] += sign * delta
            if slot is not None:
                self._cols[col][slot] += sign * delta
        if slot is not None:
            for free, alloc, used in FREE_COLUMNS:
                self._cols[free][slot] = self._cols[alloc][slot] - self._cols[used][slot]


class CapacityStore:
    """CSIStorageCapacity objects, one per (node, storage class), as numpy columns per class.

    ``limit`` is what the VolumeBinding filter compares a claim with: maximumVolumeSize when set, else capacity;
    -1 when there is no object or neither is set. ``capacity`` is what its score uses (0 when unset)."""

    def __init__(self, table: NodeTable) -> None:
        self._table = table
        self._values: dict[str, dict[str, tuple[int | None, int | None]]] = {}
        self._arrays: dict[str, tuple[Int64s, Int64s]] = {}
        self._layout = -1

    def set(self, node: str, storage_class: str, capacity: int | None, maximum: int | None) -> None:
        per_class = self._values.setdefault(storage_class, {})
        if capacity is None and maximum is None:
            per_class.pop(node, None)
        else:
            per_class[node] = (capacity, maximum)
        arrays = self._arrays.get(storage_class)
        slot = self._table.slot.get(node)
        if arrays is not None and slot is not None and self._layout == self._table.layout:
            arrays[0][slot], arrays[1][slot] = _limit(capacity, maximum), capacity or 0

    def columns(self, storage_class: str) -> tuple[Int64s, Int64s]:
        if self._layout != self._table.layout:
            self._arrays = {}
            self._layout = self._table.layout
        arrays = self._arrays.get(storage_class)
        if arrays is None:
            n = self._table.n
            limit, capacity = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
            for node, (cap, maximum) in self._values.get(storage_class, {}).items():
                slot = self._table.slot.get(node)
                if slot is not None:
                    limit[slot], capacity[slot] = _limit(cap, maximum), cap or 0
            arrays = self._arrays[storage_class] = (limit, capacity)
        return arrays


def _limit(capacity: int | None, maximum: int | None) -> int:
    if maximum is not None:
        return maximum
    return capacity if capacity is not None else -1
