"""Scheduling policy: upstream's filter/score formulas, pack mode, and the over-commit reservation ledger."""

from __future__ import annotations

import bisect
import collections
import dataclasses
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topolvm import errors
from topolvm.core import node_index, scheduling

GiB = 1 << 30
PREFIX = "capacity.topolvm.io/"
Reason = scheduling.EndReason


@pytest.mark.parametrize(
    ("capacity", "divisor", "score"),
    [
        pytest.param(0, 1, 0, id="empty"),
        pytest.param(1, 1, 1, id="one-byte"),
        pytest.param(GiB - 1, 1, 1, id="below-a-gib"),
        pytest.param(GiB, 1, 1, id="one-gib-log-zero-clamped"),
        pytest.param(4 * GiB, 1, 2, id="four-gib"),
        pytest.param(1023 * GiB, 1, 9, id="just-below-1tib"),
        pytest.param(1024 * GiB, 1, 10, id="1tib"),
        pytest.param(1 << 60, 1, 10, id="huge-clamped"),
        pytest.param(40 * GiB, 10, 2, id="divisor-10"),
        pytest.param(5 * GiB, 10, 1, id="divisor-above-gib-count"),
        pytest.param(6 * GiB, 0.5, 3, id="fractional-divisor"),
    ],
)
def test_capacity_to_score_matches_upstream(capacity: int, divisor: float, score: int) -> None:
    assert scheduling.capacity_to_score(capacity, divisor) == score


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        pytest.param("1073741824", 1073741824, id="plain"),
        pytest.param("0", 0, id="zero"),
        pytest.param("18446744073709551615", (1 << 64) - 1, id="uint64-max"),
        pytest.param("18446744073709551616", None, id="uint64-overflow"),
        pytest.param("-1", None, id="negative"),
        pytest.param("+1", None, id="plus-sign"),
        pytest.param(" 1", None, id="space"),
        pytest.param("1_000", None, id="underscore"),
        pytest.param("1e9", None, id="float"),
        pytest.param("١٢", None, id="arabic-digits"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_parse_free_is_go_parseuint(value: str | None, parsed: int | None) -> None:
    assert scheduling.parse_free(value) == parsed


def test_requested_bytes_reads_capacity_annotations_only() -> None:
    annotations = {PREFIX + "00default": "100", PREFIX + "ssd": "7", "other/x": "junk"}
    assert scheduling.requested_bytes(annotations) == {"00default": 100, "ssd": 7}


@pytest.mark.parametrize("value", ["-5", "abc", "", "9223372036854775808"])
def test_requested_bytes_rejects_garbage(value: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=r"capacity\.topolvm\.io/ssd"):
        scheduling.requested_bytes({PREFIX + "ssd": value})


@pytest.mark.parametrize(
    ("free", "raw", "reason"),
    [
        pytest.param({"ssd": 10}, {"ssd": "10"}, "", id="fits"),
        pytest.param({"ssd": 9}, {"ssd": "9"}, "out of VG free space", id="too-small"),
        pytest.param({"ssd": None}, {}, "no capacity annotation", id="missing"),
        pytest.param({"ssd": None}, {"ssd": "x"}, "bad capacity annotation: x", id="garbage"),
    ],
)
def test_filter_reason(free: dict[str, int | None], raw: dict[str, str], reason: str) -> None:
    assert scheduling.filter_reason(free, raw, {"ssd": 10}) == reason


def test_node_score_is_min_over_classes_and_skips_missing() -> None:
    policy = scheduling.Policy(default_divisor=1, divisors={"hdd": 4})
    free: dict[str, int | None] = {"ssd": 1024 * GiB, "hdd": 16 * GiB, "nvme": None}
    assert scheduling.node_score(free, {"ssd": 1, "hdd": 1, "nvme": 1}, policy) == 2
    assert scheduling.node_score({"x": None}, {"x": 1}, policy) == 0


def test_pack_prefers_tight_fit() -> None:
    policy = scheduling.Policy(mode=scheduling.Mode.PACK)
    request = {"ssd": 10 * GiB}
    tight = scheduling.node_score({"ssd": 10 * GiB + 5}, request, policy)
    medium = scheduling.node_score({"ssd": 50 * GiB}, request, policy)
    roomy = scheduling.node_score({"ssd": 5000 * GiB}, request, policy)
    assert tight == 10
    assert tight > medium > roomy >= 1


@given(st.integers(0, 1 << 62), st.integers(0, 1 << 62), st.floats(0.01, 1000))
def test_pack_score_monotone_in_leftover(a: int, b: int, divisor: float) -> None:
    low, high = sorted((a, b))
    assert scheduling.pack_score(low, 0, divisor) >= scheduling.pack_score(high, 0, divisor) or low == 0


@given(st.integers(0, (1 << 64) - 1), st.floats(0.01, 1000))
def test_spread_score_in_range(capacity: int, divisor: float) -> None:
    assert 0 <= scheduling.capacity_to_score(capacity, divisor) <= 10


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_policy_rejects_bad_divisors(bad: float) -> None:
    with pytest.raises(errors.ConfigError):
        scheduling.Policy(default_divisor=bad)
    with pytest.raises(errors.ConfigError, match="ssd"):
        scheduling.Policy(divisors={"ssd": bad})


def test_choose_breaks_ties_by_free_then_name() -> None:
    scores = {"a": 5, "b": 5, "c": 5, "z": 0}
    free = {"a": 10, "b": 30, "c": 30}
    assert scheduling.choose(scores, free, scheduling.Mode.SPREAD) == "b"
    assert scheduling.choose(scores, free, scheduling.Mode.PACK) == "a"
    assert scheduling.choose({"z": 0}, {}, scheduling.Mode.SPREAD) is None


# --- the ledger -------------------------------------------------------------------------------------------


def test_reservation_holds_until_ttl() -> None:
    ledger = scheduling.Ledger(ttl=30)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    assert ledger.held("n1", "ssd", 100, now=29.9) == 10
    assert ledger.held("n1", "ssd", 100, now=29.9, exclude="p1") == 0
    assert ledger.held("n1", "ssd", 100, now=30) == 0
    assert not ledger


def test_annotation_drop_consumes_oldest_reservations() -> None:
    ledger = scheduling.Ledger(ttl=60)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    ledger.reserve("p2", "n1", {"ssd": 10}, {"ssd": 100}, now=1)
    # The node agent saw p1's LV (rounded up to extents): only p2 is still outstanding.
    assert ledger.held("n1", "ssd", 88, now=2) == 10
    # A rise (some volume deleted) moves the baseline but proves nothing about p2.
    assert ledger.held("n1", "ssd", 95, now=3) == 10
    assert ledger.held("n1", "ssd", 85, now=4) == 0
    assert len(ledger) == 0


def test_rereserving_a_pod_replaces_its_reservation() -> None:
    ledger = scheduling.Ledger(ttl=60)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    ledger.reserve("p1", "n2", {"ssd": 10}, {"ssd": 100}, now=1)
    assert ledger.held("n1", "ssd", 100, now=2) == 0
    assert ledger.held("n2", "ssd", 100, now=2) == 10
    ledger.release("p1", scheduling.EndReason.DELETED)
    assert len(ledger) == 0


def test_expire_drops_old_reservations() -> None:
    ledger = scheduling.Ledger(ttl=5)
    ledger.reserve("p1", "n1", {"ssd": 10, "hdd": 3}, {"ssd": 100, "hdd": None}, now=0)
    ledger.reserve("p2", "n2", {"ssd": 10}, {}, now=4)
    assert ledger.expire(now=6) == 2
    assert {r.pod for r in ledger.reservations()} == {"p2"}
    assert ledger.nodes() == {"n2"}


def test_zero_ttl_disables_the_ledger() -> None:
    ledger = scheduling.Ledger(ttl=0)
    ledger.reserve("p1", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    assert not ledger


def test_usable_subtracts_other_pods_reservations() -> None:
    ledger = scheduling.Ledger(ttl=60)
    ledger.reserve("p1", "n1", {"ssd": 70}, {"ssd": 100}, now=0)
    raw = {"ssd": "100", "bad": "x"}
    assert scheduling.usable("n1", raw, ["ssd", "bad", "none"], ledger, now=1, pod="p2") == {
        "ssd": 30,
        "bad": None,
        "none": None,
    }
    assert scheduling.usable("n1", raw, ["ssd"], ledger, now=1, pod="p1") == {"ssd": 100}


@given(
    free=st.integers(0, 1000),
    requests=st.lists(st.integers(1, 300), min_size=1, max_size=30),
)
def test_burst_never_overcommits(free: int, requests: list[int]) -> None:
    """A burst of pods placed through the ledger never promises more than the node's annotation."""
    ledger = scheduling.Ledger(ttl=60)
    raw = {"ssd": str(free)}
    promised = 0
    for i, size in enumerate(requests):
        pod = f"p{i}"
        usable = scheduling.usable("n1", raw, ["ssd"], ledger, now=i, pod=pod)
        if scheduling.filter_reason(usable, raw, {"ssd": size}) == "":
            ledger.reserve(pod, "n1", {"ssd": size}, {"ssd": free}, now=i)
            promised += size
    assert promised <= free


def test_contenders_are_every_node_tied_for_the_top_score_winner_first() -> None:
    scores = {"a": 5, "b": 5, "c": 5, "d": 4, "z": 0}
    free = {"a": 10, "b": 30, "c": 20, "d": 90}
    assert scheduling.contenders(scores, free, scheduling.Mode.SPREAD) == ["b", "a", "c"]
    assert scheduling.contenders(scores, free, scheduling.Mode.PACK) == ["a", "b", "c"]
    assert scheduling.contenders({"a": 5, "b": 4}, {"a": 1, "b": 9}, scheduling.Mode.SPREAD) == ["a"]
    assert scheduling.contenders({"z": 0}, {}, scheduling.Mode.SPREAD) == []
    many = {f"n{i:02}": 7 for i in range(scheduling.MAX_TIED_HOLDS + 1)}
    assert scheduling.contenders(many, {}, scheduling.Mode.SPREAD) == ["n00"]  # too many: the winner only
    assert len(scheduling.contenders(dict(list(many.items())[1:]), {}, scheduling.Mode.SPREAD)) == 16


class Ends:
    """An ``on_end`` listener that records (pod, node, reason)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, scheduling.EndReason]] = []

    def __call__(self, reservation: scheduling.Reservation, reason: scheduling.EndReason) -> None:
        self.seen.append((reservation.pod, reservation.node, reason))


def _tied(ledger: scheduling.Ledger, pod: str, nodes: list[str], size: int, now: float, free: int = 100) -> None:
    ledger.reserve_on(pod, {node: {"ssd": free} for node in nodes}, {"ssd": size}, now=now)


def test_a_pod_held_on_tied_nodes_counts_on_each_until_one_is_chosen() -> None:
    ends = Ends()
    ledger = scheduling.Ledger(ttl=60, on_end=ends)
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
    ledger = scheduling.Ledger(ttl=60, on_end=ends)
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
    ledger = scheduling.Ledger(ttl=60)
    _tied(ledger, "p1", ["n1", "n2"], 30, now=0)
    ledger.reserve("p2", "n1", {"ssd": 10}, {"ssd": 100}, now=0)
    assert ledger.release_node("n1", Reason.NODE_GONE) == 2
    assert ledger.nodes_of("p1") == ("n2",) and ledger.nodes_of("p2") == ()


def test_a_drop_credited_to_a_tied_pod_ends_its_holds_elsewhere() -> None:
    """The drop shows where the volume is: the pod is on that node, so the other tied nodes are free again."""
    ends = Ends()
    ledger = scheduling.Ledger(ttl=60, on_end=ends)
    _tied(ledger, "p1", ["n1", "n2"], 30, now=0)
    assert ledger.held("n2", "ssd", 70, now=1) == 0
    assert not ledger
    assert ends.seen == [("p1", "n2", Reason.PROVISIONED), ("p1", "n1", Reason.NOT_CHOSEN)]


def test_drops_are_credited_to_pods_held_on_that_node_alone_first() -> None:
    """p1 tied on n1 and n2, then p2 could only go to n1. A drop of one volume on n1 is p2's: p1 may be on n2."""
    ends = Ends()
    ledger = scheduling.Ledger(ttl=60, on_end=ends)
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


def _check_invariants(ledger: scheduling.Ledger) -> None:
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
    ledger = scheduling.Ledger(ttl=5, on_end=ends)
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


@given(
    free=st.lists(st.integers(0, 1000), min_size=2, max_size=5),
    requests=st.lists(st.integers(1, 300), min_size=1, max_size=20),
    seed=st.integers(0, 2**32),
    selected_every=st.integers(1, 4),
)
def test_burst_with_tied_scores_never_overcommits(
    free: list[int], requests: list[int], seed: int, selected_every: int
) -> None:
    """kube-scheduler picks at random among the nodes tied for our top score, and the selected-node event of
    a pod comes only a few pods later: holding every tied node keeps each node's promises within its free bytes."""
    rng = random.Random(seed)
    ledger = scheduling.Ledger(ttl=60)
    raws = {f"n{i}": {"ssd": str(f)} for i, f in enumerate(free)}
    policy = scheduling.Policy(default_divisor=1 / (1 << 30))  # one score step per doubling of bytes, not of GiB
    placed: dict[str, int] = collections.Counter()
    unannounced: list[tuple[str, str]] = []
    for i, size in enumerate(requests):
        pod, request = f"p{i}", {"ssd": size}
        usable = {n: scheduling.usable(n, raw, ["ssd"], ledger, now=i, pod=pod) for n, raw in raws.items()}
        passed = [n for n in raws if not scheduling.filter_reason(usable[n], raws[n], request)]
        if len(passed) == 1:
            ledger.reserve(pod, passed[0], request, {"ssd": int(raws[passed[0]]["ssd"])}, now=i)
            node = passed[0]
        elif passed:
            scores = {n: scheduling.node_score(usable[n], request, policy) for n in passed}
            totals = {n: usable[n]["ssd"] or 0 for n in passed}
            found = scheduling.contenders(scores, totals, policy.mode)
            ledger.reserve_on(pod, {n: {"ssd": int(raws[n]["ssd"])} for n in found}, request, now=i)
            node = rng.choice(found)  # other plugins, then a random pick among equal totals
        else:
            continue
        placed[node] += size
        unannounced.append((pod, node))
        if i % selected_every == 0:  # the claims' selected-node events of the pods scheduled so far arrive
            for key, chosen in unannounced:
                ledger.keep_only(key, chosen)
            unannounced.clear()
    assert all(placed[n] <= int(raw["ssd"]) for n, raw in raws.items())


# --- the node index and the request-sized fast path ------------------------------------------------------------


def test_index_parses_once_and_keeps_per_class_maps() -> None:
    index = node_index.NodeIndex()
    assert index.update("n1", {"ssd": "100", "hdd": "x"})
    assert index.update("n2", {"ssd": "7"})
    assert dict(index.free("ssd")) == {"n1": 100, "n2": 7}
    assert dict(index.free("hdd")) == {"n1": node_index.BAD}
    assert dict(index.bad_reasons("hdd")) == {"n1": "bad capacity annotation: x"}
    assert dict(index.free("nvme")) == {}
    assert index.column("ssd", ["n2", "n1", "stranger"]) == [7, 100, node_index.MISSING]
    assert "n1" in index and "stranger" not in index
    assert len(index) == 2
    assert index.raw("n1") == {"ssd": "100", "hdd": "x"}


def test_index_invalidates_a_node_when_its_annotations_change() -> None:
    index = node_index.NodeIndex()
    index.update("n1", {"ssd": "100", "hdd": "x"})
    assert not index.update("n1", {"ssd": "100", "hdd": "x"})  # unchanged: nothing to do
    assert index.update("n1", {"ssd": "40", "nvme": "5"})
    assert dict(index.free("ssd")) == {"n1": 40}
    assert dict(index.free("nvme")) == {"n1": 5}
    assert dict(index.free("hdd")) == {}  # the class the node no longer has is gone from its map
    assert dict(index.bad_reasons("hdd")) == {}
    assert index.update("n1", {"ssd": "oops"})
    assert dict(index.free("ssd")) == {"n1": node_index.BAD}
    assert dict(index.bad_reasons("ssd")) == {"n1": "bad capacity annotation: oops"}
    assert index.update("n1", {"ssd": "9"})
    assert dict(index.bad_reasons("ssd")) == {}
    assert index.remove("n1")
    assert not index.remove("n1")
    assert dict(index.free("ssd")) == {}
    assert index.raw("n1") is None


def test_index_keeps_its_own_copy() -> None:
    index = node_index.NodeIndex()
    capacities = {"ssd": "100"}
    index.update("n1", capacities)
    capacities["ssd"] = "1"
    assert index.raw("n1") == {"ssd": "100"}
    assert dict(index.free("ssd")) == {"n1": 100}


def _reference_steps(mode: scheduling.Mode, divisor: float, want: int, have: int) -> int:
    """One class's score as the per-node reference computes it (0 when it does not fit)."""
    free: dict[str, int | None] = {"c": None if have < 0 else have}
    if scheduling.filter_reason(free, {"c": "x"}, {"c": want}):
        return 0
    return scheduling.node_score(free, {"c": want}, scheduling.Policy(default_divisor=divisor, mode=mode))


@given(
    mode=st.sampled_from(list(scheduling.Mode)),
    divisor=st.one_of(st.sampled_from([1.0, 0.5, 3.0, 10.0, 1e-3]), st.floats(1e-3, 1e4)),
    want=st.one_of(st.integers(0, 4 * GiB), st.integers(0, 1 << 63)),
    have=st.one_of(st.integers(-2, 4096 * GiB), st.integers(0, (1 << 64) - 1)),
)
def test_step_table_equals_the_reference(mode: scheduling.Mode, divisor: float, want: int, have: int) -> None:
    breaks, table = node_index._steps(mode, divisor, want)
    # Every change point and its neighbours, plus the drawn value.
    for value in {have, *breaks, *(b - 1 for b in breaks), *(b + 1 for b in breaks)}:
        if -2 <= value <= scheduling.UINT64_MAX:
            expected = _reference_steps(mode, divisor, want, value)
            assert table[bisect.bisect_right(breaks, value)] == expected, value


Op = tuple[str, list[str], dict[str, int], float, int]  # pod, its nodes (tied when several), request, when, bump


def _ledger(ops: list[Op], index: node_index.NodeIndex) -> scheduling.Ledger:
    """Reservations as ``ops`` take them; ``bump`` bytes are added to the first node's baselines, so that the
    index's annotations read as drops there (a volume provisioned since), which end reservations there and tied
    holds on the other nodes."""
    ledger = scheduling.Ledger(ttl=10)
    for pod, nodes, requests, when, bump in ops:
        observed: dict[str, dict[str, int | None]] = {}
        for node in nodes:
            raw = index.raw(node) or {}
            extra = bump if node == nodes[0] else 0
            values = {c: scheduling.parse_free(raw.get(c)) for c in requests}
            observed[node] = {c: None if v is None else v + extra for c, v in values.items()}
        ledger.reserve_on(pod, observed, requests, now=when)
    return ledger


def _state(ledger: scheduling.Ledger) -> list[tuple[Any, ...]]:
    return sorted(map(dataclasses.astuple, ledger.reservations()))


def _reference_filter(
    index: node_index.NodeIndex, names: list[str], requested: dict[str, int], ledger: scheduling.Ledger, now: float
) -> dict[str, str]:
    """The extender's per-node filter loop before the index existed."""
    failures: dict[str, str] = {}
    held = ledger.nodes() if ledger else set()
    for name in names:
        raw = index.raw(name)
        if raw is None:
            failures[name] = scheduling.REASON_UNKNOWN_NODE
            continue
        use = ledger if name in held else scheduling.Ledger(0)
        usable = scheduling.usable(name, raw, requested, use, now=now, pod="me")
        reason = scheduling.filter_reason(usable, raw, requested)
        if reason == scheduling.REASON_NO_SPACE and ledger and name in ledger.nodes():
            plain = scheduling.usable(name, raw, requested, scheduling.Ledger(0), now=now)
            if not scheduling.filter_reason(plain, raw, requested):
                reason += scheduling.REASON_AFTER_RESERVATIONS
        if reason:
            failures[name] = reason
    return failures


def _reference_scores(
    index: node_index.NodeIndex,
    names: list[str],
    requested: dict[str, int],
    policy: scheduling.Policy,
    ledger: scheduling.Ledger,
    now: float,
) -> tuple[dict[str, int], list[str]]:
    """The extender's per-node prioritize loop before the index existed; the nodes to hold as the reference
    picks them."""
    scores: dict[str, int] = {}
    totals: dict[str, int] = {}
    held = ledger.nodes() if ledger else set()
    for name in names:
        raw = index.raw(name)
        if raw is None:
            scores[name] = 0
            continue
        use = ledger if name in held else scheduling.Ledger(0)
        usable = scheduling.usable(name, raw, requested, use, now=now, pod="me")
        fits = not scheduling.filter_reason(usable, raw, requested)
        scores[name] = scheduling.node_score(usable, requested, policy) if fits else 0
        totals[name] = sum(v for v in usable.values() if v is not None)
    return scores, scheduling.contenders(scores, totals, policy.mode)


_GIB_TEXT = st.integers(0, 300).map(lambda gib: str(gib * GiB))
_ANNOTATION = st.one_of(  # mostly valid sizes, so that reservations make a difference
    _GIB_TEXT,
    _GIB_TEXT,
    _GIB_TEXT,
    st.integers(0, 1 << 40).map(str),
    st.sampled_from(["", "x", "-1", "18446744073709551616", "18446744073709551615", "0"]),
)
_CLASSES = st.sampled_from(["00default", "ssd", "hdd"])
_NODES = st.dictionaries(
    st.sampled_from([f"n{i}" for i in range(6)]), st.dictionaries(_CLASSES, _ANNOTATION, max_size=3), max_size=6
)
_REQUESTED = st.dictionaries(
    _CLASSES,
    st.one_of(
        st.integers(0, 60).map(lambda g: g * GiB), st.integers(0, 200).map(lambda g: g * GiB), st.integers(0, 1 << 40)
    ),
)
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["me", "p1", "p2", "p3"]),
        st.lists(st.sampled_from([f"n{i}" for i in range(6)]), min_size=1, max_size=3, unique=True),
        st.dictionaries(_CLASSES, st.integers(0, 100).map(lambda gib: gib * GiB + 1), min_size=1, max_size=2),
        st.floats(0, 9),
        st.sampled_from([0, 0, 0, GiB, 40 * GiB + 1, 150 * GiB]),
    ),
    max_size=6,
)


