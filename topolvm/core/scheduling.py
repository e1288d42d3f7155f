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

# A pod whose top score is shared by more nodes than this is held on the expected winner only: holding its request
# on dozens of nodes would refuse other pods across the cluster, and with that many equal nodes a wrong guess
# leaves plenty of room elsewhere (see docs/scheduler.md, "Ties").
MAX_TIED_HOLDS = 16


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
    NOT_CHOSEN = "not-chosen"  # held on one of several tied nodes; kube-scheduler chose another of them
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

    A pod holds its request on one node, or on each of several nodes that tied for the top score (kube-scheduler
    may pick any of them) until its choice is known: ``keep_only`` then ends the others (``NOT_CHOSEN``). Each
    (pod, node, class) is one ``Reservation``; the bytes held on a node count against every other pod there, so
    a pod held on k nodes holds k times its request in all.

    A reservation ends when its TTL passes, when the pod is released (bound, deleted, re-homed or re-reserved;
    the caller says why), or when the node's annotation for that class drops by at least its size (the LV exists,
    so the annotation already counts it). Drops are credited to the oldest reservations first, those of pods held
    on that node alone before those of pods held on several tied nodes (which may have gone elsewhere); a drop
    credited to a pod shows where its volume is, so its reservations on other nodes end too (``NOT_CHOSEN``). A
    rise of the annotation (a volume was deleted) only moves the baseline. Every end is reported to ``on_end``
    with its reason. Not thread-safe: one caller at a time.
    """

    def __init__(self, ttl: float, on_end: EndListener | None = None) -> None:
        if not math.isfinite(ttl) or ttl < 0:
            raise errors.ConfigError(f"reservation TTL must be a non-negative number of seconds, got {ttl!r}")
        self.ttl = ttl
        self.on_end = on_end
        self._slots: dict[tuple[str, str], _Slot] = {}
        # pod -> node -> the classes it holds there, in the order taken. Invariant: (node, class) is listed here
        # exactly when the slot (node, class) holds one reservation of the pod; no empty entries.
        self._by_pod: dict[str, dict[str, list[str]]] = {}
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
        """Bytes held over all (node, class): a pod held on several tied nodes counts on each of them."""
        return sum(r.size for slot in self._slots.values() for r in slot.reservations)

    def pod_count(self) -> int:
        """Pods holding at least one reservation."""
        return len(self._by_pod)

    def nodes_of(self, pod: str) -> tuple[str, ...]:
        """The nodes ``pod`` holds reservations on: one, several that tied, or none."""
        return tuple(self._by_pod.get(pod, ()))

    def requests_of(self, pod: str) -> dict[str, int]:
        """What ``pod`` holds per class on any one of its nodes (empty when it holds nothing)."""
        result: dict[str, int] = {}
        for node, classes in self._by_pod.get(pod, {}).items():
            for device_class in classes:
                slot = self._slots.get((node, device_class))
                sizes = [r.size for r in slot.reservations if r.pod == pod] if slot is not None else []
                result[device_class] = max([result.get(device_class, 0), *sizes])
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
        """Hold ``requests`` for ``pod`` on ``node`` alone (``observed``: the node's annotation per class now)."""
        return self.reserve_on(pod, {node: observed}, requests, now, replaced=replaced)

    def reserve_on(
        self,
        pod: str,
        nodes: Mapping[str, Mapping[str, int | None]],
        requests: Mapping[str, int],
        now: float,
        *,
        replaced: EndReason = EndReason.RESCHEDULED,
    ) -> list[Reservation]:
        """Hold ``requests`` for ``pod`` on each of ``nodes`` (node -> its annotation per class right now).

        Whatever the pod already holds ends first, with reason ``replaced``. Returns what was reserved.
        """
        self.release(pod, replaced)
        if self.ttl == 0:
            return []
        held: dict[str, list[str]] = {}
        made: list[Reservation] = []
        for node, observed in nodes.items():
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
                held.setdefault(node, []).append(device_class)
        if held:
            self._by_pod[pod] = held
        return made

    def release(self, pod: str, reason: EndReason) -> int:
        """End every reservation of ``pod``; returns how many ended."""
        return self._end(pod, list(self._by_pod.get(pod, ())), reason)

    def keep_only(self, pod: str, node: str, reason: EndReason = EndReason.NOT_CHOSEN) -> int:
        """kube-scheduler chose ``node`` for ``pod``: end its reservations on every other node (those it held
        there keep holding); returns how many ended."""
        return self._end(pod, [name for name in self._by_pod.get(pod, ()) if name != node], reason)

    def release_node(self, node: str, reason: EndReason) -> int:
        """End every reservation on ``node`` (pods also held on other nodes keep those); returns how many ended."""
        pods = {r.pod for (name, _), slot in self._slots.items() if name == node for r in slot.reservations}
        return sum(self._end(pod, [node], reason) for pod in sorted(pods))

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

    def _end(self, pod: str, nodes: Iterable[str], reason: EndReason) -> int:
        held = self._by_pod.get(pod)
        if held is None:
            return 0
        ended: list[Reservation] = []
        for node in nodes:
            for device_class in held.pop(node, ()):
                key = (node, device_class)
                slot = self._slots.get(key)
                if slot is None:
                    continue
                ended.extend(r for r in slot.reservations if r.pod == pod)
                slot.reservations = [r for r in slot.reservations if r.pod != pod]
                if not slot.reservations:
                    self._drop_slot(key)
        if not held:
            del self._by_pod[pod]
        for r in ended:
            self._ended(r, reason)
        return len(ended)

    def _settle(self, key: tuple[str, str], slot: _Slot, observed: int | None, now: float) -> None:
        ended: list[tuple[Reservation, EndReason]] = []
        kept: list[Reservation] = []
        for r in slot.reservations:
            if r.expires > now:
                kept.append(r)
            else:
                ended.append((r, EndReason.EXPIRED))
        credited: list[Reservation] = []
        if observed is not None and slot.baseline is not None and observed < slot.baseline:
            credited = self._credit(kept, slot.baseline - observed)
            if credited:
                gone = set(map(id, credited))
                kept = [r for r in kept if id(r) not in gone]
                ended.extend((r, EndReason.PROVISIONED) for r in credited)
        if observed is not None:
            slot.baseline = observed
        if ended:
            slot.reservations = kept
            for r, _ in ended:
                self._forget(r.pod, key)
            for r, reason in ended:
                self._ended(r, reason)
        if not kept:
            self._drop_slot(key)
        for r in credited:  # the volume exists on this node: the pod's holds on tied nodes are spent
            self.keep_only(r.pod, key[0])

    def _credit(self, reservations: list[Reservation], drop: int) -> list[Reservation]:
        """The reservations a drop of ``drop`` bytes is credited to: oldest first, pods held on this node alone
        before pods also held on other nodes, as long as each fits in what is left of the drop."""
        order = sorted(reservations, key=lambda r: len(self._by_pod.get(r.pod, ())) > 1)  # stable: oldest first
        credited: list[Reservation] = []
        for r in order:
            if r.size > drop:
                break
            drop -= r.size
            credited.append(r)
        return credited

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
        held = self._by_pod.get(pod)
        classes = held.get(key[0]) if held is not None else None
        if held is None or classes is None or key[1] not in classes:
            return
        classes.remove(key[1])
        if not classes:
            del held[key[0]]
            if not held:
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


def contenders(
    scores: Mapping[str, int], free_total: Mapping[str, int], mode: Mode, limit: int = MAX_TIED_HOLDS
) -> list[str]:
    """The nodes to hold a pod's request on after prioritize: the expected winner (``choose``) first, then the
    other nodes with the same score in the order of ``scores``; only the winner when more than ``limit`` nodes
    share the top score; empty when nothing scored.

    kube-scheduler breaks a tie of our scores with its own plugins and then at random among equal totals
    (``selectHost``), not by free bytes and name, and starts the next pod's cycle before the claim's
    selected-node says which node it took; so every tied node may be the one.
    """
    chosen = choose(scores, free_total, mode)
    if chosen is None:
        return []
    top = scores[chosen]
    tied = [name for name, score in scores.items() if score == top]
    if len(tied) > limit:
        return [chosen]
    return [chosen, *(name for name in tied if name != chosen)]
