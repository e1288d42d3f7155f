"""Filter and prioritize over bytes: upstream-compatible replies, names mode, pack mode, over-commit protection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.extender.helpers import GiB, args, node, pod
from topolvm import clock
from topolvm.core import node_index, reservations, resources, scheduling
from topolvm.extender import config, holder, metrics, verbs
from topolvm.kube import codec, codec_workloads
from topolvm.services import scheduler


def make(
    mode: str = "spread", ttl: float = 60.0, tie_break: str = "extender", **divisors: float
) -> tuple[verbs.Extender, clock.ManualClock]:
    manual = clock.ManualClock(1000.0)
    policy = scheduling.Policy(divisors=divisors, mode=scheduling.Mode(mode), tie_break=scheduling.TieBreak(tie_break))
    cfg = config.Config(policy=policy, reservation_ttl=ttl)
    stats = metrics.Metrics()
    return verbs.Extender(cfg, holder.build(cfg, stats, clock=manual), stats), manual


def ok(reply: verbs.Reply) -> Any:
    assert reply.status == 200, reply.body
    return json.loads(reply.body)


NODES = [
    node("small", **{"00default": 5 * GiB}),
    node("big", **{"00default": 500 * GiB}),
    node("none"),
    node("junk", **{"00default": "12x"}),
]


def test_filter_echoes_kept_nodes_and_reports_failures() -> None:
    ext, _ = make()
    result = ok(ext.predicate(args(pod(**{"00default": 10 * GiB}), NODES)))
    assert [n["metadata"]["name"] for n in result["Nodes"]["items"]] == ["big"]
    assert result["Nodes"]["items"][0] == NODES[1]  # the full object, unchanged
    assert result["FailedAndUnresolvableNodes"] == {
        "small": "out of VG free space",
        "none": "no capacity annotation",
        "junk": "bad capacity annotation: 12x",
    }
    assert result["Error"] == ""


def test_filter_passes_everything_for_pods_without_requests() -> None:
    ext, _ = make()
    result = ok(ext.predicate(args(pod(), NODES)))
    assert len(result["Nodes"]["items"]) == 4
    assert result["FailedAndUnresolvableNodes"] == {}


def test_filter_reports_bad_pod_annotation_in_error_field() -> None:
    ext, _ = make()
    result = ok(ext.predicate(args(pod(ssd="-1"), NODES)))
    assert "capacity.topolvm.io/ssd" in result["Error"]
    assert result["Nodes"] is None


def test_names_mode_uses_the_cache() -> None:
    ext, _ = make()
    ok(ext.predicate(args(pod(), NODES[:2])))  # a full-node request teaches the cache
    names = json.dumps({"Pod": pod(**{"00default": GiB}), "NodeNames": ["small", "big", "stranger"]}).encode()
    result = ok(ext.predicate(names))
    assert result["NodeNames"] == ["small", "big"]
    assert result["Nodes"] is None
    assert "stranger" in result["FailedAndUnresolvableNodes"]
    scores = ok(ext.prioritize(names))
    assert {s["Host"]: s["Score"] for s in scores}["stranger"] == 0


def test_prioritize_scores_with_per_class_divisors() -> None:
    ext, _ = make(ssd=4)
    nodes = [node("a", ssd=64 * GiB, hdd=2 * GiB), node("b", ssd=1024 * GiB, hdd=1024 * GiB), node("c")]
    scores = ok(ext.prioritize(args(pod(ssd=GiB, hdd=GiB), nodes)))
    # a: ssd log2(64/4)=4, hdd log2(2)=1 -> 1; b: ssd log2(256)=8, hdd 10 -> 8; c: nothing -> 0
    assert scores == [{"Host": "a", "Score": 1}, {"Host": "b", "Score": 8}, {"Host": "c", "Score": 0}]


def test_pack_mode_prefers_least_free_that_fits() -> None:
    ext, _ = make(mode="pack", ttl=0)
    nodes = [node("tight", ssd=11 * GiB), node("roomy", ssd=900 * GiB), node("short", ssd=GiB)]
    scores = {s["Host"]: s["Score"] for s in ok(ext.prioritize(args(pod(ssd=10 * GiB), nodes)))}
    assert scores["tight"] > scores["roomy"] > 0
    assert scores["short"] == 0


@pytest.mark.parametrize("names", [False, True], ids=["nodes", "node-names"])
def test_burst_of_pods_does_not_overcommit(names: bool) -> None:
    """Upstream #117: annotations are stale during a burst; reservations keep the node from being oversold."""
    ext, manual = make()
    nodes = [node("n1", ssd=25 * GiB), node("n2", ssd=12 * GiB)]
    ok(ext.predicate(args(pod(), nodes)))
    placed: dict[str, int] = {"n1": 0, "n2": 0}
    for i in range(6):
        request = pod(f"p{i}", ssd=10 * GiB)
        kept = ok(ext.predicate(args(request, nodes, names)))
        kept_names = kept["NodeNames"] if names else [n["metadata"]["name"] for n in kept["Nodes"]["items"]]
        if not kept_names:
            assert "reserved" in " ".join(kept["FailedAndUnresolvableNodes"].values())
            continue
        scores = ok(ext.prioritize(args(request, [n for n in nodes if n["metadata"]["name"] in kept_names], names)))
        best = max(scores, key=lambda s: (s["Score"], -ord(s["Host"][-1])))
        placed[best["Host"]] += 10 * GiB
        # The pod watch sees the claim's selected-node: kube-scheduler's pick when our scores tied.
        ext.service.pod_selected(f"p{i}", best["Host"])
        manual.advance(0.1)
    assert placed == {"n1": 20 * GiB, "n2": 10 * GiB}
    # Once the TTL passes the node is offered again (its annotation never changed, so nothing is known).
    manual.advance(61)
    assert ok(ext.predicate(args(pod("late", ssd=10 * GiB), nodes)))["Nodes"]["items"]


