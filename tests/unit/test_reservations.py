"""The over-commit reservation ledger (upstream #117): TTL, annotation drops, tied holds, and its invariants."""

from __future__ import annotations

import collections
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topolvm.core import reservations

Reason = reservations.EndReason


def test_reservation_holds_until_ttl() -> None:
    ledger = reservations.Ledger(ttl=30)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    assert ledger.held("n1", "ssd", 100, now=29.9) == 10
    assert ledger.held("n1", "ssd", 100, now=29.9, exclude="p1") == 0
    assert ledger.held("n1", "ssd", 100, now=30) == 0
    assert not ledger


def test_annotation_drop_consumes_oldest_reservations() -> None:
    ledger = reservations.Ledger(ttl=60)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    ledger.reserve("p2", "n1", {"ssd": 10}, {"ssd": 100}, now=1)
    # The node agent saw p1's LV (rounded up to extents): only p2 is still outstanding.
    assert ledger.held("n1", "ssd", 88, now=2) == 10
    # A rise (some volume deleted) moves the baseline but proves nothing about p2.
    assert ledger.held("n1", "ssd", 95, now=3) == 10
    assert ledger.held("n1", "ssd", 85, now=4) == 0
    assert len(ledger) == 0


def test_without_credit_drops_an_annotation_drop_ends_nothing() -> None:
    """With pod and claim events, only evidence about a pod ends its reservation: a drop may be anyone's volume."""
    ledger = reservations.Ledger(ttl=60, credit_drops=False)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    ledger.reserve_on("p2", {"n1": {"ssd": 100}, "n2": {"ssd": 100}}, {"ssd": 10}, now=1)
    assert ledger.held("n1", "ssd", 70, now=2) == 20
    ledger.settle("n2", {"ssd": 50}, now=3)
    assert ledger.nodes_of("p2") == ("n1", "n2")  # no drop is taken to show where p2 went
    assert ledger.held("n1", "ssd", 70, now=60) == 10  # the TTL still applies
    assert ledger.expire(now=61) == 2


@pytest.mark.parametrize("credit_drops", [True, False], ids=["drops-credited", "evidence-only"])
def test_an_expansion_on_the_node_ends_a_pending_hold_only_when_drops_are_credited(credit_drops: bool) -> None:
    """a (300) is held on n1 (700 free); another volume there grows by 300, so the annotation reads 400. The
    heuristic takes that for a's volume; the ledger fed pod and claim events keeps holding a's 300, the old
    baseline replaced, until the caller releases a on evidence about a."""
    ended: list[tuple[str, str, Reason]] = []
    ledger = reservations.Ledger(
        ttl=60, on_end=lambda r, reason: ended.append((r.pod, r.node, reason)), credit_drops=credit_drops
    )
    ledger.reserve("a", "n1", {"ssd": 300}, {"ssd": 700}, now=0)
    held = ledger.held("n1", "ssd", 400, now=1)
    if credit_drops:
        assert (held, ended) == (0, [("a", "n1", Reason.PROVISIONED)])
        return
    assert (held, ended, ledger.nodes_of("a")) == (300, [], ("n1",))
    assert ledger.held("n1", "ssd", 100, now=2) == 300  # a's own volume: still only the caller can say
    ledger.release("a", Reason.CLAIMS_BOUND)
    assert not ledger and ended == [("a", "n1", Reason.CLAIMS_BOUND)]


def test_rereserving_a_pod_replaces_its_reservation() -> None:
    ledger = reservations.Ledger(ttl=60)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    ledger.reserve("p1", "n2", {"ssd": 10}, {"ssd": 100}, now=1)
    assert ledger.held("n1", "ssd", 100, now=2) == 0
    assert ledger.held("n2", "ssd", 100, now=2) == 10
    ledger.release("p1", reservations.EndReason.DELETED)
    assert len(ledger) == 0


def test_expire_drops_old_reservations() -> None:
    ledger = reservations.Ledger(ttl=5)
    ledger.reserve("p1", "n1", {"ssd": 10, "hdd": 3}, {"ssd": 100, "hdd": None}, now=0)
    ledger.reserve("p2", "n2", {"ssd": 10}, {}, now=4)
    assert ledger.expire(now=6) == 2
    assert {r.pod for r in ledger.reservations()} == {"p2"}
    assert ledger.nodes() == {"n2"}


