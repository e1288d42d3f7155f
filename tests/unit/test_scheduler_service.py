"""SchedulerService under kube-scheduler's real call sequence: filter -> (prioritize if several nodes passed) ->
selected-node on the claims -> provisioned -> bound; plus expiry on a timer and the bounded node cache."""

from __future__ import annotations

import pytest

from tests.unit.scheduler_world import TTL, GiB, Reason, World, pod
from topolvm.core import scheduling
from topolvm.services import scheduler


@pytest.mark.parametrize("reported", [True, False], ids=["binds-reported", "ttl-only"])
def test_three_pods_of_3gib_on_4_and_3_5_gib_nodes(reported: bool) -> None:
    """The over-hold a new user met: the extender guessed n1 for p1 (a better score: 2 against 1), but with a
    low extender weight kube-scheduler's other plugins put p1 on n2."""
    world = World()
    svc = world.service
    world.nodes(n1=4, n2=3.5)
    p1, p2, p3 = pod("p1"), pod("p2"), pod("p3")
    assert svc.filter(p1, ["n1", "n2"]).failures == {}
    decision = svc.prioritize(p1, ["n1", "n2"])
    assert (decision.scores, decision.reserved, decision.contenders) == ([2, 1], "n1", ("n1",))  # our guess
    world.clock.advance(1)
    world.nodes(n1=4, n2=0.5)  # p1's volume was made on n2 and the node agent republished
    if reported:
        svc.pod_bound("p1", "n2")
    assert world.held() == ({} if reported else {"p1": "n1"})

    world.clock.advance(1)
    decision = svc.filter(p2, ["n1", "n2"])
    if not reported:  # the stale guess keeps n1 from p2 until the TTL
        assert decision.failures["n1"].endswith(scheduling.REASON_AFTER_RESERVATIONS)
        world.clock.advance(TTL)
        svc.expire()
        assert world.ends[Reason.EXPIRED] == 1
        decision = svc.filter(p2, ["n1", "n2"])
    assert decision.failures == {"n2": scheduling.REASON_NO_SPACE}
    assert decision.reserved == "n1"  # only one node passed: no prioritize will come, so filter reserved
    world.nodes(n1=1, n2=0.5)
    svc.pod_bound("p2", "n1")

    # p3 is refused for the true reason only, nothing is held, and freed space is usable at once.
    assert svc.filter(p3, ["n1", "n2"]).failures == {"n1": scheduling.REASON_NO_SPACE, "n2": scheduling.REASON_NO_SPACE}
    assert not svc.ledger
    svc.pod_deleted("p1")
    world.clock.advance(1)
    world.nodes(n1=1, n2=3.5)  # p1's volume was deleted
    assert svc.filter(p3, ["n1", "n2"]).reserved == "n2"
    if reported:
        assert world.ends == {Reason.BOUND: 1, Reason.PROVISIONED: 1}
    else:
        assert world.ends == {Reason.EXPIRED: 1, Reason.PROVISIONED: 1}


def test_only_one_node_passes_filter_reserves_and_excludes_it_for_the_next_pod() -> None:
    world = World()
    svc = world.service
    world.nodes(big=5, small=1)
    first = svc.filter(pod("p1"), ["big", "small"])
    assert first == scheduler.FilterDecision({"small": scheduling.REASON_NO_SPACE}, "big")
    assert world.starts == [("p1", "big", scheduler.Via.FILTER)]
    second = svc.filter(pod("p2"), ["big", "small"])
    assert second.failures == {
        "big": scheduling.REASON_NO_SPACE + scheduling.REASON_AFTER_RESERVATIONS,
        "small": scheduling.REASON_NO_SPACE,
    }
    assert second.reserved is None
    # The pod's own reservation never counts against it: retrying p1 still fits, and replaces it.
    assert svc.filter(pod("p1"), ["big", "small"]).reserved == "big"
    assert world.held() == {"p1": "big"}
    assert world.ends == {Reason.RESCHEDULED: 1}