def test_reservation_released_when_annotation_drops() -> None:
    ext, _ = make()
    nodes = [node("n1", ssd=25 * GiB)]
    ok(ext.prioritize(args(pod("p1", ssd=20 * GiB), nodes)))
    assert ok(ext.predicate(args(pod("p2", ssd=10 * GiB), nodes)))["Nodes"]["items"] == []
    # The node agent created p1's LV and republished: 5 GiB left, and that is the truth now.
    nodes = [node("n1", ssd=5 * GiB)]
    result = ok(ext.predicate(args(pod("p3", ssd=4 * GiB), nodes)))
    assert [n["metadata"]["name"] for n in result["Nodes"]["items"]] == ["n1"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "invalid ExtenderArgs", id="empty"),
        pytest.param(b"{", "invalid ExtenderArgs", id="truncated"),
        pytest.param(b"[]", "Expected `object`", id="array"),
        pytest.param(b'{"Nodes": {"items": []}}', "Pod is required", id="no-pod"),
        pytest.param(b'{"Pod": {}}', "Nodes or NodeNames is required", id="no-nodes"),
        pytest.param(b'{"Pod": {"metadata": {"annotations": {"a": 1}}}, "NodeNames": []}', "Expected `str`", id="int"),
        pytest.param(b'{"Pod": {}, "Nodes": {"items": [{"metadata": {}}]}}', "has no metadata.name", id="no-name"),
        pytest.param(b'{"Pod": {}, "Nodes": {"items": [7]}}', "Nodes.items[0]", id="item-not-object"),
    ],
)
@pytest.mark.parametrize("verb", ["predicate", "prioritize"])
def test_bad_requests_are_400_with_a_reason(verb: str, body: bytes, message: str) -> None:
    ext, _ = make()
    reply = getattr(ext, verb)(body)
    assert reply.status == 400
    assert message in reply.body.decode()


