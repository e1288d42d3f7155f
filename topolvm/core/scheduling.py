"""Scheduling policy of the extender: which nodes fit a pod's volumes, how to rank them, and what is held back.

Called by ``topolvm.extender`` (HTTP verbs) and by the simulator's kube-scheduler model, so both decide alike.
Pure: standard library only; time enters as a ``now`` parameter (seconds, any monotonic origin).

Formulas follow upstream TopoLVM (docs/compat.md): the filter rejects a node whose capacity annotation for a
requested class is missing, unparsable or too small; the spread score is ``clamp(int(log2(gb / divisor)), 1, 10)``
(1 below a GiB, 0 when empty), minimum over the requested classes. Two additions beyond upstream:

- pack mode (upstream #1049): prefer the node that is left with the least free space after placing the pod;
- a reservation ledger (upstream #117): bytes promised to pods that are still being scheduled are subtracted
  from a node's annotation until the annotation drops by them (the node agent saw the LV) or a TTL passes.

Two layers: the per-node reference functions (``filter_reason``, ``node_score``, ``usable``, ``choose``) state the
rules; ``NodeIndex`` with ``filter_nodes``/``score_nodes`` apply them to thousands of nodes per request. The index
parses each node's annotations once, when they change, into per-class maps; a request then costs a few C-level
passes over the node names (no per-node objects), and scores come from a step table per (mode, divisor, request)
derived from the reference functions. Nodes with reservations go through the reference functions one by one.
Tests hold the two layers equal.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

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


# --- node index and the request-sized fast path ------------------------------------------------------------------

BAD = -1  # NodeIndex value of an annotation that is present but not a byte count
MISSING = -2  # lookup default: the node has no annotation for the class (or is not in the index)
_MAX_GIB = UINT64_MAX >> 30


class NodeIndex:
    """Node cache for the extender: capacity annotations as last seen, parsed once per change, per device class.

    ``free(device_class)`` maps node -> bytes (``BAD`` when unparsable; absent when the node has no annotation
    for the class); ``raw(node)`` keeps the strings for messages and for the reference functions. Updating a node
    with the same annotations is a no-op; changed ones replace the node's entries in every class map.
    """

    def __init__(self) -> None:
        self._raw: dict[str, dict[str, str]] = {}
        self._free: dict[str, dict[str, int]] = {}
        self._bad: dict[str, dict[str, str]] = {}  # class -> node -> filter reason of a BAD value
        self._empty_free: dict[str, int] = {}
        self._empty_bad: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, node: object) -> bool:
        return node in self._raw

    def nodes(self) -> Mapping[str, Mapping[str, str]]:
        """Every known node with its capacity annotations (class -> value); do not modify."""
        return self._raw

    def raw(self, node: str) -> dict[str, str] | None:
        return self._raw.get(node)

    def free(self, device_class: str) -> Mapping[str, int]:
        return self._free.get(device_class, self._empty_free)

    def bad_reasons(self, device_class: str) -> Mapping[str, str]:
        return self._bad.get(device_class, self._empty_bad)

    def update(self, node: str, capacities: Mapping[str, str]) -> bool:
        """Record ``node``'s capacity annotations (class -> value); returns whether anything changed."""
        old = self._raw.get(node)
        if old is not None and old == capacities:
            return False
        if old is not None:
            self._drop(node, old)
        fresh = dict(capacities)
        for device_class, text in fresh.items():
            number = parse_free(text)
            if number is None:
                self._free.setdefault(device_class, {})[node] = BAD
                self._bad.setdefault(device_class, {})[node] = REASON_BAD_ANNOTATION + text[:64]
            else:
                self._free.setdefault(device_class, {})[node] = number
        self._raw[node] = fresh
        return True

    def remove(self, node: str) -> bool:
        old = self._raw.pop(node, None)
        if old is None:
            return False
        self._drop(node, old)
        return True

    def _drop(self, node: str, old: Mapping[str, str]) -> None:
        for device_class in old:
            free = self._free.get(device_class)
            if free is not None:
                free.pop(node, None)
                if not free:
                    del self._free[device_class]
            bad = self._bad.get(device_class)
            if bad is not None:
                bad.pop(node, None)
                if not bad:
                    del self._bad[device_class]

    def column(self, device_class: str, names: Sequence[str]) -> list[int]:
        """Each name's value for ``device_class`` (bytes, ``BAD`` or ``MISSING``), in order."""
        return list(map(self.free(device_class).get, names, itertools.repeat(MISSING)))


