"""The extender's request-sized fast path: ``NodeIndex``, ``filter_nodes`` and ``score_nodes``.

Applies the rules of ``topolvm.core.scheduling`` to thousands of nodes per request. The index parses each node's
annotations once, when they change, into per-class maps; a request then costs a few C-level passes over the node
names (no per-node objects), and scores come from a step table per (mode, divisor, request) derived from the
reference functions. Nodes with reservations go through the reference functions one by one, in the order of the
request. Tests hold the two layers equal. Called by ``topolvm.extender``.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import itertools
import operator
from collections.abc import Callable, Mapping, Sequence

from topolvm import constants
from topolvm.core import reservations, scheduling

BAD = -1  # NodeIndex value of an annotation that is present but not a byte count
MISSING = -2  # lookup default: the node has no annotation for the class (or is not in the index)
_MAX_GIB = scheduling.UINT64_MAX >> 30
_REMEMBERED_CLASSES = 16
_FEW_HELD = 8  # up to this many nodes with reservations are looked for in a request's names one by one


def capacities(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The ``capacity.topolvm.io/<class>`` annotations of a Node, keyed by class annotation name."""
    if not annotations:
        return {}
    prefix = constants.CAPACITY_KEY_PREFIX
    cut = len(prefix)
    return {key[cut:]: value for key, value in annotations.items() if key.startswith(prefix)}


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
        # The last column asked for per class, while no node changed: kube-scheduler sends the names it filtered
        # to prioritize, so the second lookup of every name is spared. class -> (names, version, values)
        self._version = 0
        self._last: dict[str, tuple[list[str], int, list[int]]] = {}

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
        self._version += 1
        if old is not None:
            self._drop(node, old)
        fresh = dict(capacities)
        for device_class, text in fresh.items():
            number = scheduling.parse_free(text)
            if number is None:
                self._free.setdefault(device_class, {})[node] = BAD
                self._bad.setdefault(device_class, {})[node] = scheduling.REASON_BAD_ANNOTATION + text[:64]
            else:
                self._free.setdefault(device_class, {})[node] = number
        self._raw[node] = fresh
        return True

    def remove(self, node: str) -> bool:
        old = self._raw.pop(node, None)
        if old is None:
            return False
        self._version += 1
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
        """Each name's value for ``device_class`` (bytes, ``BAD`` or ``MISSING``), in order (a new list)."""
        last = self._last.get(device_class)
        asked = names if isinstance(names, list) else list(names)
        # Comparing the names is a pass over pointers; looking them up again would hash every one.
        if last is not None and last[1] == self._version and last[0] == asked:
            return list(last[2])
        values = list(map(self.free(device_class).get, asked, itertools.repeat(MISSING)))
        if len(self._last) >= _REMEMBERED_CLASSES and device_class not in self._last:
            self._last.clear()  # pods may name any class: keep this small
        self._last[device_class] = (list(asked), self._version, values)
        return list(values)


def _held_among(ledger: reservations.Ledger, names: Sequence[str]) -> list[str]:
    """The names with reservations, each once, in the order of ``names``: a drop credited on one node can end a
    pod's holds on its other tied nodes, so nodes are settled in the order the reference visits them."""
    if not ledger:
        return []
    holding = ledger.nodes()
    if len(holding) <= _FEW_HELD:
        # A scan of the names per held node compares pointers first; hashing every name costs more.
        present = [name for name in holding if name in names]
        if len(present) > 1:
            present.sort(key=names.index)
        return present
    held = holding.intersection(names)
    if len(held) <= 1:
        return list(held)
    return list(dict.fromkeys(itertools.compress(names, map(held.__contains__, names))))