def test_node_watch_events_feed_the_cache() -> None:
    from topolvm.extender import kube

    ext, _ = make()
    obj: kube.Object = {"metadata": {"name": "w1", "annotations": {"capacity.topolvm.io/ssd": str(GiB), "x": "y"}}}
    kube.apply_node(ext.holder, node_event("ADDED", obj))
    assert ext.service.index.raw("w1") == {"ssd": str(GiB)}
    kube.apply_node(ext.holder, node_event("DELETED", obj))
    assert ext.service.index.raw("w1") is None


def _kept(result: Any) -> list[str]:
    return [n["metadata"]["name"] for n in result["Nodes"]["items"]]


def test_full_requests_refresh_the_cache_when_an_annotation_changes() -> None:
    """Same node, same position, new annotation: the remembered decode and the index entry are both replaced."""
    ext, _ = make(ttl=0)
    want = pod(ssd=10 * GiB)
    first = [node("a", ssd=5 * GiB), node("b", ssd=50 * GiB)]
    assert _kept(ok(ext.predicate(args(want, first)))) == ["b"]
    assert _kept(ok(ext.predicate(args(want, first)))) == ["b"]  # unchanged: served from what was remembered
    second = [node("a", ssd=500 * GiB), node("b", ssd="junk")]
    result = ok(ext.predicate(args(want, second)))
    assert _kept(result) == ["a"]
    assert result["FailedAndUnresolvableNodes"] == {"b": "bad capacity annotation: junk"}
    assert ext.service.index.free("ssd") == {"a": 500 * GiB, "b": node_index.BAD}
    # Fewer and then more nodes than last time, in another order.
    assert _kept(ok(ext.predicate(args(want, [second[0]])))) == ["a"]
    third = [node("c", ssd=20 * GiB), node("a", ssd=GiB), node("b", ssd=30 * GiB)]
    assert _kept(ok(ext.predicate(args(want, third)))) == ["c", "b"]
    assert ext.service.index.raw("a") == {"ssd": str(GiB)}


def test_prioritize_with_nodes_refreshes_the_cache_too() -> None:
    ext, _ = make(ttl=0)
    ok(ext.predicate(args(pod(), [node("a", ssd=5 * GiB)])))
    scores = ok(ext.prioritize(args(pod(ssd=GiB), [node("a", ssd=1024 * GiB)])))
    assert scores == [{"Host": "a", "Score": 10}]
    assert ext.service.index.raw("a") == {"ssd": str(1024 * GiB)}


def test_watch_update_after_a_full_request_is_not_shadowed() -> None:
    """A full request's annotations are remembered to skip unchanged nodes; a watch event must reset that."""
    ext, _ = make(ttl=0)
    nodes = [node("a", ssd=50 * GiB)]
    want = pod(ssd=10 * GiB)
    assert _kept(ok(ext.predicate(args(want, nodes)))) == ["a"]
    ext.service.node_updated("a", {"ssd": str(GiB)})  # e.g. the node watch saw a newer version
    names = json.dumps({"Pod": want, "NodeNames": ["a"]}).encode()
    assert ok(ext.predicate(names))["NodeNames"] == []
    # The same full request again must put its own (older) value back, as it did before the cache existed.
    assert _kept(ok(ext.predicate(args(want, nodes)))) == ["a"]
    assert ok(ext.predicate(names))["NodeNames"] == ["a"]
    ext.service.node_removed("a")
    assert ok(ext.predicate(names))["FailedAndUnresolvableNodes"] == {"a": verbs.REASON_NOT_CACHED}


def test_duplicate_nodes_in_a_full_request_are_judged_item_by_item() -> None:
    ext, _ = make(ttl=0)
    want = pod(ssd=10 * GiB)
    nodes = [node("a", ssd=5 * GiB), node("b", ssd=50 * GiB), node("a", ssd=50 * GiB)]
    result = ok(ext.predicate(args(want, nodes)))
    # As before the index: a failing copy fails the name, so both copies of "a" go.
    assert _kept(result) == ["b"]
    assert result["FailedAndUnresolvableNodes"] == {"a": "out of VG free space"}
    scores = ok(ext.prioritize(args(want, nodes)))
    # One entry per name, the last copy wins; a and b tie, and the expected winner (same bytes: by name) keeps 5.
    assert scores == [{"Host": "a", "Score": 5}, {"Host": "b", "Score": 4}]


