"""Property tests: whatever body arrives, the extender answers 200 or a clear 4xx, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topolvm.extender import config, holder, metrics, verbs

PREFIX = "capacity.topolvm.io/"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
annotation_values = st.one_of(
    st.integers(-(1 << 70), 1 << 70).map(str),
    st.text(max_size=24),
    st.sampled_from(["", "-0", "+5", "0x10", "1e3", " 7", "18446744073709551616", "١٢"]),
)
annotations = st.dictionaries(
    st.one_of(st.sampled_from([PREFIX + "00default", PREFIX + "ssd", PREFIX]), st.text(max_size=12)),
    annotation_values,
    max_size=4,
)
metadata = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(min_size=1, max_size=10), json_values),
        "uid": st.text(max_size=6),
        "annotations": st.one_of(annotations, json_values),
    },
)
objects = st.one_of(st.fixed_dictionaries({}, optional={"metadata": st.one_of(metadata, json_values)}), json_values)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "Pod": objects,
        "Nodes": st.one_of(st.fixed_dictionaries({}, optional={"items": st.lists(objects, max_size=6)}), json_values),
        "NodeNames": st.one_of(st.lists(st.text(max_size=6), max_size=6), json_values),
    },
)


def extender() -> verbs.Extender:
    cfg = config.Config()
    stats = metrics.Metrics()
    return verbs.Extender(cfg, holder.build(cfg, stats), stats)


def check(reply: verbs.Reply) -> Any:
    assert reply.status in (200, 400), reply
    if reply.status == 400:
        assert reply.body and b"Traceback" not in reply.body
        return None
    return json.loads(reply.body)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_any_structured_body(body: dict[str, Any]) -> None:
    ext = extender()
    raw = json.dumps(body).encode()
    result = check(ext.predicate(raw))
    if result is not None:
        assert set(result) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    scores = check(ext.prioritize(raw))
    if scores is not None:
        assert all(0 <= s["Score"] <= 10 for s in scores)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_any_bytes(raw: bytes) -> None:
    ext = extender()
    check(ext.predicate(raw))
    check(ext.prioritize(raw))


@settings(max_examples=100)
@given(
    st.lists(st.tuples(st.text(min_size=1, max_size=8), annotations), max_size=40),
    annotations,
)
def test_filter_partitions_the_nodes(nodes: list[tuple[str, dict[str, str]]], pod_annotations: dict[str, str]) -> None:
    """Every node is either kept or failed, never both, never lost."""
    items = [{"metadata": {"name": name, "annotations": ann}} for name, ann in nodes]
    raw = json.dumps({"Pod": {"metadata": {"annotations": pod_annotations}}, "Nodes": {"items": items}}).encode()
    result = check(extender().predicate(raw))
    if result is None or result["Error"]:
        return
    kept = {n["metadata"]["name"] for n in result["Nodes"]["items"]}
    failed = set(result["FailedAndUnresolvableNodes"])
    assert kept | failed == {name for name, _ in nodes}
    assert not kept & failed or len(nodes) != len({name for name, _ in nodes})


def test_huge_node_list() -> None:
    items = [{"metadata": {"name": f"n{i}", "annotations": {PREFIX + "ssd": str(i)}}} for i in range(20000)]
    raw = json.dumps({"Pod": {"metadata": {"annotations": {PREFIX + "ssd": "10000"}}}, "Nodes": {"items": items}})
    result = check(extender().predicate(raw.encode()))
    assert len(result["Nodes"]["items"]) == 10000
    assert len(result["FailedAndUnresolvableNodes"]) == 10000