def filter_nodes(
    index: NodeIndex,
    names: Sequence[str],
    requested: Mapping[str, int],
    ledger: reservations.Ledger,
    *,
    now: float,
    pod: str = "",
) -> dict[str, str]:
    """Why each of ``names`` cannot take the pod (name -> reason; nodes that fit are absent).

    Same answers as ``scheduling.filter_reason`` over ``scheduling.usable`` node by node, plus
    ``scheduling.REASON_UNKNOWN_NODE`` for names the index does not know and the reservation suffix, in one pass
    per requested class.
    """
    if not requested:
        return {}
    known = index.nodes()
    failures: dict[str, str] = {}
    # Later updates win: walking the classes backwards leaves the first failing class's reason, as
    # scheduling.filter_reason does.
    for device_class, want in reversed(list(requested.items())):
        column = index.column(device_class, names)
        short = list(itertools.compress(range(len(column)), map(want.__gt__, column)))  # have < want
        if not short:
            continue
        bad = index.bad_reasons(device_class)
        for i in short:
            have = column[i]
            name = names[i]
            failures[name] = (
                scheduling.REASON_NO_SPACE
                if have >= 0
                else bad[name]
                if have == BAD
                else scheduling.REASON_NO_ANNOTATION
                if name in known
                else scheduling.REASON_UNKNOWN_NODE
            )
    for name in _held_among(ledger, names):
        raw = known.get(name)
        if raw is None:
            continue  # unknown: the reference answer does not consult the ledger either
        reason = scheduling.filter_reason(
            scheduling.usable(name, raw, requested, ledger, now=now, pod=pod), raw, requested
        )
        if reason == scheduling.REASON_NO_SPACE and ledger.holds(name):
            plain = scheduling.usable(name, raw, requested, _NO_LEDGER, now=now)
            if not scheduling.filter_reason(plain, raw, requested):
                reason += scheduling.REASON_AFTER_RESERVATIONS
        if reason:
            failures[name] = reason
        else:
            failures.pop(name, None)
    return failures


@dataclasses.dataclass(frozen=True)
class Scores:
    """``score_nodes``' answer: one score per name (in order, ties broken as the policy says) and the nodes to
    hold the pod's request on."""

    scores: list[int]
    # ``scheduling.rank``'s holds (the node expected to win first), each with its annotation per requested class
    # (for the ledger); empty when no node fits.
    contenders: dict[str, dict[str, int | None]]

    @property
    def chosen(self) -> str | None:
        """The node expected to win (None if none fits)."""
        return next(iter(self.contenders), None)


def score_nodes(
    index: NodeIndex,
    names: Sequence[str],
    requested: Mapping[str, int],
    policy: scheduling.Policy,
    ledger: reservations.Ledger,
    *,
    now: float,
    pod: str = "",
) -> Scores:
    """Score every name as ``scheduling.node_score`` would (0 when it does not fit or is unknown), then break or
    keep a tie of the top score and pick the nodes to hold as ``scheduling.rank`` does.

    ``names`` should be free of duplicates (the reference scores each node once).
    """
    known = index.nodes()
    columns = {device_class: index.column(device_class, names) for device_class in requested}
    held = _held_among(ledger, names)
    if held:
        positions = _positions(names, set(held))
        for name in held:
            raw = known.get(name)
            if raw is None:
                continue
            values = scheduling.usable(name, raw, requested, ledger, now=now, pod=pod)
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
    found: dict[str, dict[str, int | None]] = {}
    for name in _rank_fast(names, scores, list(columns.values()), policy):
        observed = found[name] = {}
        for device_class in requested:
            value = index.free(device_class).get(name)
            observed[device_class] = None if value is None or value < 0 else value
    return Scores(scores, found)


def _positions(names: Sequence[str], wanted: set[str]) -> dict[str, list[int]]:
    """Where each of ``wanted`` appears in ``names``: a few are found by scanning for each (pointer comparisons
    first), more in one C-level membership pass, then only the hits in Python."""
    result: dict[str, list[int]] = {name: [] for name in wanted}
    if len(wanted) <= _FEW_HELD:
        for name, found in result.items():
            start = 0
            with contextlib.suppress(ValueError):
                while True:
                    start = names.index(name, start) + 1
                    found.append(start - 1)
        return result
    for i in itertools.compress(range(len(names)), map(wanted.__contains__, names)):
        result[names[i]].append(i)
    return result


