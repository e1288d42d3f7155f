"""What the scheduler extender decides and remembers, apart from any wire format: ``SchedulerService``.

Driven by ``topolvm.extender`` (HTTP verbs, API watches, a timer) in the real world and by the simulator's
kube-scheduler model in the simulated one, so both hold capacity back alike. Not thread-safe: callers serialise
calls (the extender holds one lock). Time comes from a ``ports.Clock``.

kube-scheduler's sequence for a pod that asks for TopoLVM capacity (pkg/scheduler/schedule_one.go): our filter
runs on the nodes its own plugins kept; prioritize follows *only when more than one node passed*; then the pod
is assumed on the chosen node, the VolumeBinding plugin's PreBind writes ``volume.kubernetes.io/selected-node``
on the pod's unbound claims and waits until they are provisioned, and only then is the pod bound
(``spec.nodeName``). A pod whose PreBind fails goes back to the queue. So a reservation (``scheduling.Ledger``):

- starts in ``filter`` when exactly one node passes, else in ``prioritize`` on the node expected to win;
- moves to the node a claim's selected-node names when that differs (kube-scheduler's other plugins outweighed
  our score), or starts there when the pod held nothing;
- ends when the pod is bound (wherever: its volumes then exist and the node's annotation counts them) or
  deleted, when the node's annotation drops by its size, or at its TTL, checked by ``expire`` on a timer.

The node cache (``node_index.NodeIndex``) is fed by full-Node requests or by a Node watch. Without a watch it is
bounded: nodes absent from requests for ``Limits.node_ttl`` are evicted, and it never holds much more than
``Limits.max_nodes``. With a watch (``watched_nodes``) the watch is the truth: deleted nodes leave, nothing ages.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from topolvm import ports
from topolvm.core import node_index, scheduling

log = logging.getLogger(__name__)

_UNSEEN: object = object()
_NO_LEDGER = scheduling.Ledger(ttl=0)


class Via(enum.StrEnum):
    """What started a reservation (a label of the extender's ``reservation_starts_total`` metric)."""

    FILTER = "filter"  # exactly one node passed the filter: kube-scheduler will not call prioritize
    PRIORITIZE = "prioritize"  # the node expected to win among several
    SELECTED = "selected"  # a claim of the pod names the node kube-scheduler chose


@dataclasses.dataclass(frozen=True)
class Pod:
    """A pod as the extender sees it in a request: identity, requested bytes per class, claims it mounts."""

    key: str  # the UID, else namespace/name (see ``pod_key``)
    namespace: str = ""
    name: str = ""
    requested: Mapping[str, int] = dataclasses.field(default_factory=dict)
    claims: tuple[str, ...] = ()  # PersistentVolumeClaim names in ``namespace``, generic ephemeral ones included


def pod_key(namespace: str, name: str, uid: str) -> str:
    """Identity a reservation is held under: the pod UID, else namespace/name (a pod being created may lack one)."""
    return uid or f"{namespace}/{name}"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on what the service remembers between requests."""

    node_ttl: float = 600.0  # without a Node watch: evict nodes absent from requests for about this long
    max_nodes: int = 100_000  # without a Node watch: evict the oldest entries beyond this many nodes
    pod_ttl: float = 600.0  # forget a pod seen in a request and never bound or deleted after this long
    max_pods: int = 100_000


@dataclasses.dataclass(frozen=True)
class FilterDecision:
    failures: dict[str, str]  # name -> reason, for the nodes that cannot take the pod
    reserved: str | None = None  # the node a reservation was taken on (exactly one passed)


@dataclasses.dataclass(frozen=True)
class ScoreDecision:
    names: Sequence[str]  # the request's names, each once
    scores: list[int]  # one per name
    reserved: str | None = None


class Item(NamedTuple):
    """A node of a full-Node request judged on its own annotations (the request names a node twice)."""

    name: str
    capacities: dict[str, str] | None  # None: unknown to the extender


StartListener = Callable[[scheduling.Reservation, Via], None]


class SchedulerService:
    def __init__(
        self,
        policy: scheduling.Policy,
        reservation_ttl: float,
        clock: ports.Clock,
        *,
        limits: Limits = Limits(),
        watched_nodes: bool = False,
        on_start: StartListener | None = None,
        on_end: scheduling.EndListener | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.limits = limits
        self.watched_nodes = watched_nodes
        self.on_start = on_start
        self.on_end = on_end
        self.index = node_index.NodeIndex()
        self.ledger = scheduling.Ledger(reservation_ttl, on_end=self._ended)
        # Full annotations of each node as last sent in a full-Node request: when a node arrives unchanged (the
        # common case) one dict comparison replaces extracting and comparing its capacity annotations.
        self._seen: dict[str, object] = {}
        # Nodes seen in requests in this and the previous half of ``node_ttl``; the rest are evicted.
        self._fresh: set[str] = set()
        self._older: set[str] = set()
        self._marked: Sequence[str] | None = None
        self._generation_start = clock.now()
        self._pods: dict[str, tuple[Pod, float]] = {}  # key -> (pod, last seen), oldest first
        self._claims: dict[tuple[str, str], str] = {}  # (namespace, claim) -> pod key
        self._provisioned: set[str] = set()  # tracked pods whose reservation ended because the volume exists

    # --- verbs ----------------------------------------------------------------------------------------------

    def filter(self, pod: Pod, names: Sequence[str]) -> FilterDecision:
        """Which of ``names`` cannot take ``pod``, and a reservation when exactly one can."""
        if not pod.requested:
            return FilterDecision({})
        now = self.clock.now()
        self._track(pod, now)
        failures = node_index.filter_nodes(
            self.index, names, pod.requested, self.ledger, now=now, pod=pod.key
        )  # fmt: skip
        left = len(names) - len(failures)  # >= the nodes that passed; more only when a name is listed twice
        single: str | None = None
        if left == 1:
            single = next((name for name in names if name not in failures), None)
        elif 1 < left <= 16 and len(set(names)) != len(names):
            kept = {name for name in names if name not in failures}
            single = kept.pop() if len(kept) == 1 else None
        if single is not None:
            self._reserve(pod, single, self._observed(single, pod.requested), now, Via.FILTER)
        return FilterDecision(failures, single)

    def filter_items(self, pod: Pod, items: Sequence[Item]) -> FilterDecision:
        """``filter`` judging each item on its own annotations (the reference functions, one by one)."""
        if not pod.requested:
            return FilterDecision({})
        now = self.clock.now()
        self._track(pod, now)
        failures: dict[str, str] = {}
        passed: dict[str, dict[str, str]] = {}
        for item in items:
            reason = self._reason(item, pod, now)
            if reason:
                failures[item.name] = reason
            elif item.capacities is not None:
                passed[item.name] = item.capacities
        for name in failures:
            passed.pop(name, None)
        single = next(iter(passed)) if len(passed) == 1 else None
        if single is not None:
            observed = {c: scheduling.parse_free(passed[single].get(c)) for c in pod.requested}
            self._reserve(pod, single, observed, now, Via.FILTER)
        return FilterDecision(failures, single)

    def prioritize(self, pod: Pod, names: Sequence[str]) -> ScoreDecision:
        """Scores of ``names`` (each once) and a reservation on the node expected to win."""
        if len(set(names)) != len(names):
            names = list(dict.fromkeys(names))  # the cache gives every copy the same answer
        if not pod.requested:
            return ScoreDecision(names, [0] * len(names))
        now = self.clock.now()
        self._track(pod, now)
        result = node_index.score_nodes(
            self.index, names, pod.requested, self.policy, self.ledger, now=now, pod=pod.key
        )  # fmt: skip
        if result.chosen is not None:
            self._reserve(pod, result.chosen, result.observed, now, Via.PRIORITIZE)
        return ScoreDecision(names, result.scores, result.chosen)

    def prioritize_items(self, pod: Pod, items: Sequence[Item]) -> ScoreDecision:
        """``prioritize`` judging each item on its own annotations; a name listed twice keeps its last score."""
        if not pod.requested:
            names = list(dict.fromkeys(item.name for item in items))
            return ScoreDecision(names, [0] * len(names))
        now = self.clock.now()
        self._track(pod, now)
        scores: dict[str, int] = {}
        totals: dict[str, int] = {}
        raws: dict[str, dict[str, str]] = {}
        for item in items:
            if item.capacities is None:
                scores[item.name] = 0
                continue
            usable = self._usable(item, pod, now)
            fits = not scheduling.filter_reason(usable, item.capacities, pod.requested)
            scores[item.name] = scheduling.node_score(usable, pod.requested, self.policy) if fits else 0
            totals[item.name] = sum(v for v in usable.values() if v is not None)
            raws[item.name] = item.capacities
        chosen = scheduling.choose(scores, totals, self.policy.mode)
        if chosen is not None:
            observed = {c: scheduling.parse_free(raws[chosen].get(c)) for c in pod.requested}
            self._reserve(pod, chosen, observed, now, Via.PRIORITIZE)
        return ScoreDecision(list(scores), list(scores.values()), chosen)

    def _usable(self, item: Item, pod: Pod, now: float) -> dict[str, int | None]:
        ledger = self.ledger if self.ledger.holds(item.name) else _NO_LEDGER
        raw = item.capacities or {}
        return scheduling.usable(item.name, raw, pod.requested, ledger, now=now, pod=pod.key)

    def _reason(self, item: Item, pod: Pod, now: float) -> str:
        if item.capacities is None:
            return scheduling.REASON_UNKNOWN_NODE
        reason = scheduling.filter_reason(self._usable(item, pod, now), item.capacities, pod.requested)
        if reason == scheduling.REASON_NO_SPACE and self.ledger.holds(item.name):
            plain = scheduling.usable(item.name, item.capacities, pod.requested, _NO_LEDGER, now=now)
            if not scheduling.filter_reason(plain, item.capacities, pod.requested):
                reason += scheduling.REASON_AFTER_RESERVATIONS
        return reason

    # --- nodes ----------------------------------------------------------------------------------------------

    def nodes_observed(self, names: Sequence[str], annotations: Sequence[Mapping[str, str] | None]) -> None:
        """Record the nodes of a full-Node request (names and all their annotations, in order).

        Only nodes whose annotations differ from what this method last saw for them reach the index.
        """
        seen = self._seen
        same = map(operator.eq, map(seen.get, names, itertools.repeat(_UNSEEN)), annotations)
        update = self.index.update
        changed: list[str] = []
        for i in itertools.compress(range(len(names)), map(operator.not_, same)):
            name, metadata = names[i], annotations[i]
            update(name, node_index.capacities(metadata))
            seen[name] = metadata
            changed.append(name)
        if self.ledger:
            now = self.clock.now()
            for name in changed:
                self._settle(name, now)
        if self.watched_nodes:
            return
        if names != self._marked:  # kube-scheduler mostly sends the same list (same objects) again
            self._fresh.update(names)
            self._marked = names
        if len(self.index) > self.limits.max_nodes:
            self._evict_oldest()

    def node_updated(self, name: str, capacities: Mapping[str, str]) -> None:
        """A node's capacity annotations (class -> value) as the API server has them now (a watch event)."""
        self._seen.pop(name, None)
        if self.index.update(name, capacities) and self.ledger.holds(name):
            self._settle(name, self.clock.now())

    def node_removed(self, name: str) -> None:
        self._seen.pop(name, None)
        self.index.remove(name)
        self.ledger.release_node(name, scheduling.EndReason.NODE_GONE)

    def nodes_listed(self, names: Sequence[str]) -> None:
        """A watch re-listed the nodes: the ones not listed were deleted meanwhile."""
        listed = set(names)
        for name in [name for name in self.index.nodes() if name not in listed]:
            self.node_removed(name)

    def _settle(self, name: str, now: float) -> None:
        raw = self.index.raw(name) or {}
        self.ledger.settle(name, {c: scheduling.parse_free(v) for c, v in raw.items()}, now)

    def _observed(self, node: str, requested: Mapping[str, int]) -> dict[str, int | None]:
        raw = self.index.raw(node) or {}
        return {c: scheduling.parse_free(raw.get(c)) for c in requested}

    def _evict(self, names: Sequence[str]) -> None:
        for name in names:
            self.node_removed(name)
            self._fresh.discard(name)
            self._older.discard(name)
        if names:
            log.debug("node cache: evicted %d nodes, %d left", len(names), len(self.index))

    def _evict_oldest(self) -> None:
        """Over ``max_nodes``: drop nodes not seen lately, then the oldest entries, down to 90 % of the limit."""
        target = self.limits.max_nodes * 9 // 10
        recent = self._fresh | self._older
        stale = [name for name in self.index.nodes() if name not in recent]
        excess = len(self.index) - target
        if len(stale) < excess:
            stale += list(itertools.islice((n for n in self.index.nodes() if n in recent), excess - len(stale)))
        self._evict(stale[:excess])

    # --- pods -----------------------------------------------------------------------------------------------

    def pod_bound(self, key: str, node: str) -> None:
        """The pod was bound to ``node`` (spec.nodeName set): its volumes exist, its reservation ends."""
        self.ledger.release(key, scheduling.EndReason.BOUND)
        self._untrack(key)

    def pod_deleted(self, key: str) -> None:
        self.ledger.release(key, scheduling.EndReason.DELETED)
        self._untrack(key)

    def pod_selected(self, key: str, node: str) -> None:
        """kube-scheduler chose ``node`` for the pod: hold its request there (moving it if held elsewhere)."""
        held = self.ledger.node_of(key)
        if held == node:
            return
        tracked = self._pods.get(key)
        if held is not None:
            requested = self.ledger.requests_of(key)
        elif key in self._provisioned:
            return  # a late event (e.g. the claim became Bound): the volume already counts in the annotation
        elif tracked is not None:
            requested = dict(tracked[0].requested)
        else:
            return  # neither held nor seen in a request: nothing known to hold
        pod = tracked[0] if tracked is not None else Pod(key, requested=requested)
        observed = self._observed(node, requested)
        made = self.ledger.reserve(
            key, node, requested, observed, self.clock.now(), replaced=scheduling.EndReason.REHOMED
        )  # fmt: skip
        self._started(pod, made, Via.SELECTED)

    def claim_selected(self, namespace: str, claim: str, node: str) -> bool:
        """A claim got ``volume.kubernetes.io/selected-node``; False when no pod seen in a request mounts it."""
        key = self._claims.get((namespace, claim))
        if key is None:
            return False
        self.pod_selected(key, node)
        return True

    def _track(self, pod: Pod, now: float) -> None:
        self._provisioned.discard(pod.key)  # scheduled again: a new selected-node may follow
        self._pods.pop(pod.key, None)
        self._pods[pod.key] = (pod, now)
        for claim in pod.claims:
            self._claims[(pod.namespace, claim)] = pod.key
        while len(self._pods) > self.limits.max_pods:
            self._untrack(next(iter(self._pods)))

    def _untrack(self, key: str) -> None:
        tracked = self._pods.pop(key, None)
        self._provisioned.discard(key)
        if tracked is None:
            return
        pod = tracked[0]
        for claim in pod.claims:
            if self._claims.get((pod.namespace, claim)) == key:
                del self._claims[(pod.namespace, claim)]

    # --- housekeeping ---------------------------------------------------------------------------------------

    def expire(self) -> None:
        """End reservations past their TTL, forget pods not seen for ``pod_ttl`` and (without a Node watch)
        evict nodes absent from requests for ``node_ttl``. The caller runs it on a timer (the extender: each
        second), so nothing waits for the next request."""
        now = self.clock.now()
        if self.ledger:
            self.ledger.expire(now)
        horizon = now - self.limits.pod_ttl
        while self._pods:
            key, (_, seen) = next(iter(self._pods.items()))
            if seen > horizon:
                break
            self._untrack(key)
        if not self.watched_nodes and now - self._generation_start >= self.limits.node_ttl / 2:
            recent = self._fresh | self._older
            self._evict([name for name in self.index.nodes() if name not in recent])
            self._older, self._fresh, self._marked = self._fresh, set(), None
            self._generation_start = now

    def tracked_pods(self) -> int:
        return len(self._pods)

    def node_cache_sizes(self) -> dict[str, int]:
        """Entries of every per-node structure: the index, the remembered annotations of full-Node requests, and
        the nodes marked as seen lately (all bounded together)."""
        return {"index": len(self.index), "annotations": len(self._seen), "recent": len(self._fresh | self._older)}

    # --- reservations ---------------------------------------------------------------------------------------

    def _reserve(self, pod: Pod, node: str, observed: Mapping[str, int | None], now: float, via: Via) -> None:
        if self.ledger.ttl <= 0:
            return
        self._started(pod, self.ledger.reserve(pod.key, node, pod.requested, observed, now), via)

    def _started(self, pod: Pod, made: Sequence[scheduling.Reservation], via: Via) -> None:
        for reservation in made:
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "reservation start pod=%s/%s uid=%s node=%s class=%s bytes=%d via=%s",
                    pod.namespace, pod.name, pod.key, reservation.node, reservation.device_class,
                    reservation.size, via.value,
                )  # fmt: skip
            if self.on_start is not None:
                self.on_start(reservation, via)

    def _ended(self, reservation: scheduling.Reservation, reason: scheduling.EndReason) -> None:
        if reason is scheduling.EndReason.PROVISIONED and reservation.pod in self._pods:
            self._provisioned.add(reservation.pod)
        if log.isEnabledFor(logging.DEBUG):
            tracked = self._pods.get(reservation.pod)
            name = f"{tracked[0].namespace}/{tracked[0].name}" if tracked else "?"
            log.debug(
                "reservation end pod=%s uid=%s node=%s class=%s bytes=%d reason=%s",
                name, reservation.pod, reservation.node, reservation.device_class, reservation.size, reason.value,
            )  # fmt: skip
        if self.on_end is not None:
            self.on_end(reservation, reason)
