"""SchedulerService with nodes that share the top score, in both tie-break modes: ``extender`` names one node
(the others get one step less) and holds the pod there; ``scheduler`` keeps upstream's scores and holds the pod
on every tied node until kube-scheduler's choice shows."""

from __future__ import annotations

import collections
import logging
import random

import pytest

from tests.unit.scheduler_world import TTL, GiB, Reason, World, pod
from topolvm.core import scheduling
from topolvm.services import scheduler

# --- tie-break: extender (the default) -----------------------------------------------------------------------

# kube-scheduler v1.37's default score plugins add at most 1600 to a node; deploy/'s weight 200 makes one step of
# our score 2000 (deploy/scheduler-config.yaml, tests/integration/test_manifests.py).
STEP = 2000
PLUGINS_AT_MOST = 1600


def test_the_expected_winner_keeps_the_top_score_and_alone_holds_the_pod() -> None:
    world = World()
    svc = world.service
    world.nodes(**{"node-0": 400, "node-1": 400, "node-2": 100})
    decision = svc.prioritize(pod("a", 300), ["node-0", "node-1", "node-2"])
    assert (decision.scores, decision.reserved, decision.contenders) == ([8, 7, 0], "node-0", ("node-0",))
    assert world.held_on() == {"a": {"node-0"}}
    # kube-scheduler took node-0, as our scores told it: b (300 GiB) fits only on node-1, and the filter holds it.
    assert svc.filter(pod("b", 300), ["node-0", "node-1"]) == scheduler.FilterDecision(
        {"node-0": scheduling.REASON_NO_SPACE + scheduling.REASON_AFTER_RESERVATIONS}, "node-1"
    )
    fresh = World()  # where the top is unique the scores are upstream's
    fresh.nodes(n1=400, n2=100)
    unique = fresh.service.prioritize(pod("c", 1), ["n1", "n2"])
    assert (unique.scores, unique.contenders) == ([8, 6], ("n1",))


@pytest.mark.parametrize("nodes", [2, 12, 30, 200])
def test_a_burst_lands_where_the_pods_are_held_and_never_overcommits(nodes: int) -> None:
    """2N pods of 40 GiB on N nodes of 100 GiB, and no selected-node event arrives during the burst. kube-scheduler
    adds its plugins' scores (up to 1600, here preferring the nodes that already hold assumed pods, as
    NodeResourcesBalancedAllocation measurably does) to ours times 2000 and takes the best total: always the node
    the pod is held on, so every node gets exactly two."""
    world = World()
    names = [f"n{i:03}" for i in range(nodes)]
    world.service.nodes_observed(names, [{"capacity.topolvm.io/ssd": str(100 * GiB)}] * nodes)
    rng = random.Random(nodes)
    placed: collections.Counter[str] = collections.Counter()
    for i in range(2 * nodes):
        p = pod(f"p{i}", 40)
        failures = world.service.filter(p, names).failures
        passed = [name for name in names if name not in failures]
        if len(passed) == 1:
            chosen = passed[0]  # kube-scheduler binds without scoring
        else:
            decision = world.service.prioritize(p, passed)
            score = dict(zip(decision.names, decision.scores, strict=True))
            plugins = {name: min(PLUGINS_AT_MOST, 800 + 400 * placed[name] + rng.randint(0, 100)) for name in passed}
            chosen = max(passed, key=lambda name: score[name] * STEP + plugins[name])
            assert chosen == decision.reserved
        placed[chosen] += 1
    assert placed == {name: 2 for name in names}


def test_kube_scheduler_taking_another_node_moves_the_hold_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    """Only a weight too low for our scores to decide (or a prioritize reply that did not arrive) does that."""
    world = World()
    world.nodes(n1=400, n2=400)
    world.service.prioritize(pod("a", 300), ["n1", "n2"])
    with caplog.at_level(logging.WARNING):
        assert world.service.claim_selected("default", "data-a", "n2")
    assert world.held_on() == {"a": {"n2"}}
    assert world.ends == {Reason.REHOMED: 1}
    assert "kube-scheduler chose another node than the extender's pod=a node=n2 held=n1" in caplog.text


# --- tie-break: scheduler: kube-scheduler decides, the pod is held on every tied node ---------------------------

NODES = ["node-0", "node-1"]
AFTER_RESERVATIONS = scheduling.REASON_NO_SPACE + scheduling.REASON_AFTER_RESERVATIONS


def tied_world(ttl: float = TTL) -> World:
    """Two 400 GiB nodes; pod a (300 GiB) ties on both (score 8) and is held on both."""
    world = World(ttl=ttl, tie_break=scheduling.TieBreak.SCHEDULER)
    world.service.nodes_observed(NODES, [{"capacity.topolvm.io/ssd": str(400 * GiB)}] * 2)
    assert world.service.filter(pod("a", 300), NODES).failures == {}
    decision = world.service.prioritize(pod("a", 300), NODES)
    assert (decision.scores, decision.reserved, decision.contenders) == ([8, 8], "node-0", ("node-0", "node-1"))
    assert world.starts == [("a", "node-0", scheduler.Via.PRIORITIZE), ("a", "node-1", scheduler.Via.PRIORITIZE)]
    return world


