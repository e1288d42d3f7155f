"""What a live node looks like to the simulator: its volume groups and thin pools, inferred from its capacity
annotations, its LogicalVolumes and its lvmd.yaml, and node pools of nodes that look alike.

Called by ``simulator.snapshot``. LVM sizes are not visible through the API, so they are worked back from what
topolvm-node publishes (``topolvm.core.capacity`` is the formula run backwards):
- a thick class publishes ``largest_lv(vg, layout, reserve=spare)``, for a linear class ``vg_free - spare``; so
  the VG holds that plus the spare plus what its LVs take (``capacity.footprint``: RAID images, metadata
  extents), rounded up to whole GiB;
- a thin class publishes ``floor(ratio * pool) - virtual used``; so the pool is ``(free + used) / ratio``, rounded
  up to whole extents, and it counts towards its VG's size.
A VG whose class lays LVs over several PVs (RAID, stripes) gets that many equal disks, so the in-memory LVM can
place every image on its own disk. Extents are taken to be lvm's default 4 MiB.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from topolvm import constants, errors
from topolvm.core import capacity, devclass, model, quantity, resources, scheduling, workloads
from topolvm.lvmd import config as lvmd_config

GiB = 1 << 30
MiB = 1 << 20
EXTENT = 4 * MiB
Warn = Callable[[str], None]
# Labels that name one node (a pool of identical nodes cannot share them) or that the simulator sets itself.
_NODE_LABELS = ("kubernetes.io/hostname", constants.TOPOLOGY_NODE_KEY, "node.kubernetes.io/pool")
# Taints a node's lifecycle puts on and takes off (not-ready, cordoned, being deleted): not part of its shape.
_TRANSIENT_TAINTS = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", "ToBeDeletedByClusterAutoscaler")


@dataclasses.dataclass(frozen=True)
class Lvmd:
    """An lvmd.yaml: the mapping a scenario embeds (device-classes, lvcreate-option-classes) and its config."""

    mapping: Mapping[str, Any]
    config: model.LvmdConfig
    derived: bool = False  # made up from capacity annotations, not read from a file

    @classmethod
    def of(cls, mapping: Mapping[str, Any], source: str, *, derived: bool = False) -> Lvmd:
        keys = ("device-classes", "lvcreate-option-classes")
        kept = {k: mapping[k] for k in keys if mapping.get(k)}
        return cls(kept, lvmd_config.from_mapping(kept, source), derived)


def derive_lvmd(annotations: Mapping[str, str]) -> Lvmd | None:
    """One thick class per capacity annotation (spare 0), each in a VG of its own name; the default class is
    the one whose value ``00default`` repeats. None when the node has no capacity annotation."""
    prefix = constants.CAPACITY_KEY_PREFIX
    default_key = constants.capacity_annotation("")
    found = {k.removeprefix(prefix): v for k, v in annotations.items() if k.startswith(prefix) and k != default_key}
    if not found:
        if default_key not in annotations:
            return None
        found = {"default": annotations[default_key]}
    default_value = annotations.get(default_key)
    default = next((name for name in sorted(found) if found[name] == default_value), None)
    classes = [
        {"name": name, "volume-group": name, "spare-gb": 0, **({"default": True} if name == default else {})}
        for name in sorted(found)
    ]
    return Lvmd.of({"device-classes": classes}, "capacity annotations", derived=True)


@dataclasses.dataclass(frozen=True)
class Volume:
    """An existing LV: its device class (resolved, never empty), size, and lvcreate option class."""

    device_class: str
    size: int
    option_class: str = ""


@dataclasses.dataclass(frozen=True)
class Shape:
    """Everything a node pool fixes; equal shapes make one pool."""

    cpu: str
    memory: str
    max_pods: int
    labels: tuple[tuple[str, str], ...]
    taints: tuple[tuple[str, str, str], ...]  # key, effect, value
    volume_groups: tuple[tuple[str, tuple[str, ...]], ...]  # name, disk sizes
    thin_pools: tuple[tuple[str, str, str], ...]  # volume group, name, size
    lvmd: str  # the lvmd mapping as canonical JSON

    def spec(self, name: str, nodes: Sequence[str]) -> dict[str, Any]:
        """The scenario's ``cluster.node-pools[]`` entry for these nodes."""
        pool: dict[str, Any] = {"name": name, "count": len(nodes), "node-names": list(nodes)}
        pool.update(cpu=self.cpu, memory=self.memory, **{"max-pods": self.max_pods})
        if self.labels:
            pool["labels"] = dict(self.labels)
        if self.taints:
            pool["taints"] = [{"key": k, "effect": e, **({"value": v} if v else {})} for k, e, v in self.taints]
        pool["volume-groups"] = [{"name": vg, "disks": list(disks)} for vg, disks in self.volume_groups]
        if self.thin_pools:
            pool["thin-pools"] = [{"volume-group": vg, "name": n, "size": size} for vg, n, size in self.thin_pools]
        pool["lvmd"] = json.loads(self.lvmd)
        return pool


def size_text(value: int) -> str:
    """A quantity with the largest binary unit that divides it (memory not a whole KiB is rounded up)."""
    for unit, factor in (("Ti", 1 << 40), ("Gi", GiB), ("Mi", MiB)):
        if value and value % factor == 0:
            return f"{value // factor}{unit}"
    return f"{-(-value // 1024)}Ki"