def test_duplicate_names_are_scored_once() -> None:
    ext, _ = make(ttl=0)
    ok(ext.predicate(args(pod(), [node("a", ssd=50 * GiB), node("b", ssd=5 * GiB)])))
    names = json.dumps({"Pod": pod(ssd=10 * GiB), "NodeNames": ["a", "b", "a"]}).encode()
    assert ok(ext.predicate(names))["NodeNames"] == ["a", "a"]
    assert ok(ext.prioritize(names)) == [{"Host": "a", "Score": 5}, {"Host": "b", "Score": 0}]


@pytest.mark.parametrize("mode", ["spread", "pack"])
def test_index_path_equals_item_by_item_path(mode: str) -> None:
    """The index-backed decisions equal the per-item reference path (kept for duplicate names)."""
    ext, manual = make(mode=mode)
    service = ext.service
    nodes = [node(f"n{i}", ssd=(i * 7 % 40) * GiB, hdd=(i * 13 % 30) * GiB) for i in range(60)]
    nodes.append(node("junk", ssd="x", hdd=GiB))
    nodes.append(node("none"))
    ok(ext.predicate(args(pod(), nodes)))
    names = [n["metadata"]["name"] for n in nodes]
    items = [scheduler.Item(name, service.index.raw(name)) for name in names]
    for i in range(8):
        want = scheduler.Pod(f"p{i}", requested={"ssd": (3 + i) * GiB, "hdd": (i % 3) * GiB})
        assert service.filter(want, names) == service.filter_items(want, items)
        fast = service.prioritize(want, names)
        held = [(r.pod, r.node, r.size) for r in service.ledger.reservations()]
        service.ledger.release(want.key, reservations.EndReason.RESCHEDULED)
        slow = service.prioritize_items(want, items)
        assert dict(zip(fast.names, fast.scores, strict=True)) == dict(zip(slow.names, slow.scores, strict=True))
        assert fast.reserved == slow.reserved
        assert [(r.pod, r.node, r.size) for r in service.ledger.reservations()] == held
        manual.advance(1)


# --- reservations under kube-scheduler's real call sequence ------------------------------------------------------


@pytest.mark.parametrize("names", [False, True], ids=["nodes", "node-names"])
def test_a_lone_survivor_of_the_filter_is_reserved(names: bool) -> None:
    """kube-scheduler does not call prioritize when one node is left, so the filter must reserve it."""
    ext, _ = make()
    nodes = [node("big", ssd=5 * GiB), node("small", ssd=GiB)]
    ok(ext.predicate(args(pod(), nodes)))
    first = ok(ext.predicate(args(pod("p1", ssd=3 * GiB), nodes, names)))
    assert (first["NodeNames"] if names else _kept(first)) == ["big"]
    second = ok(ext.predicate(args(pod("p2", ssd=3 * GiB), nodes, names)))
    assert second["FailedAndUnresolvableNodes"]["big"] == (
        scheduling.REASON_NO_SPACE + scheduling.REASON_AFTER_RESERVATIONS
    )


