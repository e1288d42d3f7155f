"""What the scheduler extender decides and remembers, apart from any wire format: ``SchedulerService``.

Driven by ``topolvm.extender`` (HTTP verbs, API watches, a timer) in the real world and by the simulator's
kube-scheduler model in the simulated one, so both hold capacity back alike. Not thread-safe: callers serialise
calls (the extender holds one lock). Time comes from a ``ports.Clock``.

kube-scheduler's sequence for a pod that asks for TopoLVM capacity (pkg/scheduler/schedule_one.go): our filter
runs on the nodes its own plugins kept; prioritize follows *only when more than one node passed*; then the pod
is assumed on the chosen node, the VolumeBinding plugin's PreBind writes ``volume.kubernetes.io/selected-node``
on the pod's unbound claims and waits until they are provisioned, and only then is the pod bound
(``spec.nodeName``). A pod whose PreBind fails goes back to the queue. So a reservation (``reservations.Ledger``):

- starts in ``filter`` when exactly one node passes, else in ``prioritize`` on the node expected to win (with
  ``TieBreak.EXTENDER`` our scores make it kube-scheduler's pick) or, with ``TieBreak.SCHEDULER``, on it and on
  every other node with the same top score (kube-scheduler breaks such ties its own way);
- is kept only on the node a claim's selected-node names when that is one of them, moves there when it is not
  (kube-scheduler's other plugins outweighed our score), or starts there when the pod held nothing;
- ends on evidence about its pod: the pod is bound (wherever: its volumes then exist and the node's annotation
  counts them), every claim it mounts has a volume, or it is deleted; or when its node is deleted, or at its
  TTL, checked by ``expire`` on a timer. Only a caller that sees no pod events (``watched_pods`` False) also
  ends reservations when a node's annotation drops by their size (``reservations.Ledger.credit_drops``).

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
from topolvm.core import node_index, reservations, scheduling
from topolvm.services import node_recency, seen_pods

log = logging.getLogger(__name__)

_UNSEEN: object = object()
_NO_LEDGER = reservations.Ledger(ttl=0)


class Via(enum.StrEnum):
    """What started a reservation (a label of the extender's ``reservation_starts_total`` metric)."""

    FILTER = "filter"  # exactly one node passed the filter: kube-scheduler will not call prioritize
    PRIORITIZE = "prioritize"  # the node expected to win among several
    SELECTED = "selected"  # a claim of the pod names the node kube-scheduler chose


Pod = seen_pods.Pod  # the service's callers build these
pod_key = seen_pods.pod_key


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
    reserved: str | None = None  # the node expected to win
    contenders: tuple[str, ...] = ()  # the nodes the request is held on: ``reserved`` (and tied ones: SCHEDULER)


class Item(NamedTuple):
    """A node of a full-Node request judged on its own annotations (the request names a node twice)."""

    name: str
    capacities: dict[str, str] | None  # None: unknown to the extender


StartListener = Callable[[reservations.Reservation, Via], None]


class SchedulerService:
    def __init__(
        self,
        policy: scheduling.Policy,
        reservation_ttl: float,
        clock: ports.Clock,
        *,
        limits: Limits = Limits(),
        watched_nodes: bool = False,
        watched_pods: bool = False,
        on_start: StartListener | None = None,
        on_end: reservations.EndListener | None = None,
    ) -> None:
        """``watched_pods``: the caller reports pods bound or deleted and claims selected, bound or deleted, so a
        reservation ends only on evidence about its pod; without those reports annotation drops end them too."""
        self.policy = policy
        self.clock = clock
        self.limits = limits
        self.watched_nodes = watched_nodes
        self.watched_pods = watched_pods
        self.on_start = on_start
        self.on_end = on_end
        self.index = node_index.NodeIndex()
        self.ledger = reservations.Ledger(reservation_ttl, on_end=self._ended, credit_drops=not watched_pods)
        # Full annotations of each node as last sent in a full-Node request: when a node arrives unchanged (the
        # common case) one dict comparison replaces extracting and comparing its capacity annotations.
        self._seen: dict[str, object] = {}
        self._recency = node_recency.Recency(clock.now(), limits.node_ttl / 2)  # used without a Node watch
        self.pods = seen_pods.SeenPods(max_pods=limits.max_pods, pod_ttl=limits.pod_ttl)

    # --- verbs ----------------------------------------------------------------------------------------------

    def filter(self, pod: Pod, names: Sequence[str]) -> FilterDecision:
        """Which of ``names`` cannot take ``pod``, and a reservation when exactly one can."""
        if not pod.requested:
            return FilterDecision({})
        now = self.clock.now()
        self.pods.seen(pod, now)
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
            self._reserve(pod, {single: self._observed(single, pod.requested)}, now, Via.FILTER)
        return FilterDecision(failures, single)

    def filter_items(self, pod: Pod, items: Sequence[Item]) -> FilterDecision:
        """``filter`` judging each item on its own annotations (the reference functions, one by one)."""
        if not pod.requested:
            return FilterDecision({})
        now = self.clock.now()
        self.pods.seen(pod, now)
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
            self._reserve(pod, {single: observed}, now, Via.FILTER)
        return FilterDecision(failures, single)

    def prioritize(self, pod: Pod, names: Sequence[str], *, distinct: bool = False) -> ScoreDecision:
        """Scores of ``names`` (each once, ties broken as the policy says) and a reservation on the node expected to
        win, and with ``TieBreak.SCHEDULER`` on those tied with it.

        ``distinct``: the caller knows no name is listed twice (kube-scheduler's own node list), so ``names`` is
        not checked and the decision's ``names`` is ``names`` itself."""
        if not distinct and len(set(names)) != len(names):
            names = list(dict.fromkeys(names))  # the cache gives every copy the same answer
        if not pod.requested:
            return ScoreDecision(names, [0] * len(names))
        now = self.clock.now()
        self.pods.seen(pod, now)
        result = node_index.score_nodes(
            self.index, names, pod.requested, self.policy, self.ledger, now=now, pod=pod.key
        )  # fmt: skip
        self._reserve(pod, result.contenders, now, Via.PRIORITIZE)
        return ScoreDecision(names, result.scores, result.chosen, tuple(result.contenders))

    def prioritize_items(self, pod: Pod, items: Sequence[Item]) -> ScoreDecision:
        """``prioritize`` judging each item on its own annotations; a name listed twice keeps its last score."""
        if not pod.requested:
            names = list(dict.fromkeys(item.name for item in items))
            return ScoreDecision(names, [0] * len(names))
        now = self.clock.now()
        self.pods.seen(pod, now)
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
        ranking = scheduling.rank(scores, totals, self.policy)
        found = ranking.holds
        observed = {n: {c: scheduling.parse_free(raws[n].get(c)) for c in pod.requested} for n in found}
        self._reserve(pod, observed, now, Via.PRIORITIZE)
        return ScoreDecision(
            list(ranking.scores), list(ranking.scores.values()), found[0] if found else None, tuple(found)
        )  # fmt: skip

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
        self._recency.mark(names)
        if len(self.index) > self.limits.max_nodes:  # down to 90 % of the limit
            self._evict(self._recency.oldest(self.index.nodes(), len(self.index) - self.limits.max_nodes * 9 // 10))

    def node_updated(self, name: str, capacities: Mapping[str, str]) -> None:
        """A node's capacity annotations (class -> value) as the API server has them now (a watch event)."""
        self._seen.pop(name, None)
        if self.index.update(name, capacities) and self.ledger.holds(name):
            self._settle(name, self.clock.now())

    def node_removed(self, name: str) -> None:
        self._seen.pop(name, None)
        self.index.remove(name)
        self.ledger.release_node(name, reservations.EndReason.NODE_GONE)

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
            self._recency.forget(name)
        if names:
            log.debug("node cache: evicted %d nodes, %d left", len(names), len(self.index))

    # --- pods -----------------------------------------------------------------------------------------------

    def pod_bound(self, key: str, node: str) -> None:
        """The pod was bound to ``node`` (spec.nodeName set): its volumes exist, its reservations end."""
        if node in self.ledger.nodes_of(key):
            self.ledger.keep_only(key, node)  # the tied nodes it did not go to end as not-chosen
        self.ledger.release(key, reservations.EndReason.BOUND)
        self.pods.forget(key)

    def pod_deleted(self, key: str) -> None:
        self.ledger.release(key, reservations.EndReason.DELETED)
        self.pods.forget(key)

    def pod_selected(self, key: str, node: str) -> None:
        """kube-scheduler chose ``node`` for the pod: hold its request there only (moving it if held elsewhere)."""
        held = self.ledger.nodes_of(key)
        if node in held:
            self.ledger.keep_only(key, node)  # the other tied nodes, if any
            return
        tracked = self.pods.get(key)
        if held and self.policy.tie_break is scheduling.TieBreak.EXTENDER:
            # Our scores named a node kube-scheduler did not take: its extender weight does not outweigh its
            # plugins (docs/scheduler.md, "Ties"), or our prioritize reply did not reach it.
            log.warning(
                "kube-scheduler chose another node than the extender's pod=%s node=%s held=%s",
                key, node, ",".join(held),
            )  # fmt: skip
        if held:
            requested = self.ledger.requests_of(key)
        elif self.pods.is_provisioned(key):
            return  # a late event (e.g. the claim became Bound): the volume already counts in the annotation
        elif tracked is not None:
            requested = dict(tracked.requested)
        else:
            return  # neither held nor seen in a request: nothing known to hold
        pod = tracked if tracked is not None else Pod(key, requested=requested)
        observed = self._observed(node, requested)
        made = self.ledger.reserve(
            key, node, requested, observed, self.clock.now(), replaced=reservations.EndReason.REHOMED
        )  # fmt: skip
        self._started(pod, made, Via.SELECTED)

    def claim_selected(self, namespace: str, claim: str, node: str) -> bool:
        """A claim got ``volume.kubernetes.io/selected-node``; False when no pod seen in a request mounts it."""
        key = self.pods.by_claim(namespace, claim)
        if key is None:
            return False
        self.pod_selected(key, node)
        return True

    def claim_bound(self, namespace: str, claim: str) -> bool:
        """A claim has a volume (``spec.volumeName``): once every claim of its pod has one, the pod's volumes exist
        and its reservations end. False when no pod seen in a request mounts the claim."""
        key = self.pods.claim_bound(namespace, claim)
        if key is None:
            return False
        if self.pods.volumes_exist(key):
            self.ledger.release(key, reservations.EndReason.CLAIMS_BOUND)
        return True

    def claim_deleted(self, namespace: str, claim: str) -> None:
        self.pods.claim_gone(namespace, claim)

    # --- housekeeping ---------------------------------------------------------------------------------------

    def expire(self) -> None:
        """End reservations past their TTL, forget pods not seen for ``pod_ttl`` and (without a Node watch)
        evict nodes absent from requests for ``node_ttl``. The caller runs it on a timer (the extender: each
        second), so nothing waits for the next request."""
        now = self.clock.now()
        if self.ledger:
            self.ledger.expire(now)
        self.pods.expire(now)
        if not self.watched_nodes:
            self._evict(self._recency.turn(self.index.nodes(), now))

    def tracked_pods(self) -> int:
        return len(self.pods)

    def node_cache_sizes(self) -> dict[str, int]:
        """Entries of every per-node structure: the index, the remembered annotations of full-Node requests, and
        the nodes marked as seen lately (all bounded together)."""
        return {"index": len(self.index), "annotations": len(self._seen), "recent": len(self._recency.recent())}

    # --- reservations ---------------------------------------------------------------------------------------

    def _reserve(self, pod: Pod, nodes: Mapping[str, Mapping[str, int | None]], now: float, via: Via) -> None:
        """Hold ``pod``'s request on each of ``nodes`` (node -> its annotation per class now), if any."""
        if self.ledger.ttl <= 0 or not nodes or self.pods.volumes_exist(pod.key):
            return  # (a pod tried again after its volumes were made: the annotations count them)
        self._started(pod, self.ledger.reserve_on(pod.key, nodes, pod.requested, now), via)

    def _started(self, pod: Pod, made: Sequence[reservations.Reservation], via: Via) -> None:
        tied = len({r.node for r in made})  # > 1: held on every node tied for the top score
        for reservation in made:
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "reservation start pod=%s/%s uid=%s node=%s class=%s bytes=%d via=%s tied=%d",
                    pod.namespace, pod.name, pod.key, reservation.node, reservation.device_class,
                    reservation.size, via.value, tied,
                )  # fmt: skip
            if self.on_start is not None:
                self.on_start(reservation, via)

    def _ended(self, reservation: reservations.Reservation, reason: reservations.EndReason) -> None:
        if reason is reservations.EndReason.PROVISIONED:
            self.pods.provisioned(reservation.pod)
        if log.isEnabledFor(logging.DEBUG):
            tracked = self.pods.get(reservation.pod)
            name = f"{tracked.namespace}/{tracked.name}" if tracked else "?"
            log.debug(
                "reservation end pod=%s uid=%s node=%s class=%s bytes=%d reason=%s",
                name, reservation.pod, reservation.node, reservation.device_class, reservation.size, reason.value,
            )  # fmt: skip
        if self.on_end is not None:
            self.on_end(reservation, reason)