@given(nodes=_NODES, extra=st.lists(st.sampled_from(["n1", "n5", "ghost"]), max_size=3), requested=_REQUESTED, ops=_OPS)
def test_filter_nodes_equals_the_per_node_reference(
    nodes: dict[str, dict[str, str]],
    extra: list[str],
    requested: dict[str, int],
    ops: list[Op],
) -> None:
    index = node_index.NodeIndex()
    for name, capacities in nodes.items():
        index.update(name, capacities)
    names = [*nodes, *extra]
    now = 5.0
    reference = _ledger(ops, index)
    expected = _reference_filter(index, names, requested, reference, now) if requested else {}
    ledger = _ledger(ops, index)
    assert node_index.filter_nodes(index, names, requested, ledger, now=now, pod="me") == expected
    if requested:
        assert _state(ledger) == _state(reference)


@pytest.mark.parametrize("names", [["n0", "n1"], ["n1", "n0"]], ids=["drop-first", "drop-last"])
def test_tied_holds_are_settled_in_the_order_of_the_request(names: list[str]) -> None:
    """p1 is held on n0 and n1; n0's annotation shows its volume, which ends its hold on n1 too. The fast path
    visits held nodes in the request's order, as the per-node reference does. (The service settles an
    annotation when it arrives, before any request judges the node, so requests never see this ordering.)"""
    index = node_index.NodeIndex()
    index.update("n0", {"ssd": str(100 * GiB)})
    index.update("n1", {"ssd": str(100 * GiB)})
    ops: list[Op] = [("p1", ["n0", "n1"], {"ssd": 50 * GiB}, 0.0, 50 * GiB)]
    requested = {"ssd": 60 * GiB}
    expected = _reference_filter(index, names, requested, _ledger(ops, index), now=1)
    assert expected == (
        {} if names[0] == "n0" else {"n1": scheduling.REASON_NO_SPACE + scheduling.REASON_AFTER_RESERVATIONS}
    )
    assert node_index.filter_nodes(index, names, requested, _ledger(ops, index), now=1, pod="me") == expected
    policy = scheduling.Policy()
    scores, contenders = _reference_scores(index, names, requested, policy, _ledger(ops, index), now=1)
    result = node_index.score_nodes(index, names, requested, policy, _ledger(ops, index), now=1, pod="me")
    assert (dict(zip(names, result.scores, strict=True)), list(result.contenders)) == (scores, contenders)