def _held_among(ledger: Ledger, names: Sequence[str]) -> set[str]:
    if not ledger:
        return set()
    return ledger.nodes().intersection(names)


def filter_nodes(
    index: NodeIndex,
    names: Sequence[str],
    requested: Mapping[str, int],
    ledger: Ledger,
    *,
    now: float,
    pod: str = "",
) -> dict[str, str]:
    """Why each of ``names`` cannot take the pod (name -> reason; nodes that fit are absent).

    Same answers as ``filter_reason`` over ``usable`` node by node, plus ``REASON_UNKNOWN_NODE`` for names the
    index does not know and the reservation suffix, in one pass per requested class.
    """
    if not requested:
        return {}
    known = index.nodes()
    failures: dict[str, str] = {}
    # Later updates win: walking the classes backwards leaves the first failing class's reason, as filter_reason.
    for device_class, want in reversed(list(requested.items())):
        column = index.column(device_class, names)
        bad = index.bad_reasons(device_class)
        failures.update(
            {
                name: (
                    REASON_NO_SPACE
                    if have >= 0
                    else bad[name]
                    if have == BAD
                    else REASON_NO_ANNOTATION
                    if name in known
                    else REASON_UNKNOWN_NODE
                )
                for name, have in zip(names, column, strict=True)
                if have < want
            }
        )
    for name in _held_among(ledger, names):
        raw = known.get(name)
        if raw is None:
            continue  # unknown: the reference answer does not consult the ledger either
        reason = filter_reason(usable(name, raw, requested, ledger, now=now, pod=pod), raw, requested)
        if reason == REASON_NO_SPACE and ledger and name in ledger.nodes():
            plain = usable(name, raw, requested, _NO_LEDGER, now=now)
            if not filter_reason(plain, raw, requested):
                reason += REASON_AFTER_RESERVATIONS
        if reason:
            failures[name] = reason
        else:
            failures.pop(name, None)
    return failures


@dataclasses.dataclass(frozen=True)
class Scores:
    """``score_nodes``' answer: one score per name (in order) and the node expected to win (None if none fits)."""

    scores: list[int]
    chosen: str | None
    observed: dict[str, int | None]  # the chosen node's annotation per requested class (for the ledger)


def score_nodes(
    index: NodeIndex,
    names: Sequence[str],
    requested: Mapping[str, int],
    policy: Policy,
    ledger: Ledger,
    *,
    now: float,
    pod: str = "",
) -> Scores:
    """Score every name as ``node_score`` would (0 when it does not fit or is unknown) and pick as ``choose``.

    ``names`` should be free of duplicates (the reference scores each node once).
    """
    known = index.nodes()
    columns = {device_class: index.column(device_class, names) for device_class in requested}
    held = _held_among(ledger, names)
    if held:
        positions = _positions(names, held)
        for name in held:
            raw = known.get(name)
            if raw is None:
                continue
            values = usable(name, raw, requested, ledger, now=now, pod=pod)
            for device_class, value in values.items():
                column = columns[device_class]
                for i in positions[name]:
                    column[i] = MISSING if value is None else value
    per_class = [
        _step_scores(columns[device_class], _steps(policy.mode, policy.divisor(device_class), want))
        for device_class, want in requested.items()
    ]
    if not per_class:
        scores = [0] * len(names)
    elif len(per_class) == 1:
        scores = per_class[0]
    else:
        scores = list(map(min, *per_class))
    chosen = _choose_fast(names, scores, list(columns.values()), policy.mode)
    observed: dict[str, int | None] = {}
    if chosen is not None:
        for device_class in requested:
            value = index.free(device_class).get(chosen)
            observed[device_class] = None if value is None or value < 0 else value
    return Scores(scores, chosen, observed)


