"""Scheduling policy: upstream's filter/score formulas, pack mode, tied top scores and the ledger under the policy
(the node index that applies them to many nodes at once: test_node_index.py)."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topolvm import errors
from topolvm.core import reservations, scheduling

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


SPREAD_EXTENDER = scheduling.Policy()
SPREAD_SCHEDULER = scheduling.Policy(tie_break=scheduling.TieBreak.SCHEDULER)
PACK_SCHEDULER = scheduling.Policy(mode=scheduling.Mode.PACK, tie_break=scheduling.TieBreak.SCHEDULER)


def test_extender_tie_break_lowers_the_other_tied_nodes_and_holds_the_winner_only() -> None:
    scores = {"a": 5, "b": 5, "c": 5, "d": 4, "z": 0}
    free = {"a": 10, "b": 30, "c": 20, "d": 90}
    assert scheduling.rank(scores, free, SPREAD_EXTENDER) == scheduling.Ranking(
        {"a": 4, "b": 5, "c": 4, "d": 4, "z": 0}, ["b"]
    )
    pack = scheduling.Policy(mode=scheduling.Mode.PACK)
    assert scheduling.rank(scores, free, pack).holds == ["a"]
    assert scheduling.rank({"a": 1, "b": 1}, {"a": 5, "b": 9}, SPREAD_EXTENDER).scores == {"a": 0, "b": 1}
    unique = {"a": 5, "b": 4}  # upstream's scores where the top is unique
    assert scheduling.rank(unique, {"a": 1, "b": 9}, SPREAD_EXTENDER) == scheduling.Ranking(unique, ["a"])
    assert scheduling.rank({"z": 0}, {}, SPREAD_EXTENDER) == scheduling.Ranking({"z": 0}, [])


def test_scheduler_tie_break_keeps_the_scores_and_holds_every_tied_node() -> None:
    scores = {"a": 5, "b": 5, "c": 5, "d": 4, "z": 0}
    free = {"a": 10, "b": 30, "c": 20, "d": 90}
    assert scheduling.rank(scores, free, SPREAD_SCHEDULER) == scheduling.Ranking(scores, ["b", "a", "c"])
    assert scheduling.rank(scores, free, PACK_SCHEDULER).holds == ["a", "b", "c"]
    many = {f"n{i:04}": 7 for i in range(2000)}  # no cap: every tied node may be kube-scheduler's pick
    assert scheduling.rank(many, {}, SPREAD_SCHEDULER).holds == list(many)


# kube-scheduler v1.37's default score plugins add at most 100 x (3+2+2+2+2+1+1+1+1+1) = 1600 to a node
# (tests/integration/test_manifests.py); deploy/'s extender weight 200 makes one of our steps worth 2000.
PLUGINS_AT_MOST = 1600
STEP = 200 * 10


@given(
    free=st.lists(st.integers(0, 1000), min_size=2, max_size=5),
    requests=st.lists(st.integers(1, 300), min_size=1, max_size=20),
    seed=st.integers(0, 2**32),
    selected_every=st.integers(1, 4),
    tie_break=st.sampled_from(list(scheduling.TieBreak)),
)
def test_burst_with_tied_scores_never_overcommits(
    free: list[int], requests: list[int], seed: int, selected_every: int, tie_break: scheduling.TieBreak
) -> None:
    """kube-scheduler adds its plugins' scores (up to 1600, modelled as random) to ours times 2000 and takes the
    best total, and the selected-node event of a pod comes only a few pods later. With the extender's tie-break
    its total always names the node the pod is held on; with kube-scheduler's, the pod is held on every tied node.
    Either way each node's promises stay within its free bytes."""
    rng = random.Random(seed)
    ledger = reservations.Ledger(ttl=60)
    raws = {f"n{i}": {"ssd": str(f)} for i, f in enumerate(free)}
    # One score step per doubling of bytes, not of GiB.
    policy = scheduling.Policy(default_divisor=1 / (1 << 30), tie_break=tie_break)
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
            ranking = scheduling.rank(scores, totals, policy)
            ledger.reserve_on(pod, {n: {"ssd": int(raws[n]["ssd"])} for n in ranking.holds}, request, now=i)
            node = max(passed, key=lambda n: ranking.scores[n] * STEP + rng.randint(0, PLUGINS_AT_MOST))
            assert node in ranking.holds
            if tie_break is scheduling.TieBreak.EXTENDER:
                assert node == ranking.holds[0]
        else:
            continue
        placed[node] += size
        unannounced.append((pod, node))
        if i % selected_every == 0:  # the claims' selected-node events of the pods scheduled so far arrive
            for key, chosen in unannounced:
                ledger.keep_only(key, chosen)
            unannounced.clear()
    assert all(placed[n] <= int(raw["ssd"]) for n, raw in raws.items())
