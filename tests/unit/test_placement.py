from __future__ import annotations

import pytest

from topolvm import errors
from topolvm.core import placement, resources

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
]


def test_largest_capacity_wins_without_topology() -> None:
    assert placement.choose_node(NODES, "ssd", GiB) == "b"


def test_preferred_then_requisite_with_room() -> None:
    assert placement.choose_node(NODES, "ssd", GiB, preferred=["a"], requisite=["b", "a"]) == "a"
    assert placement.choose_node(NODES, "ssd", 20 * GiB, preferred=["a"], requisite=["b"]) == "b"


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"size": 40 * GiB}, id="too-big-everywhere"),
        pytest.param({"size": GiB, "requisite": ["c", "d", "e", "f"]}, id="only-unusable-nodes"),
    ],
)
def test_no_room(kwargs: dict[str, object]) -> None:
    size = kwargs.pop("size")
    with pytest.raises(errors.InsufficientCapacity):
        placement.choose_node(NODES, "ssd", size, **kwargs)  # type: ignore[arg-type]


def test_capacity_parsing_and_totals() -> None:
    assert placement.node_capacity(NODES[2], "ssd") is None
    assert placement.node_capacity(NODES[3], "ssd") is None
    assert placement.total_capacity(NODES, "ssd") == 140 * GiB  # deleting nodes still report until gone
    assert placement.total_capacity(NODES, "ssd", "a") == 10 * GiB
    assert placement.total_capacity(NODES, "") == 10 * GiB


def test_capacity_annotations_include_default_alias() -> None:
    assert placement.capacity_annotations([("ssd", True, 5), ("hdd", False, 7)]) == {
        "capacity.topolvm.io/ssd": "5",
        "capacity.topolvm.io/00default": "5",
        "capacity.topolvm.io/hdd": "7",
    }
