"""The node index (``topolvm.core.node_index``): the request-sized fast path that applies the scheduling policy to
many nodes at once, held equal to the per-node reference functions of ``topolvm.core.scheduling``."""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topolvm.core import node_index, reservations, scheduling

GiB = 1 << 30
PREFIX = "capacity.topolvm.io/"


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
    ranking = scheduling.rank(scores, totals, policy)
    return ranking.scores, ranking.holds


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
    tie_break=st.sampled_from(list(scheduling.TieBreak)),
)
def test_score_nodes_equals_the_per_node_reference(
    nodes: dict[str, dict[str, str]],
    extra: list[str],
    requested: dict[str, int],
    ops: list[Op],
    mode: scheduling.Mode,
    divisor: float,
    tie_break: scheduling.TieBreak,
) -> None:
    index = node_index.NodeIndex()
    for name, capacities in nodes.items():
        index.update(name, capacities)
    names = [*nodes, *extra]
    policy = scheduling.Policy(divisors={"ssd": divisor}, mode=mode, tie_break=tie_break)
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