@given(
    nodes=_NODES,
    extra=st.lists(st.sampled_from(["ghost", "ghost2"]), max_size=2, unique=True),
    requested=_REQUESTED.filter(bool),
    ops=_OPS,
    mode=st.sampled_from(list(scheduling.Mode)),
    divisor=st.sampled_from([1.0, 0.5, 4.0]),
)
def test_score_nodes_equals_the_per_node_reference(
    nodes: dict[str, dict[str, str]],
    extra: list[str],
    requested: dict[str, int],
    ops: list[Op],
    mode: scheduling.Mode,
    divisor: float,
) -> None:
    index = node_index.NodeIndex()
    for name, capacities in nodes.items():
        index.update(name, capacities)
    names = [*nodes, *extra]
    policy = scheduling.Policy(divisors={"ssd": divisor}, mode=mode)
    now = 5.0
    reference = _ledger(ops, index)
    scores, contenders = _reference_scores(index, names, requested, policy, reference, now)
    ledger = _ledger(ops, index)
    result = node_index.score_nodes(index, names, requested, policy, ledger, now=now, pod="me")
    assert dict(zip(names, result.scores, strict=True)) == scores
    assert list(result.contenders) == contenders
    assert result.chosen == (contenders[0] if contenders else None)
    for name, observed in result.contenders.items():
        raw = index.raw(name) or {}
        assert observed == {c: scheduling.parse_free(raw.get(c)) for c in requested}
    assert _state(ledger) == _state(reference)  # the same drops were settled in the same order


def test_score_nodes_sees_reservations_and_settles_the_ledger() -> None:
    index = node_index.NodeIndex()
    index.update("a", {"ssd": str(30 * GiB)})
    index.update("b", {"ssd": str(20 * GiB)})
    ledger = scheduling.Ledger(ttl=60)
    ledger.reserve("other", "a", {"ssd": 25 * GiB}, {"ssd": 30 * GiB}, now=0)
    policy = scheduling.Policy()
    result = node_index.score_nodes(index, ["a", "b"], {"ssd": 10 * GiB}, policy, ledger, now=1, pod="me")
    assert result.scores == [0, 4]  # a has 5 GiB left after the reservation
    assert result.chosen == "b"
    failures = node_index.filter_nodes(index, ["a", "b"], {"ssd": 10 * GiB}, ledger, now=1, pod="me")
    assert failures == {"a": scheduling.REASON_NO_SPACE + scheduling.REASON_AFTER_RESERVATIONS}
    # The node agent created the reserved LV: the annotation drop ends the reservation when next looked at.
    index.update("a", {"ssd": str(5 * GiB)})
    node_index.filter_nodes(index, ["a"], {"ssd": GiB}, ledger, now=2, pod="me")
    assert not ledger
