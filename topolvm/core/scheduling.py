"""Scheduling policy of the extender: which nodes fit a pod's volumes, how to rank them, and what is held back.

Called by ``topolvm.services.scheduler`` (which the extender's HTTP verbs and the simulator both drive), so the
real and the simulated world decide alike.
Pure: standard library only; time enters as a ``now`` parameter (seconds, any monotonic origin).

Formulas follow upstream TopoLVM (docs/compat.md): the filter rejects a node whose capacity annotation for a
requested class is missing, unparsable or too small; the spread score is ``clamp(int(log2(gb / divisor)), 1, 10)``
(1 below a GiB, 0 when empty), minimum over the requested classes. Two additions beyond upstream:

- pack mode (upstream #1049): prefer the node that is left with the least free space after placing the pod;
- a reservation ledger (upstream #117, ``topolvm.core.reservations``): bytes promised to pods that are still
  being scheduled are subtracted from a node's annotation (``usable``) until the pod's volumes exist, it is
  deleted, or a TTL passes;
- ties of the top score (``rank``): either the extender breaks them (its expected winner keeps the top score,
  the other tied nodes get one less, and the pod is held on the winner) or kube-scheduler does (upstream's
  scores, and the pod is held on every tied node until its choice is known).

These are the reference functions that state the rules one node at a time; ``topolvm.core.node_index`` applies
them to thousands of nodes per request, and tests hold the two equal.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping

from topolvm import constants, errors
from topolvm.core import reservations

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


class TieBreak(enum.StrEnum):
    """Who decides between nodes that share the top score (docs/scheduler.md, "Ties")."""

    # The expected winner (``choose``) keeps the top score and the other tied nodes get one less, so with an
    # extender weight above what kube-scheduler's plugins can add, kube-scheduler takes the node the pod is held on.
    EXTENDER = "extender"
    # Upstream's scores; kube-scheduler's plugins break the tie, so the pod is held on every tied node.
    SCHEDULER = "scheduler"


# kube-scheduler adds an extender's score x weight x (MaxNodeScore 100 / MaxExtenderPriority 10) to the sum of
# its score plugins' weighted scores, each plugin's score within 0..100 (the framework rejects others). The
# default plugins of v1.37 (pkg/scheduler/apis/config/v1/default_plugins.go) weigh TaintToleration 3,
# NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2, DynamicResources 2, NodeResourcesFit 1,
# NodeResourcesBalancedAllocation 1, ImageLocality 1, VolumeBinding 1 and PodGroupPodsCount 1 (the last three
# score only with their features on): together they move two nodes apart by at most 16 x 100 = 1600. So one step
# of our score outweighs them all when weight x 10 > 1600, as ``TieBreak.EXTENDER`` needs. Custom plugins or
# weights raise the bound.
DEFAULT_PLUGIN_WEIGHTS = 16
MIN_EXTENDER_WEIGHT = DEFAULT_PLUGIN_WEIGHTS * 100 // 10 + 1


def weight_problem(weight: int, tie_break: TieBreak) -> str | None:
    """Why kube-scheduler's extender ``weight`` does not suit ``tie_break``, or None when it does."""
    if tie_break is not TieBreak.EXTENDER or weight >= MIN_EXTENDER_WEIGHT:
        return None
    return (
        f"{weight} lets kube-scheduler's default score plugins (up to {DEFAULT_PLUGIN_WEIGHTS * 100} points) outvote "
        f"one step of the extender's score ({weight * 10}), so tie-break: extender would not decide ties; it needs a "
        f"weight of at least {MIN_EXTENDER_WEIGHT}"
    )


@dataclasses.dataclass(frozen=True)
class Policy:
    """Scoring configuration; ``divisors`` maps a class's annotation name (``00default`` for "") to its divisor."""

    default_divisor: float = 1.0
    divisors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    mode: Mode = Mode.SPREAD
    tie_break: TieBreak = TieBreak.EXTENDER

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


def usable(
    node: str,
    raw: Mapping[str, str],
    classes: Iterable[str],
    ledger: reservations.Ledger,
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


@dataclasses.dataclass(frozen=True)
class Ranking:
    """What prioritize answers and holds: the scores sent to kube-scheduler (one per node scored) and the nodes
    the pod's request is held on, the expected winner first (empty when no node fits)."""

    scores: dict[str, int]
    holds: list[str]


def rank(scores: Mapping[str, int], free_total: Mapping[str, int], policy: Policy) -> Ranking:
    """Break or keep a tie of the top score, as ``policy.tie_break`` says.

    ``EXTENDER``: the expected winner (``choose``) keeps its score and every other node with the same score gets
    one less (0 when the top is 1); the pod is held on the winner alone. Where the top is unique nothing changes.
    ``SCHEDULER``: the scores are left as they are and the pod is held on every node with the top score, the
    winner first and the others in the order of ``scores``: kube-scheduler breaks such a tie with its own plugins
    and then at random (``selectHost``), and starts the next pod's cycle before the claim's selected-node says
    which node it took, so every tied node may be the one.
    """
    chosen = choose(scores, free_total, policy.mode)
    if chosen is None:
        return Ranking(dict(scores), [])
    top = scores[chosen]
    tied = [name for name, score in scores.items() if score == top and name != chosen]
    if policy.tie_break is TieBreak.SCHEDULER:
        return Ranking(dict(scores), [chosen, *tied])
    lowered = dict(scores)
    for name in tied:
        lowered[name] = top - 1
    return Ranking(lowered, [chosen])
