"""Scheduling policy: upstream's filter/score formulas, pack mode, and the over-commit reservation ledger."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topolvm import errors
from topolvm.core import scheduling

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
    ledger.release("p1")
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
