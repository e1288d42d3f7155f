"""Where a new volume goes, and what capacity a node advertises: pure functions over Node annotations.

Called by the CSI controller (CreateVolume, GetCapacity) and by the simulator's provisioner. The rule for
CreateVolume follows the shapes external-provisioner sends (pkg/controller/topology.go,
GenerateAccessibilityRequirements), with one topology key, ``topology.topolvm.io/node``:

- WaitForFirstConsumer: the scheduler's selected node comes first in ``preferred``; without
  ``--strict-topology`` every node follows it in ``preferred`` and ``requisite``, with it ``requisite`` is just
  that node. The pod is already bound for the selected node, so the volume goes there or nowhere: like upstream
  TopoLVM we take the first preferred node and only it. If it lacks room the answer is InsufficientCapacity
  (RESOURCE_EXHAUSTED), on which external-provisioner asks the scheduler for another node; falling through to
  "any node with room" would put the volume where the pod is not.
  (Immediate binding also fills ``preferred``, rotated by a hash of the PVC name; upstream takes its first node
  too, and so do we: the request cannot tell the two apart.)
- only ``requisite`` (a CO other than external-provisioner, which always sends a preference with it): the
  requisite node with the most room, so a request is not refused while an allowed node could hold it.
- neither (csi-sanity, a CO without topology): the node with the largest capacity annotation for the class, as
  upstream.

Annotation values are read with the extender's parser (``scheduling.parse_free``), so the controller and the
scheduler extender never disagree about what a node offers.
"""

from __future__ import annotations

from collections.abc import Sequence

from topolvm import constants, errors
from topolvm.core import resources, scheduling


def node_capacity(node: resources.Node, device_class: str) -> int | None:
    """The node's advertised free bytes for the class (None: not a TopoLVM node or unparsable)."""
    return scheduling.parse_free(node.meta.annotations.get(constants.capacity_annotation(device_class)))


def capacity_annotations(stats: Sequence[tuple[str, bool, int]]) -> dict[str, str]:
    """Annotations for (device class, is default, free bytes) triples; the default class also as 00default."""
    out: dict[str, str] = {}
    for name, default, free in stats:
        out[constants.capacity_annotation(name)] = str(free)
        if default:
            out[constants.capacity_annotation("")] = str(free)
    return out


def _class_label(device_class: str) -> str:
    return repr(device_class or "default")


def choose_node(
    nodes: Sequence[resources.Node],
    device_class: str,
    size: int,
    *,
    preferred: Sequence[str] = (),
    requisite: Sequence[str] = (),
) -> str:
    """The node for a new volume of ``size`` bytes (see the module docstring for the rule).

    InsufficientCapacity if the chosen node, or every allowed one, lacks room; InvalidArgument if the first
    preferred node is not among the requisite ones (CSI requires preferred to be a subset of requisite).
    """
    if preferred:
        name = preferred[0]
        return choose_preferred(next((n for n in nodes if n.name == name), None), name, device_class, size, requisite)
    usable = {n.name: n for n in nodes if not n.meta.deleting}
    allowed = [usable[n] for n in dict.fromkeys(requisite) if n in usable] if requisite else list(usable.values())
    best: tuple[int, str] | None = None
    for node in allowed:
        free = node_capacity(node, device_class)
        if free is not None and free >= size and (best is None or (free, node.name) > best):
            best = (free, node.name)
    if best is None:
        where = f"none of the requisite nodes ({', '.join(requisite)})" if requisite else "no node"
        raise errors.InsufficientCapacity(f"{where} has {size} bytes free in device class {_class_label(device_class)}")
    return best[1]


def choose_preferred(
    node: resources.Node | None, name: str, device_class: str, size: int, requisite: Sequence[str] = ()
) -> str:
    """The first preferred node ``name`` (``node`` is its Node, None if unknown), or why it cannot take the
    volume. Needs only that one Node, so a controller with thousands of nodes reads one."""
    if requisite and name not in requisite:
        raise errors.InvalidArgument(f"preferred node {name!r} is not among the requisite nodes")
    free = node_capacity(node, device_class) if node is not None and not node.meta.deleting else None
    if free is None:
        raise errors.InsufficientCapacity(
            f"node {name!r} (first preferred: the scheduler's choice) offers no device class "
            f"{_class_label(device_class)}"
        )
    if free < size:
        raise errors.InsufficientCapacity(
            f"node {name!r} (first preferred: the scheduler's choice) has {free} bytes free in device class "
            f"{_class_label(device_class)}, {size} requested"
        )
    return name


def check_source_node(node_name: str, *, preferred: Sequence[str] = (), requisite: Sequence[str] = ()) -> str:
    """A snapshot or clone lives beside its source, on ``node_name``; the topology asked for must allow it.

    As upstream, membership anywhere in the request is enough: without ``--strict-topology`` external-provisioner
    lists every node, and refusing a clone because the scheduler picked another node would only make it pick
    again without knowing why."""
    if (preferred or requisite) and node_name not in {*preferred, *requisite}:
        raise errors.InvalidArgument(
            f"the source volume is on node {node_name!r}, which the accessibility requirements do not allow"
        )
    return node_name


def total_capacity(nodes: Sequence[resources.Node], device_class: str, node_name: str | None = None) -> int:
    """GetCapacity: one node's value with topology, else the sum over nodes (upstream)."""
    total = 0
    for node in nodes:
        if node_name is not None and node.name != node_name:
            continue
        total += node_capacity(node, device_class) or 0
    return total
