"""The extender verbs over bytes: decode ExtenderArgs, apply ``topolvm.core.scheduling``, encode the reply.

Called by ``topolvm.extender.app`` (HTTP) and directly by tests. No I/O: time comes from the holder's clock.
Malformed input gives 400 with a plain-text reason; a well-formed request whose pod annotations are invalid gets
a filter reply with ``Error`` set (kube-scheduler then reports it on the pod).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import operator
from collections.abc import Callable, Sequence
from typing import NamedTuple

import msgspec

from topolvm import errors
from topolvm.core import node_index, scheduling
from topolvm.extender import config, holder, metrics, wire

log = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
REASON_NOT_CACHED = scheduling.REASON_UNKNOWN_NODE


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON


def bad_request(message: str) -> Reply:
    return Reply(400, message.encode(), TEXT)


class _Candidate(NamedTuple):
    """A node of a full-Node request with duplicate names, judged on its own annotations (the slow path)."""

    name: str
    raw: dict[str, str] | None  # capacity annotations by class; None = unknown node (names mode)


class Extender:
    """The two verbs. Each request runs under the holder's lock, in three steps: decode, bring the node index up
    to date with the request's Nodes (full-Node mode; unchanged nodes cost one dict comparison), then evaluate
    the node names against the index (``node_index.filter_nodes``/``score_nodes``).

    A full-Node request that names a node twice is judged item by item on the reference functions instead,
    since the two items may carry different annotations.
    """

    def __init__(self, cfg: config.Config, state: holder.Holder, stats: metrics.Metrics) -> None:
        self.config = cfg
        self.policy = cfg.policy
        self.holder = state
        self.metrics = stats
        self._heads = _HeadMemo()
        self._nodes_predicate = stats.nodes.labels("predicate")
        self._nodes_prioritize = stats.nodes.labels("prioritize")

    # --- filter ---------------------------------------------------------------------------------------------

    def predicate(self, body: bytes | bytearray) -> Reply:
        try:
            args = wire.filter_decoder.decode(body)
        except msgspec.DecodeError as exc:
            return bad_request(f"invalid ExtenderArgs: {exc}")
        missing = _missing(args.Pod, args.Nodes, args.NodeNames)
        if missing or args.Pod is None:
            return bad_request(missing)
        meta = args.Pod.metadata
        try:
            requested = scheduling.requested_bytes(meta.annotations or {})
        except errors.InvalidArgument as exc:
            return _encode(wire.FilterResult(Error=str(exc)))
        pod = holder.pod_key(meta.namespace, meta.name, meta.uid)
        if args.Nodes is not None:
            outcome = self._filter_nodes(args.Nodes.items or [], requested, pod)
            if isinstance(outcome, Reply):
                return outcome
            result, failures, count = outcome
        else:
            result, failures, count = self._filter_names(args.NodeNames or [], requested, pod)
        # Neither missing capacity nor a full volume group is fixed by preempting pods: say so, so that
        # kube-scheduler does not evict pods in vain (upstream reports these as plain FailedNodes).
        result.FailedAndUnresolvableNodes = failures
        if failures:
            self._count_failures(failures)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("pod %s/%s: %d of %d nodes filtered", meta.namespace, meta.name, len(failures), count)
        return _encode(result)

    def _filter_nodes(
        self, items: list[msgspec.Raw], requested: dict[str, int], pod: str
    ) -> Reply | tuple[wire.FilterResult, dict[str, str], int]:
        self._nodes_predicate.observe(len(items))
        try:
            heads = self._heads.decode(items)
            names = _names(heads)
        except ValueError as exc:
            return bad_request(str(exc))
        with self.holder.lock:
            self.holder.observe(names, list(map(_ANNOTATIONS, heads)))
            self.metrics.cached_nodes.set(self.holder.known_nodes())
            if not requested:
                failures: dict[str, str] = {}
            elif _has_duplicates(names):
                failures = self._failures_per_item(_candidates(heads), requested, pod)
            else:
                failures = self._failures(names, requested, pod)
        kept = [raw for raw, name in zip(items, names, strict=True) if name not in failures]
        return wire.FilterResult(Nodes=wire.ReplyNodeList(items=kept)), failures, len(items)

    def _filter_names(
        self, names: list[str], requested: dict[str, int], pod: str
    ) -> tuple[wire.FilterResult, dict[str, str], int]:
        self._nodes_predicate.observe(len(names))
        failures: dict[str, str] = {}
        if requested:
            with self.holder.lock:
                failures = self._failures(names, requested, pod)
        kept = [name for name in names if name not in failures]
        return wire.FilterResult(NodeNames=kept), failures, len(names)

    def _failures(self, names: Sequence[str], requested: dict[str, int], pod: str) -> dict[str, str]:
        now = self.holder.now()
        return node_index.filter_nodes(self.holder.index, names, requested, self.holder.ledger, now=now, pod=pod)

    def _failures_per_item(
        self, candidates: Sequence[_Candidate], requested: dict[str, int], pod: str
    ) -> dict[str, str]:
        now = self.holder.now()
        ledger = self.holder.ledger
        failures: dict[str, str] = {}
        held = ledger.nodes() if ledger else set()
        for candidate in candidates:
            if candidate.raw is None:
                failures[candidate.name] = REASON_NOT_CACHED
                continue
            usable = scheduling.usable(
                candidate.name, candidate.raw, requested, ledger if candidate.name in held else _EMPTY, now=now, pod=pod
            )
            reason = scheduling.filter_reason(usable, candidate.raw, requested)
            if reason == scheduling.REASON_NO_SPACE and ledger and candidate.name in ledger.nodes():
                plain = scheduling.usable(candidate.name, candidate.raw, requested, _EMPTY, now=now)
                if not scheduling.filter_reason(plain, candidate.raw, requested):
                    reason += scheduling.REASON_AFTER_RESERVATIONS
            if reason:
                failures[candidate.name] = reason
        return failures

    def _count_failures(self, failures: dict[str, str]) -> None:
        by_label: collections.Counter[str] = collections.Counter()
        for reason, count in collections.Counter(failures.values()).items():
            by_label[reason.split(":")[0]] += count
        counter = self.metrics.failed_nodes
        for label, count in by_label.items():
            counter.labels(label).inc(count)

    # --- prioritize -----------------------------------------------------------------------------------------

    def prioritize(self, body: bytes | bytearray) -> Reply:
        try:
            args = wire.prioritize_decoder.decode(body)
        except msgspec.DecodeError as exc:
            return bad_request(f"invalid ExtenderArgs: {exc}")
        missing = _missing(args.Pod, args.Nodes, args.NodeNames)
        if missing or args.Pod is None:
            return bad_request(missing)
        meta = args.Pod.metadata
        heads: list[wire.NodeHead] | None = None
        try:
            requested = scheduling.requested_bytes(meta.annotations or {})
            if args.Nodes is not None:
                heads = args.Nodes.items or []
                names = _names(heads)
            else:
                names = args.NodeNames or []
        except (errors.InvalidArgument, ValueError) as exc:
            # Prioritize has no error field; kube-scheduler logs a non-200 and carries on without our scores.
            return bad_request(str(exc))
        self._nodes_prioritize.observe(len(names))
        if not requested:
            return _encode([wire.HostPriority(name, 0) for name in names])
        pod = holder.pod_key(meta.namespace, meta.name, meta.uid)
        with self.holder.lock:
            if heads is not None:
                self.holder.observe(names, list(map(_ANNOTATIONS, heads)))
            if _has_duplicates(names):
                if heads is not None:
                    return _encode(self._score_per_item(_candidates(heads), requested, pod))
                names = list(dict.fromkeys(names))  # the cache gives every copy the same answer
            return _encode(self._score(names, requested, pod))

    def _score(self, names: list[str], requested: dict[str, int], pod: str) -> list[wire.HostPriority]:
        now = self.holder.now()
        ledger = self.holder.ledger
        result = node_index.score_nodes(self.holder.index, names, requested, self.policy, ledger, now=now, pod=pod)
        if result.chosen is not None:
            self._reserve(pod, result.chosen, requested, result.observed, now)
        return list(map(wire.HostPriority, names, result.scores))

    def _score_per_item(
        self, candidates: Sequence[_Candidate], requested: dict[str, int], pod: str
    ) -> list[wire.HostPriority]:
        now = self.holder.now()
        ledger = self.holder.ledger
        policy = self.policy
        scores: dict[str, int] = {}
        totals: dict[str, int] = {}
        raws: dict[str, dict[str, str]] = {}
        held = ledger.nodes() if ledger else set()
        for candidate in candidates:
            if candidate.raw is None:
                scores[candidate.name] = 0
                continue
            usable = scheduling.usable(
                candidate.name, candidate.raw, requested, ledger if candidate.name in held else _EMPTY, now=now, pod=pod
            )
            fits = not scheduling.filter_reason(usable, candidate.raw, requested)
            scores[candidate.name] = scheduling.node_score(usable, requested, policy) if fits else 0
            totals[candidate.name] = sum(v for v in usable.values() if v is not None)
            raws[candidate.name] = candidate.raw
        chosen = scheduling.choose(scores, totals, policy.mode)
        if chosen is not None:
            observed = {c: scheduling.parse_free(raws[chosen].get(c)) for c in requested}
            self._reserve(pod, chosen, requested, observed, now)
        return [wire.HostPriority(name, score) for name, score in scores.items()]

    def _reserve(
        self, pod: str, node: str, requested: dict[str, int], observed: dict[str, int | None], now: float
    ) -> None:
        ledger = self.holder.ledger
        if ledger.ttl <= 0:
            return
        ledger.reserve(pod, node, requested, observed, now)
        self._publish_ledger()
        log.debug("pod %s: reserved %s on %s", pod, requested, node)

    def _publish_ledger(self) -> None:
        reservations = list(self.holder.ledger.reservations())
        self.metrics.reservations.set(len(reservations))
        self.metrics.reserved_bytes.set(sum(r.size for r in reservations))


_EMPTY = scheduling.Ledger(ttl=0)
_NAME: Callable[[wire.NodeHead], str] = operator.attrgetter("metadata.name")
_ANNOTATIONS: Callable[[wire.NodeHead], dict[str, str] | None] = operator.attrgetter("metadata.annotations")


class _HeadMemo:
    """Decoded heads of the previous full-Node filter request's items, by position.

    kube-scheduler sends the same Nodes in the same order request after request, and a Node rarely changes
    between two of them; comparing an item's bytes with the item at the same position last time is about five
    times cheaper than decoding it again. Holds the previous request's items (and so its body) alive.
    """

    def __init__(self) -> None:
        self.items: list[msgspec.Raw] = []
        self.heads: list[wire.NodeHead] = []

    def decode(self, items: list[msgspec.Raw]) -> list[wire.NodeHead]:
        """Heads of ``items``; ValueError naming the first item that does not decode."""
        last_items, last_heads = self.items, self.heads
        common = min(len(items), len(last_items))
        same = list(map(operator.eq, items[:common], last_items[:common]))
        if common == len(items) and all(same):
            heads = last_heads[:common]
        else:
            decode = wire.head_decoder.decode
            heads = []
            for index, raw in enumerate(items):
                if index < common and same[index]:
                    heads.append(last_heads[index])
                    continue
                try:
                    heads.append(decode(raw))
                except msgspec.DecodeError as exc:
                    raise ValueError(f"invalid ExtenderArgs: Nodes.items[{index}]: {exc}") from None
        self.items, self.heads = items, heads
        return heads


def _names(heads: Sequence[wire.NodeHead]) -> list[str]:
    names = list(map(_NAME, heads))
    if "" in names:
        raise ValueError(f"invalid ExtenderArgs: Nodes.items[{names.index('')}] has no metadata.name")
    return names


def _candidates(heads: Sequence[wire.NodeHead]) -> list[_Candidate]:
    return [_Candidate(h.metadata.name, holder.capacity_annotations(h.metadata.annotations)) for h in heads]


def _has_duplicates(names: Sequence[str]) -> bool:
    return len(set(names)) != len(names)


def _missing(pod: object, nodes: object, names: object) -> str:
    if pod is None:
        return "invalid ExtenderArgs: Pod is required"
    if nodes is None and names is None:
        return "invalid ExtenderArgs: Nodes or NodeNames is required"
    return ""


def _encode(value: object) -> Reply:
    return Reply(200, wire.encoder.encode(value))
