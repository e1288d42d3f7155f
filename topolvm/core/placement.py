"""Where a new volume goes, and what capacity a node advertises: pure functions over Node annotations.

Called by the CSI controller (CreateVolume, GetCapacity) and by the simulator's provisioner. Upstream picks,
without topology, the node with the largest capacity annotation for the class (seed slide 26); with topology, the
first preferred, then requisite, node. Here a topology candidate must also have room, so a request never lands
on a node that cannot hold it while another candidate could.
"""

from __future__ import annotations

from collections.abc import Sequence

from topolvm import constants, errors
from topolvm.core import resources


def node_capacity(node: resources.Node, device_class: str) -> int | None:
    """The node's advertised free bytes for the class (None: not a TopoLVM node or unparsable)."""
    raw = node.meta.annotations.get(constants.capacity_annotation(device_class))
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def capacity_annotations(stats: Sequence[tuple[str, bool, int]]) -> dict[str, str]:
    """Annotations for (device class, is default, free bytes) triples; the default class also as 00default."""
    out: dict[str, str] = {}
    for name, default, free in stats:
        out[constants.capacity_annotation(name)] = str(free)
        if default:
            out[constants.capacity_annotation("")] = str(free)
    return out


def choose_node(
    nodes: Sequence[resources.Node],
    device_class: str,
    size: int,
    *,
    preferred: Sequence[str] = (),
    requisite: Sequence[str] = (),
) -> str:
    """The node for a new volume of ``size`` bytes; InsufficientCapacity if no allowed node has room."""
    by_name = {n.name: n for n in nodes if not n.meta.deleting}
    candidates = list(dict.fromkeys([*preferred, *requisite]))
    if candidates:
        for name in candidates:
            node = by_name.get(name)
            free = node_capacity(node, device_class) if node is not None else None
            if free is not None and free >= size:
                return name
        raise errors.InsufficientCapacity(
            f"none of the allowed nodes ({', '.join(candidates)}) has {size} bytes free in device class "
            f"{device_class or 'default'!r}"
        )
    best: tuple[int, str] | None = None
    for node in by_name.values():
        free = node_capacity(node, device_class)
        if free is not None and free >= size and (best is None or (free, node.name) > best):
            best = (free, node.name)
    if best is None:
        raise errors.InsufficientCapacity(
            f"no node has {size} bytes free in device class {device_class or 'default'!r}"
        )
    return best[1]


def total_capacity(nodes: Sequence[resources.Node], device_class: str, node_name: str | None = None) -> int:
    """GetCapacity: one node's value with topology, else the sum over nodes (upstream)."""
    total = 0
    for node in nodes:
        if node_name is not None and node.name != node_name:
            continue
        total += node_capacity(node, device_class) or 0
    return total
