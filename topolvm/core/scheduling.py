"""Scheduling policy of the extender: which nodes fit a pod's volumes, how to rank them, and what is held back.

Called by ``topolvm.extender`` (HTTP verbs) and by the simulator's kube-scheduler model, so both decide alike.
Pure: standard library only; time enters as a ``now`` parameter (seconds, any monotonic origin).

Formulas follow upstream TopoLVM (docs/compat.md): the filter rejects a node whose capacity annotation for a
requested class is missing, unparsable or too small; the spread score is ``clamp(int(log2(gb / divisor)), 1, 10)``
(1 below a GiB, 0 when empty), minimum over the requested classes. Two additions beyond upstream:

- pack mode (upstream #1049): prefer the node that is left with the least free space after placing the pod;
- a reservation ledger (upstream #117): bytes promised to pods that are still being scheduled are subtracted
  from a node's annotation until the annotation drops by them (the node agent saw the LV) or a TTL passes.

These are the reference functions that state the rules one node at a time; ``topolvm.core.node_index`` applies
them to thousands of nodes per request, and tests hold the two equal.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping

from topolvm import constants, errors

MAX_SCORE = 10  # kube-scheduler's MaxExtenderPriority
UINT64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1
_MAX_DIGITS = 20

REASON_NO_ANNOTATION = "no capacity annotation"
REASON_BAD_ANNOTATION = "bad capacity annotation: "
REASON_NO_SPACE = "out of VG free space"
REASON_UNKNOWN_NODE = "node unknown to the extender (no capacity annotations seen yet)"
REASON_AFTER_RESERVATIONS = " (after capacity reserved for pods being scheduled)"


class Mode(enum.StrEnum):
    SPREAD = "spread"  # upstream: prefer the node with the most free space
    PACK = "pack"  # prefer the node left with the least free space (bin packing)


@dataclasses.dataclass(frozen=True)
class Policy:
    """Scoring configuration; ``divisors`` maps a class's annotation name (``00default`` for "") to its divisor."""

    default_divisor: float = 1.0
    divisors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    mode: Mode = Mode.SPREAD

    def __post_init__(self) -> None:
        for name, value in {"default-divisor": self.default_divisor, **self.divisors}.items():
            if not math.isfinite(value) or value <= 0:
                raise errors.ConfigError(f"divisor {name}: must be a positive number, got {value!r}")

    def divisor(self, device_class: str) -> float:
        return self.divisors.get(device_class, self.default_divisor)


def parse_free(value: str | None) -> int | None:
    """Node annotation value as bytes, or None: only plain decimal digits within uint64 (Go's ParseUint)."""
    if value is None or not value or len(value) > _MAX_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= UINT64_MAX else None


def requested_bytes(annotations: Mapping[str, str]) -> dict[str, int]:
    """Per-class request of a pod from its ``capacity.topolvm.io/<class>`` annotations (set by the webhook).

    Keys are annotation names (``00default`` for the default class). Upstream silently skips values it cannot
    parse; we reject them (and negatives) so a tampered pod fails loudly instead of landing anywhere.
    """
    prefix = constants.CAPACITY_KEY_PREFIX
    result: dict[str, int] = {}
    for key, value in annotations.items():
        if not key.startswith(prefix):
            continue
        device_class = key[len(prefix) :]
        number = parse_free(value)
        if number is None or number > INT64_MAX:
            raise errors.InvalidArgument(f"pod annotation {key}: not a byte count: {value[:64]!r}")
        result[device_class] = number
    return result


def filter_reason(
    free: Mapping[str, int | None],
    raw: Mapping[str, str],
    requested: Mapping[str, int],
) -> str:
    """Why a node cannot take the pod ("" when it can).

    ``free`` holds each requested class's usable bytes (annotation minus reservations; None when the annotation
    is missing or unparsable) and ``raw`` the annotation strings, for the message.
    """
    for device_class, want in requested.items():
        have = free.get(device_class)
        if have is None:
            text = raw.get(device_class)
            if text is None:
                return REASON_NO_ANNOTATION
            return REASON_BAD_ANNOTATION + text[:64]
        if have < want:
            return REASON_NO_SPACE
    return ""


def capacity_to_score(capacity: int, divisor: float) -> int:
    """Upstream's spread score of one class: log2 of free GiB over the divisor, clamped to 1..10 (0 if empty)."""
    gib = capacity >> 30
    if gib == 0:
        return 1 if capacity > 0 else 0
    return min(MAX_SCORE, max(1, int(math.log2(gib / divisor))))


def pack_score(capacity: int, requested: int, divisor: float) -> int:
    """Pack score of one class: 10 for a tight fit, falling by one per doubling of the bytes left over.

    The mirror image of ``capacity_to_score`` applied to what remains after placing the request, so the two
    modes share the divisor's meaning ("how many GiB make a step").
    """
    if capacity <= 0 or capacity < requested:
        return 0
    left_gib = (capacity - requested) >> 30
    if left_gib == 0:
        return MAX_SCORE
    steps = max(0, int(math.log2(left_gib / divisor)))
    return max(1, MAX_SCORE - steps)


def node_score(free: Mapping[str, int | None], requested: Mapping[str, int], policy: Policy) -> int:
    """Score of one node: the minimum over the requested classes it has an annotation for (0 if none)."""
    best = MAX_SCORE + 1
    for device_class, want in requested.items():
        have = free.get(device_class)
        if have is None:
            # Upstream scores an unparsable annotation as 0 capacity and skips a missing one.
            continue
        divisor = policy.divisor(device_class)
        packing = policy.mode is Mode.PACK
        best = min(best, pack_score(have, want, divisor) if packing else capacity_to_score(have, divisor))
    return 0 if best > MAX_SCORE else best


