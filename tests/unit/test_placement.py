"""Placement policy: the request shapes external-provisioner sends (pkg/controller/topology.go), and the
capacity annotations the controller reads, parsed exactly as the scheduler extender parses them."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from topolvm import errors
from topolvm.core import node_index, placement, resources

GiB = 1 << 30


def node(name: str, deleting: bool = False, **caps: str) -> resources.Node:
    annotations = {f"capacity.topolvm.io/{k.lstrip('_')}": v for k, v in caps.items()}
    return resources.Node(
        resources.Meta(name=name, annotations=annotations, deletion_timestamp="t" if deleting else None)
    )


NODES = [
    node("a", ssd=str(10 * GiB), _00default=str(10 * GiB)),
    node("b", ssd=str(30 * GiB)),
    node("c", ssd="garbage"),
    node("d", ssd=str(-5)),
    node("e", deleting=True, ssd=str(100 * GiB)),
    node("f"),
    node("g", ssd=str(20 * GiB)),
]
EVERY = ["a", "b", "c", "d", "e", "f", "g"]  # every node with the topology label, sorted, as the provisioner lists


def rotated(first: str, nodes: list[str]) -> list[str]:
    i = nodes.index(first)
    return nodes[i:] + nodes[:i]


@pytest.mark.parametrize(
    ("size", "preferred", "requisite", "chosen"),
    [
        # WaitForFirstConsumer without --strict-topology: the selected node first, then every node after it.
        pytest.param(GiB, rotated("a", EVERY), EVERY, "a", id="wffc-selected-node-not-the-roomiest"),
        pytest.param(GiB, rotated("g", EVERY), EVERY, "g", id="wffc-selected-node"),
        # --strict-topology: only the selected node.
        pytest.param(GiB, ["a"], ["a"], "a", id="wffc-strict"),
        # allowedTopologies [a, g] (requisite = them, sorted), selected g; with and without --strict-topology.
        pytest.param(GiB, ["g", "a"], ["a", "g"], "g", id="allowed-topologies-selected"),
        pytest.param(GiB, ["g"], ["g"], "g", id="allowed-topologies-strict"),
        # Immediate binding: every node, rotated by a hash of the PVC name; upstream takes the first too.
        # The shape is the same as WaitForFirstConsumer's, so immediate binding needs no case of its own.
        # Requisite only (no CO preference): the requisite node with the most room.
        pytest.param(GiB, [], ["a", "g"], "g", id="requisite-only-most-room"),
        pytest.param(15 * GiB, [], ["a", "g", "c", "f", "zz"], "g", id="requisite-only-skips-unusable"),
        # No topology at all (csi-sanity): the node with the most room anywhere (deleting nodes never).
        pytest.param(GiB, [], [], "b", id="no-topology-largest"),
    ],
)
def test_chosen_node(size: int, preferred: list[str], requisite: list[str], chosen: str) -> None:
    assert placement.choose_node(NODES, "ssd", size, preferred=preferred, requisite=requisite) == chosen


@pytest.mark.parametrize(
    ("size", "preferred", "requisite", "error"),
    [
        # The selected node lacks room: no other node, however roomy (the pod is bound for this one).
        pytest.param(20 * GiB, rotated("a", EVERY), EVERY, errors.InsufficientCapacity, id="wffc-selected-too-small"),
        pytest.param(20 * GiB, ["a"], ["a"], errors.InsufficientCapacity, id="wffc-strict-too-small"),
        # A selected node that cannot take volumes of the class at all is a scheduling miss too: reschedule.
        pytest.param(GiB, rotated("c", EVERY), EVERY, errors.InsufficientCapacity, id="selected-unparsable"),
        pytest.param(GiB, rotated("e", EVERY), EVERY, errors.InsufficientCapacity, id="selected-deleting"),
        pytest.param(GiB, rotated("f", EVERY), EVERY, errors.InsufficientCapacity, id="selected-no-annotation"),
        pytest.param(GiB, ["zz"], [], errors.InsufficientCapacity, id="selected-unknown"),
        # CSI: every preferred topology must also be requisite.
        pytest.param(GiB, ["b"], ["a"], errors.InvalidArgument, id="preferred-outside-requisite"),
        pytest.param(25 * GiB, [], ["a", "g"], errors.InsufficientCapacity, id="requisite-none-with-room"),
        pytest.param(GiB, [], ["c", "d", "e", "f"], errors.InsufficientCapacity, id="requisite-only-unusable"),
        pytest.param(40 * GiB, [], [], errors.InsufficientCapacity, id="too-big-everywhere"),
    ],
)
def test_refused(size: int, preferred: list[str], requisite: list[str], error: type[Exception]) -> None:
    with pytest.raises(error):
        placement.choose_node(NODES, "ssd", size, preferred=preferred, requisite=requisite)


def test_source_node_must_be_allowed() -> None:
    assert placement.check_source_node("a") == "a"
    assert placement.check_source_node("a", preferred=["g", "a"], requisite=["a", "g"]) == "a"
    with pytest.raises(errors.InvalidArgument):
        placement.check_source_node("a", preferred=["g"], requisite=["g"])


def test_capacity_parsing_and_totals() -> None:
    assert placement.node_capacity(NODES[2], "ssd") is None
    assert placement.node_capacity(NODES[3], "ssd") is None
    assert placement.total_capacity(NODES, "ssd") == 160 * GiB  # deleting nodes still report until gone
    assert placement.total_capacity(NODES, "ssd", "a") == 10 * GiB
    assert placement.total_capacity(NODES, "") == 10 * GiB


@pytest.mark.parametrize(
    "value", ["+5", " 5", "5 ", "1_000", "-0", "0x10", "1e3", "\uff15", "", "18446744073709551616"]
)
def test_capacity_refuses_what_the_extender_refuses(value: str) -> None:
    assert placement.node_capacity(node("x", ssd=value), "ssd") is None


def _extender_reading(value: str) -> int | None:
    """What the scheduler extender makes of the annotation: its node index, as it ingests Nodes."""
    index = node_index.NodeIndex()
    index.update("x", {"ssd": value})
    number = index.free("ssd")["x"]
    return None if number == node_index.BAD else number


@given(
    st.one_of(
        st.text(max_size=24),
        st.integers(-(1 << 70), 1 << 70).map(str),
        st.from_regex(r"\A[ +\-]?[0-9_]{1,22}[ ]?\Z"),
    )
)
@example("+5")
@example(" 5")
@example("1_000")
@example("18446744073709551615")
@example("007")
def test_controller_and_extender_agree_on_every_annotation(value: str) -> None:
    assert placement.node_capacity(node("x", ssd=value), "ssd") == _extender_reading(value)


def test_capacity_annotations_include_default_alias() -> None:
    assert placement.capacity_annotations([("ssd", True, 5), ("hdd", False, 7)]) == {
        "capacity.topolvm.io/ssd": "5",
        "capacity.topolvm.io/00default": "5",
        "capacity.topolvm.io/hdd": "7",
    }