def test_filter_with_several_nodes_left_reserves_nothing() -> None:
    world = World()
    world.nodes(a=5, b=5)
    assert world.service.filter(pod("p1"), ["a", "b"]).reserved is None
    assert not world.service.ledger


def test_a_name_listed_twice_is_still_one_node() -> None:
    world = World()
    world.nodes(a=5, b=1)
    assert world.service.filter(pod("p1"), ["a", "b", "a"]).reserved == "a"
    assert world.service.filter(pod("p2", 9), ["b", "b"]).reserved is None  # one failing node, twice
    assert world.held() == {"p1": "a"}


def test_selected_node_moves_the_reservation_to_where_kube_scheduler_put_the_pod() -> None:
    world = World()
    svc = world.service
    world.nodes(n1=8, n2=4)
    svc.prioritize(pod("p1"), ["n1", "n2"])
    assert world.held() == {"p1": "n1"}
    assert svc.claim_selected("default", "data-p1", "n2")
    assert world.held() == {"p1": "n2"}
    assert world.ends == {Reason.REHOMED: 1}
    assert world.starts[-1] == ("p1", "n2", scheduler.Via.SELECTED)
    # n1 is free again for the next pod, n2 is held.
    assert svc.filter(pod("p2"), ["n1", "n2"]).failures == {
        "n2": scheduling.REASON_NO_SPACE + scheduling.REASON_AFTER_RESERVATIONS
    }
    assert not svc.claim_selected("default", "unknown-claim", "n1")
    svc.claim_selected("default", "data-p1", "n2")  # a second claim of the same pod, or a repeated event
    assert world.ends == {Reason.REHOMED: 1}


def test_selected_node_reserves_for_a_pod_that_held_nothing() -> None:
    """E.g. its reservation expired while kube-scheduler was busy; the tracked request is held anew."""
    world = World(ttl=5)
    svc = world.service
    world.nodes(n1=4, n2=4)
    svc.prioritize(pod("p1", claims=("a", "b")), ["n1", "n2"])
    world.clock.advance(10)
    svc.expire()
    assert not svc.ledger
    svc.claim_selected("default", "b", "n2")
    assert world.held() == {"p1": "n2"}
    assert svc.ledger.requests_of("p1") == {"ssd": 3 * GiB}


def test_reservation_follows_its_pod_to_the_end() -> None:
    world = World()
    svc = world.service
    world.nodes(n1=100, n2=10)
    for key in ("bound", "deleted", "gone"):
        svc.prioritize(pod(key), ["n1", "n2"])
    assert len(svc.ledger) == 3
    svc.pod_bound("bound", "n2")
    svc.pod_deleted("deleted")
    svc.node_removed(*svc.ledger.nodes_of("gone"))
    assert not svc.ledger
    assert world.ends == {Reason.BOUND: 1, Reason.DELETED: 1, Reason.NODE_GONE: 1}
    assert svc.tracked_pods() == 1  # "gone" is still pending; the others are forgotten with their claims
    assert not svc.claim_selected("default", "data-bound", "n1")
    svc.pod_bound("never-seen", "n1")  # events about other pods are no-ops
    svc.pod_deleted("never-seen")


def test_expiry_runs_on_the_timer_without_a_request() -> None:
    world = World(ttl=30)
    svc = world.service
    world.nodes(n1=10)
    svc.filter(pod("p1"), ["n1"])
    world.clock.advance(29)
    svc.expire()
    assert len(svc.ledger) == 1
    world.clock.advance(1)
    svc.expire()
    assert not svc.ledger
    assert svc.ledger.reserved_bytes() == 0
    assert world.ends == {Reason.EXPIRED: 1}


def test_annotation_drop_seen_by_the_watch_ends_the_reservation_at_once() -> None:
    world = World(watched=True)
    svc = world.service
    svc.node_updated("n1", {"ssd": str(10 * GiB)})
    svc.filter(pod("p1"), ["n1"])
    svc.node_updated("n1", {"ssd": str(7 * GiB - 4096)})
    assert not svc.ledger
    assert world.ends == {Reason.PROVISIONED: 1}