@dataclasses.dataclass(frozen=True)
class Reservation:
    """Bytes promised to one pod on one node and class, until ``expires`` (same clock as ``now``)."""

    pod: str
    node: str
    device_class: str
    size: int
    expires: float


@dataclasses.dataclass
class _Slot:
    """Outstanding reservations of one (node, class), oldest first, and the annotation value last seen."""

    baseline: int | None
    reservations: list[Reservation] = dataclasses.field(default_factory=list)


class Ledger:
    """Capacity promised to pods not yet provisioned (upstream #117), as a plain data structure.

    A reservation ends when its TTL passes, when the pod is released or re-reserved, or when the node's
    annotation for that class drops by at least its size (the LV exists, so the annotation already counts it);
    drops are credited to the oldest reservations first. A rise of the annotation (a volume was deleted) only
    moves the baseline. Not thread-safe: the extender calls it from one event loop.
    """

    def __init__(self, ttl: float) -> None:
        if not math.isfinite(ttl) or ttl < 0:
            raise errors.ConfigError(f"reservation TTL must be a non-negative number of seconds, got {ttl!r}")
        self.ttl = ttl
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._by_pod: dict[str, list[tuple[str, str]]] = {}

    def __len__(self) -> int:
        return sum(len(slot.reservations) for slot in self._slots.values())

    def __bool__(self) -> bool:
        return bool(self._slots)

    def nodes(self) -> set[str]:
        return {node for node, _ in self._slots}

    def reserve(
        self, pod: str, node: str, requests: Mapping[str, int], observed: Mapping[str, int | None], now: float
    ) -> None:
        """Hold ``requests`` for ``pod`` on ``node``; ``observed`` is the node's annotation per class right now."""
        self.release(pod)
        if self.ttl == 0:
            return
        keys: list[tuple[str, str]] = []
        for device_class, size in requests.items():
            if size <= 0:
                continue
            key = (node, device_class)
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(baseline=observed.get(device_class))
            slot.reservations.append(Reservation(pod, node, device_class, size, now + self.ttl))
            keys.append(key)
        if keys:
            self._by_pod[pod] = keys

    def release(self, pod: str) -> None:
        for key in self._by_pod.pop(pod, ()):
            slot = self._slots.get(key)
            if slot is None:
                continue
            slot.reservations = [r for r in slot.reservations if r.pod != pod]
            if not slot.reservations:
                del self._slots[key]

    def held(self, node: str, device_class: str, observed: int | None, now: float, exclude: str = "") -> int:
        """Bytes held on (node, class) for pods other than ``exclude``, after crediting annotation drops."""
        key = (node, device_class)
        slot = self._slots.get(key)
        if slot is None:
            return 0
        self._settle(key, slot, observed, now)
        return sum(r.size for r in slot.reservations if r.pod != exclude)

    def expire(self, now: float) -> int:
        """Drop every reservation past its TTL; returns how many were dropped (for housekeeping and metrics)."""
        dropped = 0
        for key, slot in list(self._slots.items()):
            before = len(slot.reservations)
            self._settle(key, slot, slot.baseline, now)
            dropped += before - len(slot.reservations)
        return dropped

    def reservations(self) -> Iterable[Reservation]:
        for slot in self._slots.values():
            yield from slot.reservations

    def _settle(self, key: tuple[str, str], slot: _Slot, observed: int | None, now: float) -> None:
        kept = [r for r in slot.reservations if r.expires > now]
        if observed is not None and slot.baseline is not None and observed < slot.baseline:
            drop = slot.baseline - observed
            while kept and kept[0].size <= drop:
                drop -= kept[0].size
                kept.pop(0)
        if observed is not None:
            slot.baseline = observed
        if len(kept) != len(slot.reservations):
            gone = {r.pod for r in slot.reservations} - {r.pod for r in kept}
            for pod in gone:
                self._forget(pod, key)
            slot.reservations = kept
        if not kept:
            del self._slots[key]

    def _forget(self, pod: str, key: tuple[str, str]) -> None:
        keys = self._by_pod.get(pod)
        if keys is None:
            return
        remaining = [k for k in keys if k != key]
        if remaining:
            self._by_pod[pod] = remaining
        else:
            del self._by_pod[pod]


def usable(
    node: str,
    raw: Mapping[str, str],
    classes: Iterable[str],
    ledger: Ledger,
    *,
    now: float,
    pod: str = "",
) -> dict[str, int | None]:
    """Per-class usable bytes of a node: annotation minus what the ledger holds for other pods (never < 0)."""
    result: dict[str, int | None] = {}
    for device_class in classes:
        free = parse_free(raw.get(device_class))
        if free is not None and ledger:
            free = max(0, free - ledger.held(node, device_class, free, now, exclude=pod))
        result[device_class] = free
    return result


def choose(scores: Mapping[str, int], free_total: Mapping[str, int], mode: Mode) -> str | None:
    """The node the extender expects kube-scheduler to pick: best score, then most (spread) or least (pack)
    usable bytes, then name; None when nothing scored. Used to place a reservation."""
    best: tuple[int, int, str] | None = None
    for name, score in scores.items():
        if score <= 0:
            continue
        total = free_total.get(name, 0)
        tiebreak = total if mode is Mode.SPREAD else -total
        candidate = (score, tiebreak, name)
        if best is None or candidate[:2] > best[:2] or (candidate[:2] == best[:2] and name < best[2]):
            best = candidate
    return None if best is None else best[2]