def test_zero_ttl_disables_the_ledger() -> None:
    ledger = reservations.Ledger(ttl=0)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    assert not ledger


class Ends:
    """An ``on_end`` listener that records (pod, node, reason)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, reservations.EndReason]] = []

    def __call__(self, reservation: reservations.Reservation, reason: reservations.EndReason) -> None:
        self.seen.append((reservation.pod, reservation.node, reason))


def _tied(ledger: reservations.Ledger, pod: str, nodes: list[str], size: int, now: float, free: int = 100) -> None:
    ledger.reserve_on(pod, {node: {"ssd": free} for node in nodes}, {"ssd": size}, now=now)


def test_a_pod_held_on_tied_nodes_counts_on_each_until_one_is_chosen() -> None:
    ends = Ends()
    ledger = reservations.Ledger(ttl=60, on_end=ends)
    _tied(ledger, "p1", ["n1", "n2", "n3"], 30, now=0)
    assert ledger.nodes_of("p1") == ("n1", "n2", "n3")
    assert [ledger.held(n, "ssd", 100, now=1) for n in ("n1", "n2", "n3")] == [30, 30, 30]
    assert (len(ledger), ledger.reserved_bytes(), ledger.pod_count()) == (3, 90, 1)
    assert ledger.requests_of("p1") == {"ssd": 30}  # per node, not the sum over the tied nodes
    assert ledger.keep_only("p1", "n2") == 2
    assert ledger.nodes_of("p1") == ("n2",)
    assert ledger.nodes() == {"n2"}
    assert ends.seen == [("p1", "n1", Reason.NOT_CHOSEN), ("p1", "n3", Reason.NOT_CHOSEN)]
    assert ledger.keep_only("p1", "n2") == 0  # a second claim of the same pod names the same node


def test_a_tied_pod_ends_everywhere_on_release_and_each_at_its_ttl() -> None:
    ends = Ends()
    ledger = reservations.Ledger(ttl=60, on_end=ends)
    _tied(ledger, "p1", ["n1", "n2"], 30, now=0)
    _tied(ledger, "p2", ["n1", "n2"], 30, now=1)
    assert ledger.release("p1", Reason.DELETED) == 2
    assert ledger.held("n1", "ssd", 100, now=60) == 30
    assert ledger.held("n1", "ssd", 100, now=61) == 0  # the TTL ends p2 on n1 ...
    assert ledger.nodes_of("p2") == ("n2",)  # ... and on n2 when that is looked at
    ledger.expire(now=61)
    assert not ledger
    assert collections.Counter(reason for _, _, reason in ends.seen) == {Reason.DELETED: 2, Reason.EXPIRED: 2}


def test_a_deleted_node_ends_only_the_holds_on_it() -> None:
    ledger = reservations.Ledger(ttl=60)
    _tied(ledger, "p1", ["n1", "n2"], 30, now=0)
    ledger.reserve("p2", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    assert ledger.release_node("n1", Reason.NODE_GONE) == 2
    assert ledger.nodes_of("p1") == ("n2",) and ledger.nodes_of("p2") == ()


def test_a_drop_credited_to_a_tied_pod_ends_its_holds_elsewhere() -> None:
    """The drop shows where the volume is: the pod is on that node, so the other tied nodes are free again."""
    ends = Ends()
    ledger = reservations.Ledger(ttl=60, on_end=ends)
    _tied(ledger, "p1", ["n1", "n2"], 30, now=0)
    assert ledger.held("n2", "ssd", 70, now=1) == 0
    assert not ledger
    assert ends.seen == [("p1", "n2", Reason.PROVISIONED), ("p1", "n1", Reason.NOT_CHOSEN)]


def test_drops_are_credited_to_pods_held_on_that_node_alone_first() -> None:
    """p1 tied on n1 and n2, then p2 could only go to n1. A drop of one volume on n1 is p2's: p1 may be on n2."""
    ends = Ends()
    ledger = reservations.Ledger(ttl=60, on_end=ends)
    _tied(ledger, "p1", ["n1", "n2"], 30, now=0)
    ledger.reserve("p2", "n1", {"ssd": 30}, {"ssd": 100}, now=1)
    assert ledger.held("n1", "ssd", 70, now=2) == 30
    assert ends.seen == [("p2", "n1", Reason.PROVISIONED)]
    assert ledger.nodes_of("p1") == ("n1", "n2")
    # Then p1's volume appears on n2: its hold on n1 ends too.
    assert ledger.held("n2", "ssd", 70, now=3) == 0
    assert not ledger
    # Among pods held on several nodes, and among pods held on one, the oldest still comes first.
    _tied(ledger, "old", ["n1", "n2"], 10, now=4)
    _tied(ledger, "new", ["n1", "n3"], 10, now=5)
    assert ledger.held("n1", "ssd", 90, now=6) == 10
    assert ledger.nodes_of("old") == () and ledger.nodes_of("new") == ("n1", "n3")