def test_claims_of_the_request_pod_steer_and_end_its_reservation() -> None:
    """A PVC's selected-node moves the reservation; the pod's binding ends it (the watches' events)."""
    from topolvm.extender import kube

    ext, _ = make(tie_break="scheduler")
    nodes = [node("n1", ssd=4 * GiB), node("n2", ssd=4 * GiB)]
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-0"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {"name": "tmp", "emptyDir": {}},
    ]
    request = pod("uid-1", volumes, ssd=3 * GiB)
    ok(ext.prioritize(args(request, nodes)))
    assert ext.service.ledger.nodes_of("uid-1") == ("n1", "n2")  # tied: either may be kube-scheduler's pick
    selected = {kube.SELECTED_NODE_ANNOTATION: "n2"}
    scratch = {"metadata": {"namespace": "default", "name": "p-uid-1-scratch", "annotations": selected}}
    kube.apply_claim(ext.holder, claim_event("MODIFIED", scratch))
    assert ext.service.ledger.nodes_of("uid-1") == ("n2",)
    kube.apply_claim(ext.holder, claim_event("MODIFIED", {"metadata": {"namespace": "default", "name": "data-0",
                                                            "annotations": selected}}))  # fmt: skip
    bound = {"metadata": {"namespace": "default", "name": "p-uid-1", "uid": "uid-1"}, "spec": {"nodeName": "n2"}}
    kube.apply_pod(ext.holder, pod_event("MODIFIED", bound))
    assert not ext.service.ledger
    # A bound claim's selected-node is history, even for a pod still pending here.
    ok(ext.prioritize(args(pod("uid-2", volumes, ssd=3 * GiB), nodes)))
    kube.apply_claim(ext.holder, claim_event("MODIFIED", {"metadata": {"namespace": "default", "name": "data-0",
                                                            "annotations": {kube.SELECTED_NODE_ANNOTATION: "n2"}},
                                               "spec": {"volumeName": "pv-1"}}))  # fmt: skip
    assert ext.service.ledger.nodes_of("uid-2") == ("n1", "n2")  # its other claim has no volume yet
    scratch_2 = {"metadata": {"namespace": "default", "name": "p-uid-2-scratch"}, "spec": {"volumeName": "pv-2"}}
    kube.apply_claim(ext.holder, claim_event("MODIFIED", scratch_2))
    assert not ext.service.ledger  # every claim of uid-2 has a volume: both its tied holds end
    for reason, count in (("not-chosen", 1), ("bound", 1), ("claims-bound", 2)):
        sample = ext.metrics.registry.get_sample_value("topolvm_extender_reservation_ends_total", {"reason": reason})
        assert sample == count, reason


def test_pod_watch_events() -> None:
    from topolvm.extender import kube

    ext, _ = make()
    nodes = [node("n1", ssd=10 * GiB), node("n2", ssd=10 * GiB)]
    for uid in ("a", "b", "c"):
        ok(ext.prioritize(args(pod(uid, ssd=GiB), nodes)))
    meta = {"namespace": "default"}
    kube.apply_pod(ext.holder, pod_event("DELETED", {"metadata": {**meta, "name": "p-a", "uid": "a"}}))
    # A nomination (preemption, or a PreBind about to wait) says where the pod goes.
    kube.apply_pod(ext.holder, pod_event("MODIFIED", {"metadata": {**meta, "name": "p-b", "uid": "b"},
                                            "status": {"nominatedNodeName": "n2"}}))  # fmt: skip
    # Leaving the Pending selection shows the last Pending state: bound there already.
    kube.apply_pod(ext.holder, pod_event("DELETED", {"metadata": {**meta, "name": "p-c", "uid": "c"},
                                           "spec": {"nodeName": "n1"}}))  # fmt: skip
    assert {r.pod: r.node for r in ext.service.ledger.reservations()} == {"b": "n2"}


def event(kind: str, decode: Any, raw: Any) -> Any:
    """A watch event as topolvm.kube.client delivers it: the type and the decoded object."""
    return resources.Event(resources.EventType(kind), decode(raw))


def node_event(kind: str, raw: Any) -> Any:
    return event(kind, codec.node_from_json, raw)


def claim_event(kind: str, raw: Any) -> Any:
    return event(kind, codec_workloads.pvc_from_json, raw)


def pod_event(kind: str, raw: Any) -> Any:
    return event(kind, codec_workloads.pod_from_json, raw)