def _positions(names: Sequence[str], wanted: set[str]) -> dict[str, list[int]]:
    if len(wanted) <= 16:
        found: dict[str, list[int]] = {}
        for name in wanted:
            at: list[int] = []
            start = 0
            try:
                while True:
                    start = names.index(name, start)
                    at.append(start)
                    start += 1
            except ValueError:
                pass
            found[name] = at
        return found
    result: dict[str, list[int]] = {name: [] for name in wanted}
    for i, name in enumerate(names):
        if name in wanted:
            result[name].append(i)
    return result


def _step_scores(column: list[int], steps: tuple[list[int], list[int]]) -> list[int]:
    breaks, table = steps
    find = bisect.bisect_right
    return [table[find(breaks, have)] for have in column]


def _choose_fast(names: Sequence[str], scores: list[int], columns: list[list[int]], mode: Mode) -> str | None:
    """``choose`` over parallel lists: usable bytes of a node that scores > 0 are its columns' sum."""
    if not scores:
        return None
    best = max(scores)
    if best <= 0:
        return None
    tied = [i for i, score in enumerate(scores) if score == best]
    if len(columns) == 1:
        totals = list(map(columns[0].__getitem__, tied))
    else:
        totals = [sum(column[i] for column in columns) for i in tied]
    target = max(totals) if mode is Mode.SPREAD else min(totals)
    return min([names[i] for i, total in zip(tied, totals, strict=True) if total == target])


@functools.lru_cache(maxsize=256)
def _steps(mode: Mode, divisor: float, want: int) -> tuple[list[int], list[int]]:
    """Score of one class as a step function of the node's usable bytes ``v``: ``table[bisect_right(breaks, v)]``.

    Below ``max(want, 1)`` (too small, empty, ``BAD``, ``MISSING``) the score is 0. Above, the reference score
    depends only on whole GiB (of ``v`` in spread mode, of ``v - want`` in pack mode) and is monotone in them, so
    its change points are found by bisection once per (mode, divisor) and every step's value is taken from the
    reference function itself.
    """
    low = max(want, 1)
    if mode is Mode.SPREAD:
        points = [gib << 30 for gib in _change_points(mode, divisor)]

        def reference(v: int) -> int:
            return capacity_to_score(v, divisor)
    else:
        points = [want + (gib << 30) for gib in _change_points(mode, divisor)]

        def reference(v: int) -> int:
            return pack_score(v, want, divisor)

    breaks = [low] + [point for point in points if low < point <= UINT64_MAX]
    table = [0] + [reference(point) for point in breaks]
    return breaks, table


@functools.lru_cache(maxsize=64)
def _change_points(mode: Mode, divisor: float) -> list[int]:
    """Whole-GiB counts ``g`` in 1.._MAX_GIB where the reference score differs from its value at ``g - 1``."""
    score: Callable[[int], int]
    if mode is Mode.SPREAD:

        def score(gib: int) -> int:
            return capacity_to_score(max(gib << 30, 1), divisor)
    else:

        def score(gib: int) -> int:
            return pack_score((gib << 30) + 1, 1, divisor)

    found: list[int] = []

    def walk(low: int, low_score: int, high: int, high_score: int) -> None:
        if low_score == high_score:
            return
        if high == low + 1:
            found.append(high)
            return
        middle = (low + high) // 2
        middle_score = score(middle)
        walk(low, low_score, middle, middle_score)
        walk(middle, middle_score, high, high_score)

    walk(0, score(0), _MAX_GIB, score(_MAX_GIB))
    return found


_NO_LEDGER = Ledger(ttl=0)