def test_zero_ttl_reserves_nothing() -> None:
    world = World(ttl=0)
    world.nodes(n1=10)
    assert world.service.filter(pod("p1"), ["n1"]).reserved == "n1"
    assert not world.service.ledger
    assert world.starts == []


# --- bounded memory -------------------------------------------------------------------------------------------


def test_node_cache_stays_bounded_with_many_distinct_names() -> None:
    limits = scheduler.Limits(node_ttl=60, max_nodes=2_000)
    world = World(limits=limits)
    svc = world.service
    peak = 0
    for batch in range(100):  # 50,000 distinct node names, 500 per request
        names = [f"node-{batch}-{i}" for i in range(500)]
        svc.nodes_observed(names, [{"capacity.topolvm.io/ssd": "1"}] * 500)
        peak = max(peak, *svc.node_cache_sizes().values())
        world.clock.advance(0.1)
    assert peak <= limits.max_nodes
    assert len(svc.index) >= limits.max_nodes * 9 // 10 - 500  # evicts down to 90 %, not to nothing
    # Nodes that stop appearing age out: after node_ttl only what was seen lately is left.
    kept = [f"node-99-{i}" for i in range(500)]
    for _ in range(3):
        world.clock.advance(limits.node_ttl / 2)
        svc.nodes_observed(kept, [{"capacity.topolvm.io/ssd": "1"}] * 500)
        svc.expire()
    assert set(svc.index.nodes()) == set(kept)
    assert svc.node_cache_sizes() == {"index": 500, "annotations": 500, "recent": 500}


def test_watched_node_cache_does_not_age_and_drops_deleted_nodes() -> None:
    world = World(watched=True, limits=scheduler.Limits(node_ttl=10, max_nodes=10))
    svc = world.service
    for i in range(20):
        svc.node_updated(f"n{i}", {"ssd": str(GiB)})
    world.clock.advance(100)
    svc.expire()
    assert len(svc.index) == 20
    svc.filter(pod("p1", 0.5), ["n3"])
    svc.nodes_listed([f"n{i}" for i in range(5)])  # a re-list after the watch broke: 15 nodes went meanwhile
    assert sorted(svc.index.nodes()) == [f"n{i}" for i in range(5)]
    assert len(svc.ledger) == 1  # n3 is still there
    svc.node_removed("n3")
    assert world.ends == {Reason.NODE_GONE: 1}


def test_pods_seen_in_requests_are_forgotten_in_time_and_bounded() -> None:
    world = World(limits=scheduler.Limits(pod_ttl=100, max_pods=50))
    svc = world.service
    world.nodes(n1=1000, n2=1000)
    for i in range(200):
        svc.filter(pod(f"p{i}", 0.001), ["n1", "n2"])
    assert svc.tracked_pods() == 50
    assert svc.claim_selected("default", "data-p199", "n1")
    assert not svc.claim_selected("default", "data-p0", "n1")  # forgotten beyond max_pods
    world.clock.advance(101)
    svc.expire()
    assert svc.tracked_pods() == 0


def test_late_events_do_not_hold_a_provisioned_volume_again() -> None:
    """After the annotation drop ended the reservation, the claim's later updates (it becomes Bound, still
    annotated) or the pod's nomination must not take a new one; a new scheduling attempt may."""
    world = World()
    svc = world.service
    world.nodes(n1=10)
    svc.filter(pod("p1"), ["n1"])
    svc.claim_selected("default", "data-p1", "n1")
    world.nodes(n1=7)
    assert not svc.ledger
    svc.claim_selected("default", "data-p1", "n1")
    svc.pod_selected("p1", "n1")
    assert not svc.ledger
    assert world.ends == {Reason.PROVISIONED: 1}
    svc.filter(pod("p1"), ["n1"])  # retried (e.g. PreBind failed): held again, and selected-node works again
    svc.ledger.release("p1", Reason.RESCHEDULED)
    svc.claim_selected("default", "data-p1", "n1")
    assert world.held() == {"p1": "n1"}
