"""Scheduling policy: upstream's filter/score formulas, pack mode, tied top scores, the ledger under the policy, and
the node index that applies them to many nodes at once."""

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
from topolvm.core import node_index, reservations, scheduling

GiB = 1 << 30
PREFIX = "capacity.topolvm.io/"


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


# --- the ledger under the policy ---------------------------------------------------------------------------


def test_usable_subtracts_other_pods_reservations() -> None:
    ledger = reservations.Ledger(ttl=60)
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
    ledger = reservations.Ledger(ttl=60)
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
    ledger = reservations.Ledger(ttl=60)
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


def test_index_column_is_remembered_only_while_nothing_changes() -> None:
    index = node_index.NodeIndex()
    index.update("n1", {"ssd": "100", "hdd": "5"})
    index.update("n2", {"ssd": "7"})
    names = ["n1", "n2"]
    first = index.column("ssd", names)
    first[0] = -99  # callers may overwrite their copy (score_nodes writes usable bytes into it)
    assert index.column("ssd", ["n1", "n2"]) == [100, 7]
    assert index.column("hdd", names) == [5, node_index.MISSING]
    names.reverse()  # the same list, changed: asked again
    assert index.column("ssd", names) == [7, 100]
    index.update("n2", {"ssd": "8"})
    assert index.column("ssd", names) == [8, 100]
    index.remove("n1")
    assert index.column("ssd", names) == [8, node_index.MISSING]
    assert index.column("ssd", ("n2",)) == [8]


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


def _ledger(ops: list[Op], index: node_index.NodeIndex) -> reservations.Ledger:
    """Reservations as ``ops`` take them; ``bump`` bytes are added to the first node's baselines, so that the
    index's annotations read as drops there (a volume provisioned since), which end reservations there and tied
    holds on the other nodes."""
    ledger = reservations.Ledger(ttl=10)
    for pod, nodes, requests, when, bump in ops:
        observed: dict[str, dict[str, int | None]] = {}
        for node in nodes:
            raw = index.raw(node) or {}
            extra = bump if node == nodes[0] else 0
            values = {c: scheduling.parse_free(raw.get(c)) for c in requests}
            observed[node] = {c: None if v is None else v + extra for c, v in values.items()}
        ledger.reserve_on(pod, observed, requests, now=when)
    return ledger


def _state(ledger: reservations.Ledger) -> list[tuple[Any, ...]]:
    return sorted(map(dataclasses.astuple, ledger.reservations()))


def _reference_filter(
    index: node_index.NodeIndex, names: list[str], requested: dict[str, int], ledger: reservations.Ledger, now: float
) -> dict[str, str]:
    """The extender's per-node filter loop before the index existed."""
    failures: dict[str, str] = {}
    held = ledger.nodes() if ledger else set()
    for name in names:
        raw = index.raw(name)
        if raw is None:
            failures[name] = scheduling.REASON_UNKNOWN_NODE
            continue
        use = ledger if name in held else reservations.Ledger(0)
        usable = scheduling.usable(name, raw, requested, use, now=now, pod="me")
        reason = scheduling.filter_reason(usable, raw, requested)
        if reason == scheduling.REASON_NO_SPACE and ledger and name in ledger.nodes():
            plain = scheduling.usable(name, raw, requested, reservations.Ledger(0), now=now)
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
    ledger: reservations.Ledger,
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
        use = ledger if name in held else reservations.Ledger(0)
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
    ledger = reservations.Ledger(ttl=60)
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