def _step_scores(column: list[int], steps: tuple[list[int], list[int]]) -> list[int]:
    breaks, table = steps
    return list(map(table.__getitem__, map(functools.partial(bisect.bisect_right, breaks), column)))


def _rank_fast(
    names: Sequence[str], scores: list[int], columns: list[list[int]], policy: scheduling.Policy
) -> list[str]:
    """``scheduling.rank`` over parallel lists, lowering the tied scores in ``scores`` in place; returns the nodes to
    hold. The usable bytes of a node that scores > 0 are its columns' sum."""
    if not scores:
        return []
    best = max(scores)
    if best <= 0:
        return []
    # Every node tied (common on a roomy cluster, where all reach the top score): no positions to gather.
    everyone = scores.count(best) == len(scores)
    tied: Sequence[int] = (
        range(len(scores)) if everyone else list(itertools.compress(range(len(scores)), map(best.__eq__, scores)))
    )
    if len(tied) == 1:
        return [names[tied[0]]]
    if len(columns) == 1:
        totals = columns[0] if everyone else list(map(columns[0].__getitem__, tied))
    else:
        totals = [sum(column[i] for column in columns) for i in tied]
    target = max(totals) if policy.mode is scheduling.Mode.SPREAD else min(totals)
    winner = min(itertools.compress(tied, map(target.__eq__, totals)), key=names.__getitem__)
    if policy.tie_break is scheduling.TieBreak.SCHEDULER:
        return [names[winner], *(names[i] for i in tied if i != winner)]
    if everyone:
        scores[:] = [best - 1] * len(scores)
    else:
        scores[:] = map(operator.sub, scores, map(best.__eq__, scores))  # a bool is 0 or 1: each tied node, one less
    scores[winner] = best
    return [names[winner]]


@functools.lru_cache(maxsize=256)
def _steps(mode: scheduling.Mode, divisor: float, want: int) -> tuple[list[int], list[int]]:
    """Score of one class as a step function of the node's usable bytes ``v``: ``table[bisect_right(breaks, v)]``.

    Below ``max(want, 1)`` (too small, empty, ``BAD``, ``MISSING``) the score is 0. Above, the reference score
    depends only on whole GiB (of ``v`` in spread mode, of ``v - want`` in pack mode) and is monotone in them, so
    its change points are found by bisection once per (mode, divisor) and every step's value is taken from the
    reference function itself.
    """
    low = max(want, 1)
    if mode is scheduling.Mode.SPREAD:
        points = [gib << 30 for gib in _change_points(mode, divisor)]

        def reference(v: int) -> int:
            return scheduling.capacity_to_score(v, divisor)
    else:
        points = [want + (gib << 30) for gib in _change_points(mode, divisor)]

        def reference(v: int) -> int:
            return scheduling.pack_score(v, want, divisor)

    breaks = [low] + [point for point in points if low < point <= scheduling.UINT64_MAX]
    table = [0] + [reference(point) for point in breaks]
    return breaks, table


@functools.lru_cache(maxsize=64)
def _change_points(mode: scheduling.Mode, divisor: float) -> list[int]:
    """Whole-GiB counts ``g`` in 1.._MAX_GIB where the reference score differs from its value at ``g - 1``."""
    score: Callable[[int], int]
    if mode is scheduling.Mode.SPREAD:

        def score(gib: int) -> int:
            return scheduling.capacity_to_score(max(gib << 30, 1), divisor)
    else:

        def score(gib: int) -> int:
            return scheduling.pack_score((gib << 30) + 1, 1, divisor)

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


_NO_LEDGER = reservations.Ledger(ttl=0)