_NAMES = [f"n{i}" for i in range(4)]
_LEDGER_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            st.sampled_from(["p1", "p2", "p3", "p4"]),
            st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4, unique=True),
            st.dictionaries(st.sampled_from(["ssd", "hdd"]), st.integers(0, 40), min_size=1, max_size=2),
        ),
        st.tuples(st.just("keep_only"), st.sampled_from(["p1", "p2", "p3", "p4"]), st.sampled_from(_NAMES)),
        st.tuples(st.just("release"), st.sampled_from(["p1", "p2", "p3", "p4"])),
        st.tuples(st.just("release_node"), st.sampled_from(_NAMES)),
        st.tuples(st.just("settle"), st.sampled_from(_NAMES), st.sampled_from(["ssd", "hdd"]), st.integers(0, 120)),
        st.tuples(st.just("expire")),
    ),
    max_size=25,
)


def _check_invariants(ledger: reservations.Ledger) -> None:
    """The ledger's index agrees with its slots; a pod holds the same bytes per class on each of its nodes."""
    held: dict[str, dict[str, list[str]]] = {}
    sizes: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for (node, device_class), slot in ledger._slots.items():
        assert slot.reservations, "no empty slots"
        pods = [r.pod for r in slot.reservations]
        assert len(pods) == len(set(pods)), "one reservation per pod and slot"
        expires = [r.expires for r in slot.reservations]
        assert expires == sorted(expires), "oldest first"
        for r in slot.reservations:
            assert (r.node, r.device_class) == (node, device_class)
            held.setdefault(r.pod, {}).setdefault(node, []).append(device_class)
            sizes[(r.pod, device_class)].add(r.size)
    assert {p: {n: sorted(c) for n, c in nodes.items()} for p, nodes in ledger._by_pod.items()} == {
        p: {n: sorted(c) for n, c in nodes.items()} for p, nodes in held.items()
    }
    assert ledger._slots_per_node == collections.Counter(node for node, _ in ledger._slots)
    assert all(len(s) == 1 for s in sizes.values())
    assert ledger.pod_count() == len(held)


@given(ops=_LEDGER_OPS)
def test_ledger_invariants_hold_under_any_sequence(ops: list[tuple[Any, ...]]) -> None:
    ends = Ends()
    ledger = reservations.Ledger(ttl=5, on_end=ends)
    started = 0
    for now, op in enumerate(ops):
        before = len(ends.seen)
        match op:
            case ("reserve", pod, nodes, requests):
                observed = {node: {"ssd": 100, "hdd": 100} for node in nodes}
                started += len(ledger.reserve_on(pod, observed, requests, now=now))
            case ("keep_only", pod, node):
                ledger.keep_only(pod, node)
            case ("release", pod):
                ledger.release(pod, Reason.DELETED)
            case ("release_node", node):
                ledger.release_node(node, Reason.NODE_GONE)
            case ("settle", node, device_class, value):
                ledger.settle(node, {device_class: value}, now=now)
            case _:
                ledger.expire(now=now)
        _check_invariants(ledger)
        assert started - len(ends.seen) == len(ledger)  # every reservation ends once, and is reported
        for pod, node, reason in ends.seen[before:]:
            if reason is Reason.PROVISIONED:
                assert set(ledger.nodes_of(pod)) <= {node}  # its volume is there: no holds elsewhere
