"""Scheduling policy of the extender: which nodes fit a pod's volumes, how to rank them, and what is held back.

Called by ``topolvm.services.scheduler`` (which the extender's HTTP verbs and the simulator both drive), so the
real and the simulated world decide alike.
Pure: standard library only; time enters as a ``now`` parameter (seconds, any monotonic origin).

Formulas follow upstream TopoLVM (docs/compat.md): the filter rejects a node whose capacity annotation for a
requested class is missing, unparsable or too small; the spread score is ``clamp(int(log2(gb / divisor)), 1, 10)``
(1 below a GiB, 0 when empty), minimum over the requested classes. Two additions beyond upstream:

- pack mode (upstream #1049): prefer the node that is left with the least free space after placing the pod;
- a reservation ledger (upstream #117): bytes promised to pods that are still being scheduled are subtracted
  from a node's annotation until the pod is bound or deleted, the annotation drops by them (the node agent saw
  the LV), or a TTL passes.

These are the reference functions that state the rules one node at a time; ``topolvm.core.node_index`` applies
them to thousands of nodes per request, and tests hold the two equal.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Mapping

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


class EndReason(enum.StrEnum):
    """Why a reservation ended (a label of the extender's ``reservation_ends_total`` metric)."""

    BOUND = "bound"  # the pod was bound to a node: its volumes exist, wherever they are
    DELETED = "deleted"  # the pod was deleted before it was bound
    PROVISIONED = "provisioned"  # the node's annotation dropped by the reservation's size: it counts the volume
    REHOMED = "rehomed"  # moved to the node kube-scheduler chose (a claim's selected-node annotation)
    RESCHEDULED = "rescheduled"  # replaced by a new scheduling attempt of the same pod
    EXPIRED = "expired"  # the TTL passed without any of the above
    NODE_GONE = "node-gone"  # the node was deleted or left the extender's cache


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


EndListener = Callable[[Reservation, EndReason], None]


class Ledger:
    """Capacity promised to pods not yet provisioned (upstream #117), as a plain data structure.

    A reservation ends when its TTL passes, when the pod is released (bound, deleted, re-homed or re-reserved;
    the caller says why), or when the node's annotation for that class drops by at least its size (the LV exists,
    so the annotation already counts it); drops are credited to the oldest reservations first. A rise of the
    annotation (a volume was deleted) only moves the baseline. Every end is reported to ``on_end`` with its
    reason. Not thread-safe: one caller at a time.
    """

    def __init__(self, ttl: float, on_end: EndListener | None = None) -> None:
        if not math.isfinite(ttl) or ttl < 0:
            raise errors.ConfigError(f"reservation TTL must be a non-negative number of seconds, got {ttl!r}")
        self.ttl = ttl
        self.on_end = on_end
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._by_pod: dict[str, list[tuple[str, str]]] = {}
        self._slots_per_node: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(slot.reservations) for slot in self._slots.values())

    def __bool__(self) -> bool:
        return bool(self._slots)

    def nodes(self) -> set[str]:
        """Nodes with at least one outstanding reservation (a new set)."""
        return set(self._slots_per_node)

    def holds(self, node: str) -> bool:
        return node in self._slots_per_node

    def reserved_bytes(self) -> int:
        return sum(r.size for slot in self._slots.values() for r in slot.reservations)

    def node_of(self, pod: str) -> str | None:
        """The node ``pod`` holds reservations on, if any (a pod is only ever reserved on one node)."""
        keys = self._by_pod.get(pod)
        return keys[0][0] if keys else None

    def requests_of(self, pod: str) -> dict[str, int]:
        """What ``pod`` holds, per class (empty when it holds nothing)."""
        result: dict[str, int] = {}
        for key in self._by_pod.get(pod, ()):
            for r in self._slots[key].reservations:
                if r.pod == pod:
                    result[r.device_class] = result.get(r.device_class, 0) + r.size
        return result

    def reserve(
        self,
        pod: str,
        node: str,
        requests: Mapping[str, int],
        observed: Mapping[str, int | None],
        now: float,
        *,
        replaced: EndReason = EndReason.RESCHEDULED,
    ) -> list[Reservation]:
        """Hold ``requests`` for ``pod`` on ``node`` (``observed``: the node's annotation per class right now).

        A reservation the pod already holds ends first, with reason ``replaced``. Returns what was reserved.
        """
        self.release(pod, replaced)
        if self.ttl == 0:
            return []
        keys: list[tuple[str, str]] = []
        made: list[Reservation] = []
        for device_class, size in requests.items():
            if size <= 0:
                continue
            key = (node, device_class)
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(baseline=observed.get(device_class))
                self._slots_per_node[node] = self._slots_per_node.get(node, 0) + 1
            reservation = Reservation(pod, node, device_class, size, now + self.ttl)
            slot.reservations.append(reservation)
            made.append(reservation)
            keys.append(key)
        if keys:
            self._by_pod[pod] = keys
        return made

    def release(self, pod: str, reason: EndReason) -> int:
        """End every reservation of ``pod``; returns how many ended."""
        ended = 0
        for key in self._by_pod.pop(pod, ()):
            slot = self._slots.get(key)
            if slot is None:
                continue
            kept = []
            for r in slot.reservations:
                if r.pod == pod:
                    ended += 1
                    self._ended(r, reason)
                else:
                    kept.append(r)
            slot.reservations = kept
            if not kept:
                self._drop_slot(key)
        return ended

    def release_node(self, node: str, reason: EndReason) -> int:
        """End every reservation on ``node``; returns how many ended."""
        pods = {r.pod for (name, _), slot in self._slots.items() if name == node for r in slot.reservations}
        return sum(self.release(pod, reason) for pod in sorted(pods))

    def held(self, node: str, device_class: str, observed: int | None, now: float, exclude: str = "") -> int:
        """Bytes held on (node, class) for pods other than ``exclude``, after crediting annotation drops."""
        key = (node, device_class)
        slot = self._slots.get(key)
        if slot is None:
            return 0
        self._settle(key, slot, observed, now)
        return sum(r.size for r in slot.reservations if r.pod != exclude)

    def settle(self, node: str, observed: Mapping[str, int | None], now: float) -> None:
        """Credit a new annotation value of ``node`` (per class) to its reservations now, not at the next look."""
        for device_class, value in observed.items():
            key = (node, device_class)
            slot = self._slots.get(key)
            if slot is not None:
                self._settle(key, slot, value, now)

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
        ended: list[tuple[Reservation, EndReason]] = []
        kept: list[Reservation] = []
        for r in slot.reservations:
            if r.expires > now:
                kept.append(r)
            else:
                ended.append((r, EndReason.EXPIRED))
        if observed is not None and slot.baseline is not None and observed < slot.baseline:
            drop = slot.baseline - observed
            while kept and kept[0].size <= drop:
                drop -= kept[0].size
                ended.append((kept.pop(0), EndReason.PROVISIONED))
        if observed is not None:
            slot.baseline = observed
        if ended:
            slot.reservations = kept
            for r, reason in ended:
                self._forget(r.pod, key)
                self._ended(r, reason)
        if not kept:
            self._drop_slot(key)

    def _drop_slot(self, key: tuple[str, str]) -> None:
        if self._slots.pop(key, None) is None:
            return
        node = key[0]
        left = self._slots_per_node[node] - 1
        if left:
            self._slots_per_node[node] = left
        else:
            del self._slots_per_node[node]

    def _ended(self, reservation: Reservation, reason: EndReason) -> None:
        if self.on_end is not None:
            self.on_end(reservation, reason)

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