def cpu_text(milli: int) -> str:
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def _free(node: resources.Node, dc: model.DeviceClass, warn: Warn) -> int:
    value = scheduling.parse_free(node.meta.annotations.get(constants.capacity_annotation(dc.name)))
    if value is None:
        warn(f"node {node.name}: no capacity annotation for device class {dc.name!r}; taken as full")
        return 0
    return value


def _layout(dc: model.DeviceClass, config: model.LvmdConfig, option_class: str) -> capacity.Layout:
    try:
        return devclass.layout(dc, devclass.find_option_class(config.lvcreate_option_classes, option_class))
    except errors.NotFound:
        return devclass.layout(dc)


def _thick_free(published: int, dc: model.DeviceClass, layout: capacity.Layout) -> int:
    """VG free bytes behind a thick class's published free bytes (``capacity.largest_lv`` run backwards)."""
    if published <= 0:
        return dc.spare_bytes  # lvmd publishes 0 for anything up to the spare
    per_image = published // (EXTENT * layout.data_stripes) + layout.meta_extents
    return dc.spare_bytes + layout.images * per_image * EXTENT


def volume_groups(
    node: resources.Node, lvmd: Lvmd, volumes: Sequence[Volume], warn: Warn
) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], tuple[tuple[str, str, str], ...]]:
    """(volume groups with their disks, thin pools) of a node."""
    config = lvmd.config
    vgs: list[tuple[str, tuple[str, ...]]] = []
    pools: list[tuple[str, str, str]] = []
    for vg in config.volume_groups():
        taken = free = 0
        images = 1
        for dc in (c for c in config.device_classes if c.volume_group == vg):
            mine = [v for v in volumes if v.device_class == dc.name]
            if dc.type is model.DeviceType.THIN:
                assert dc.thin_pool is not None  # lvmd's config validation
                used = sum(_round_up(v.size, EXTENT) for v in mine)
                pool = _round_up(math.ceil((_free(node, dc, warn) + used) / dc.thin_pool.overprovision_ratio), EXTENT)
                if pool:  # none published, none used: no pool (the class offers nothing, as on the node)
                    pools.append((vg, dc.thin_pool.name, size_text(pool)))
                taken += pool
                continue
            layout = devclass.layout(dc)
            free = _thick_free(_free(node, dc, warn), dc, layout)
            images = max([layout.images] + [devclass.layout(dc, oc).images for oc in config.lvcreate_option_classes])
            taken += sum(capacity.footprint(v.size, _layout(dc, config, v.option_class), EXTENT) for v in mine)
        disk = _round_up(-(-(free + taken) // images), GiB)
        vgs.append((vg, (size_text(disk),) * images))
    return tuple(vgs), tuple(pools)


def shape(node: resources.Node, lvmd: Lvmd, volumes: Sequence[Volume], warn: Warn) -> Shape:
    allocatable = node.status.allocatable
    if workloads.CPU not in allocatable or workloads.MEMORY not in allocatable:
        warn(f"node {node.name}: no allocatable cpu or memory in its status; taken as 0")
    labels = tuple(sorted((k, v) for k, v in node.meta.labels.items() if k not in _NODE_LABELS and v != node.name))
    taints = tuple(
        sorted((t.key, str(t.effect), t.value) for t in node.spec.taints if not t.key.startswith(_TRANSIENT_TAINTS))
    )
    vgs, pools = volume_groups(node, lvmd, volumes, warn)
    return Shape(
        cpu=cpu_text(allocatable.get(workloads.CPU, 0)),
        memory=size_text(allocatable.get(workloads.MEMORY, 0)),
        max_pods=allocatable.get(workloads.PODS, 110) or 110,
        labels=labels,
        taints=taints,
        volume_groups=vgs,
        thin_pools=pools,
        lvmd=json.dumps(lvmd.mapping),
    )


@dataclasses.dataclass(frozen=True)
class Pool:
    name: str
    shape: Shape
    nodes: tuple[str, ...]


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return slug[:40].rstrip("-.") or "pool"


def group(shapes: Mapping[str, tuple[str | None, Shape]]) -> list[Pool]:
    """Node pools from (pool label value or None, shape) per node. A pool is named after its label value, or
    else after its CPU and memory (``8cpu-32gi``); where one name covers several shapes, the most common shape
    comes first and they are numbered (``8cpu-32gi-1``, ``8cpu-32gi-2``). The same nodes give the same names."""
    members: dict[tuple[str, Shape], list[str]] = {}
    for node, (label, node_shape) in sorted(shapes.items()):
        if label is not None:
            base = _slug(label)
        else:
            memory = round(quantity.to_bytes(node_shape.memory) / GiB)
            base = _slug(f"{node_shape.cpu}cpu-{memory}gi")
        members.setdefault((base, node_shape), []).append(node)
    by_base: dict[str, list[tuple[Shape, list[str]]]] = {}
    for (base, node_shape), nodes in members.items():
        by_base.setdefault(base, []).append((node_shape, nodes))
    pools = []
    for base, entries in sorted(by_base.items()):
        entries.sort(key=lambda e: (-len(e[1]), repr(e[0])))
        for i, (node_shape, nodes) in enumerate(entries, 1):
            name = base if len(entries) == 1 else f"{base}-{i}"
            pools.append(Pool(name, node_shape, tuple(nodes)))
    return pools
