"""When a reservation ends. With pod and claim events (the extender's ``--watch-pods``) only evidence about its
pod ends it: every claim of the pod has a volume, the pod is bound or deleted, kube-scheduler chose another
node, the node is gone, or the TTL. Without them (an upstream-style minimal deployment) a drop of the node's
annotation by the reservation's size ends it too: a heuristic, which any other drop fools."""

from __future__ import annotations

import pytest

from tests.unit.scheduler_world import TTL, GiB, Reason, World, pod
from topolvm.core import scheduling
from topolvm.services import scheduler

AFTER_RESERVATIONS = scheduling.REASON_NO_SPACE + scheduling.REASON_AFTER_RESERVATIONS


def watched(tie_break: scheduling.TieBreak = scheduling.TieBreak.EXTENDER) -> World:
    """A service fed by the node, pod and claim watches, as topolvm-scheduler --watch-nodes --watch-pods is."""
    return World(watched=True, watched_pods=True, tie_break=tie_break)


def annotate(world: World, **gib: float) -> None:
    """The node watch reports new annotations."""
    for name, size in gib.items():
        world.service.node_updated(name, {"ssd": str(int(size * GiB))})


@pytest.mark.parametrize("pods_watched", [True, False], ids=["evidence", "drop-heuristic"])
def test_an_expansion_of_another_volume_does_not_end_a_pending_pods_hold(pods_watched: bool) -> None:
    """n1 has 700 GiB and a (300 GiB) is held there; another volume on n1 is expanded by 300 GiB, so the node
    agent republishes 400 GiB. a still needs its 300 GiB: b (300 GiB) must not be promised n1."""
    world = World(watched=True, watched_pods=pods_watched)
    svc = world.service
    annotate(world, n1=700, n2=10)
    a, b = pod("a", 300), pod("b", 300)
    assert svc.filter(a, ["n1", "n2"]).reserved == "n1"
    annotate(world, n1=400)  # the expansion
    decision = svc.filter(b, ["n1", "n2"])
    if not pods_watched:
        # The failure mode of the heuristic: the drop was credited to a, and b gets the 300 GiB a still needs.
        assert (world.ends, decision.reserved) == ({Reason.PROVISIONED: 1}, "n1")
        return
    assert decision == scheduler.FilterDecision({"n1": AFTER_RESERVATIONS, "n2": scheduling.REASON_NO_SPACE})
    assert world.held() == {"a": "n1"} and not world.ends
    annotate(world, n1=100)  # a's volume is made...
    assert svc.claim_bound("default", "data-a")  # ...and its claim bound to it
    assert not svc.ledger and world.ends == {Reason.CLAIMS_BOUND: 1}
    assert svc.filter(b, ["n1", "n2"]).failures == {"n1": scheduling.REASON_NO_SPACE, "n2": scheduling.REASON_NO_SPACE}


def test_the_hold_ends_when_every_claim_of_the_pod_has_a_volume() -> None:
    world = watched()
    svc = world.service
    annotate(world, n1=100)
    svc.filter(pod("a", 30, claims=("x", "y")), ["n1"])
    annotate(world, n1=85)  # x's volume, made before y's
    assert svc.claim_bound("default", "x")
    assert world.held() == {"a": "n1"}
    assert not svc.claim_bound("default", "someone-elses")
    assert svc.claim_bound("default", "y")
    assert not svc.ledger and world.ends == {Reason.CLAIMS_BOUND: 1}
    # Late events of the same claims do not hold anything again.
    svc.claim_selected("default", "x", "n1")
    svc.pod_selected("a", "n1")
    assert not svc.ledger


def test_a_claim_bound_before_its_pod_was_seen_does_not_count() -> None:
    """The extender learns claims' volumes only from events after it first saw the pod; it cannot tell a claim
    bound before from one whose event has not come, so the pod waits for its binding (the safe side)."""
    world = watched()
    svc = world.service
    annotate(world, n1=100)
    assert not svc.claim_bound("default", "x")  # not known to belong to any pod yet
    svc.filter(pod("a", 30, claims=("x", "y")), ["n1"])
    svc.claim_bound("default", "y")
    assert world.held() == {"a": "n1"}
    svc.pod_bound("a", "n1")
    assert not svc.ledger and world.ends == {Reason.BOUND: 1}


def test_a_claim_deleted_and_made_again_starts_without_a_volume() -> None:
    world = watched()
    svc = world.service
    annotate(world, n1=100)
    svc.filter(pod("a", 30, claims=("x", "y")), ["n1"])
    svc.claim_bound("default", "x")
    svc.claim_deleted("default", "x")  # e.g. deleted and created again, pending
    svc.claim_bound("default", "y")
    assert world.held() == {"a": "n1"}


def test_a_pod_tried_again_after_its_volumes_were_made_is_not_held() -> None:
    world = watched()
    svc = world.service
    annotate(world, n1=100)
    svc.filter(pod("a", 30), ["n1"])
    svc.claim_bound("default", "data-a")
    annotate(world, n1=70)
    assert svc.filter(pod("a", 30), ["n1"]).reserved == "n1"  # PreBind failed later: it goes where its volume is
    assert not svc.ledger and world.starts == [("a", "n1", scheduler.Via.FILTER)]


def test_drops_neither_end_nor_narrow_tied_holds_only_the_selected_node_does() -> None:
    world = watched(tie_break=scheduling.TieBreak.SCHEDULER)
    svc = world.service
    annotate(world, n1=400, n2=400)
    assert svc.prioritize(pod("a", 300), ["n1", "n2"]).contenders == ("n1", "n2")
    annotate(world, n2=100)  # a thin snapshot, or a's volume: only a's claim can say
    assert world.held_on() == {"a": {"n1", "n2"}}
    svc.claim_selected("default", "data-a", "n2")
    assert world.held_on() == {"a": {"n2"}} and world.ends == {Reason.NOT_CHOSEN: 1}


def test_the_other_ends_still_apply_with_pod_events() -> None:
    world = watched()
    svc = world.service
    annotate(world, n1=100, n2=100, n3=100)
    for key, node in (("bound", "n1"), ("deleted", "n2"), ("gone", "n3"), ("late", "n1")):
        svc.filter(pod(key, 10), [node])
    svc.pod_bound("bound", "n1")
    svc.pod_deleted("deleted")
    svc.node_removed("n3")
    world.clock.advance(TTL)
    svc.expire()
    assert not svc.ledger
    assert world.ends == {Reason.BOUND: 1, Reason.DELETED: 1, Reason.NODE_GONE: 1, Reason.EXPIRED: 1}