def test_three_300gib_pods_on_two_400gib_nodes_with_tied_scores() -> None:
    """kube-scheduler breaks the tie with its own plugins and a random pick, and schedules b before a's claim
    says where a went: b must not be promised node-0 while a may be there, nor node-1 (the simulator's
    ``test_capacity_tracking_over_commits_a_node_where_the_extender_does_not``)."""
    world = tied_world()
    svc = world.service
    b, c = pod("b", 300), pod("c", 300)
    assert svc.filter(b, NODES) == scheduler.FilterDecision({n: AFTER_RESERVATIONS for n in NODES})
    # kube-scheduler picked node-1 for a; its PreBind writes selected-node on a's claim.
    assert svc.claim_selected("default", "data-a", "node-1")
    assert world.held_on() == {"a": {"node-1"}}
    assert world.ends == {Reason.NOT_CHOSEN: 1}
    # b, retried after kube-scheduler's backoff, fits only on node-0: the filter holds it there.
    assert svc.filter(b, NODES) == scheduler.FilterDecision({"node-1": AFTER_RESERVATIONS}, "node-0")
    assert svc.filter(c, NODES).failures == {n: AFTER_RESERVATIONS for n in NODES}
    svc.pod_bound("a", "node-1")
    svc.pod_bound("b", "node-0")
    assert not svc.ledger
    assert world.ends == {Reason.NOT_CHOSEN: 1, Reason.BOUND: 2}


def test_binding_before_the_selected_node_event_ends_the_tied_holds() -> None:
    world = tied_world()
    world.service.pod_bound("a", "node-1")  # the claim's event was missed or comes later
    assert not world.service.ledger
    assert world.ends == {Reason.BOUND: 1, Reason.NOT_CHOSEN: 1}
    world.service.claim_selected("default", "data-a", "node-1")  # the late event holds nothing again
    assert not world.service.ledger


def test_deletion_ends_the_tied_holds() -> None:
    world = tied_world()
    world.service.pod_deleted("a")
    assert not world.service.ledger
    assert world.ends == {Reason.DELETED: 2}


def test_tied_holds_expire_at_their_ttl() -> None:
    world = tied_world(ttl=30)
    world.clock.advance(30)
    world.service.expire()
    assert not world.service.ledger
    assert world.ends == {Reason.EXPIRED: 2}
    assert world.service.filter(pod("b", 300), NODES).failures == {}


def test_a_volume_seen_on_a_tied_node_ends_the_hold_on_the_others() -> None:
    """Without the pod watch, the node agent's new annotation is the first sign of kube-scheduler's choice."""
    world = tied_world()
    world.service.nodes_observed(
        NODES, [{"capacity.topolvm.io/ssd": str(400 * GiB)}, {"capacity.topolvm.io/ssd": str(100 * GiB)}]
    )
    assert not world.service.ledger
    assert world.ends == {Reason.PROVISIONED: 1, Reason.NOT_CHOSEN: 1}
    assert world.service.filter(pod("b", 300), NODES).reserved == "node-0"


def test_selected_node_outside_the_tied_nodes_moves_the_request_there() -> None:
    world = tied_world()
    world.service.claim_selected("default", "data-a", "node-2")  # another plugin outweighed our score
    assert world.held_on() == {"a": {"node-2"}}
    assert world.ends == {Reason.REHOMED: 2}
    assert world.service.ledger.requests_of("a") == {"ssd": 300 * GiB}
    assert world.starts[-1] == ("a", "node-2", scheduler.Via.SELECTED)


def test_a_deleted_tied_node_ends_only_its_own_hold() -> None:
    world = tied_world()
    world.service.node_removed("node-0")
    assert world.held_on() == {"a": {"node-1"}}
    assert world.ends == {Reason.NODE_GONE: 1}


def test_every_tied_node_is_held_however_many() -> None:
    """No cap: with thousands of equal nodes each may be kube-scheduler's pick. The cost: the pod's request counts
    on all of them until its choice shows, and each held node is judged one by one in every request."""
    world = World(tie_break=scheduling.TieBreak.SCHEDULER)
    names = [f"n{i:04}" for i in range(2000)]
    world.service.nodes_observed(names, [{"capacity.topolvm.io/ssd": str(400 * GiB)}] * len(names))
    decision = world.service.prioritize(pod("a", 300), names)
    assert (decision.reserved, decision.contenders, set(decision.scores)) == ("n0000", tuple(names), {8})
    assert world.held_on() == {"a": set(names)}
    assert world.service.filter(pod("b", 300), names).failures == {name: AFTER_RESERVATIONS for name in names}
    world.service.claim_selected("default", "data-a", "n1234")
    assert world.held_on() == {"a": {"n1234"}}
    assert world.ends == {Reason.NOT_CHOSEN: 1999}
