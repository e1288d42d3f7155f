"""The extender verbs over bytes: decode ExtenderArgs, ask ``topolvm.services.scheduler``, encode the reply.

Called by ``topolvm.extender.app`` (HTTP) and directly by tests. Only translation: the decisions and the state
(node cache, reservations) are the service's. No I/O. Malformed input gives 400 with a plain-text reason; a
well-formed request whose pod annotations are invalid gets a filter reply with ``Error`` set (kube-scheduler
then reports it on the pod).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import operator
from collections.abc import Callable, Sequence

import msgspec

from topolvm import errors
from topolvm.core import node_index, scheduling
from topolvm.extender import config, holder, metrics, wire
from topolvm.services import scheduler

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


class Extender:
    """The two verbs: decode, translate to ``scheduler.SchedulerService`` calls under the holder's lock, encode.

    A full-Node request first brings the node cache up to date with its Nodes (unchanged nodes cost one dict
    comparison), so it is judged on exactly what it sent. One that names a node twice is judged item by item
    (``filter_items``/``prioritize_items``), since the two items may carry different annotations.
    """

    def __init__(self, cfg: config.Config, state: holder.Holder, stats: metrics.Metrics) -> None:
        self.config = cfg
        self.holder = state
        self.service = state.service
        self.metrics = stats
        self._heads = _HeadMemo()
        self._nodes_predicate = stats.nodes.labels("predicate")
        self._nodes_prioritize = stats.nodes.labels("prioritize")
        self._items_reused = stats.node_items.labels("reused")
        self._items_decoded = stats.node_items.labels("decoded")

    # --- filter ---------------------------------------------------------------------------------------------

    def predicate(self, body: bytes | bytearray) -> Reply:
        try:
            args = wire.filter_decoder.decode(body)
        except msgspec.DecodeError as exc:
            return bad_request(f"invalid ExtenderArgs: {exc}")
        missing = _missing(args.Pod, args.Nodes, args.NodeNames)
        if missing or args.Pod is None:
            return bad_request(missing)
        try:
            pod = _pod(args.Pod)
        except errors.InvalidArgument as exc:
            return _encode(wire.FilterResult(Error=str(exc)))
        if args.Nodes is not None:
            items = args.Nodes.items or []
            self._nodes_predicate.observe(len(items))
            try:
                heads = self._heads.decode(items)
                names = _names(heads)
            except ValueError as exc:
                return bad_request(str(exc))
            self._items_reused.inc(self._heads.reused)
            self._items_decoded.inc(len(items) - self._heads.reused)
            with self.holder.lock:
                self.service.nodes_observed(names, list(map(_ANNOTATIONS, heads)))
                if _has_duplicates(names):
                    decision = self.service.filter_items(pod, _items(heads))
                else:
                    decision = self.service.filter(pod, names)
            failures = decision.failures
            kept = [raw for raw, name in zip(items, names, strict=True) if name not in failures]
            result = wire.FilterResult(Nodes=wire.ReplyNodeList(items=kept))
        else:
            names = args.NodeNames or []
            self._nodes_predicate.observe(len(names))
            with self.holder.lock:
                failures = self.service.filter(pod, names).failures
            result = wire.FilterResult(NodeNames=[name for name in names if name not in failures])
        # Neither missing capacity nor a full volume group is fixed by preempting pods: say so, so that
        # kube-scheduler does not evict pods in vain (upstream reports these as plain FailedNodes).
        result.FailedAndUnresolvableNodes = failures
        if failures:
            self._count_failures(failures)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("pod %s/%s: %d of %d nodes filtered", pod.namespace, pod.name, len(failures), len(names))
        return _encode(result)

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
        heads: list[wire.NodeHead] | None = None
        try:
            pod = _pod(args.Pod)
            if args.Nodes is not None:
                heads = args.Nodes.items or []
                names = _names(heads)
            else:
                names = args.NodeNames or []
        except (errors.InvalidArgument, ValueError) as exc:
            # Prioritize has no error field; kube-scheduler logs a non-200 and carries on without our scores.
            return bad_request(str(exc))
        self._nodes_prioritize.observe(len(names))
        with self.holder.lock:
            if heads is not None:
                self.service.nodes_observed(names, list(map(_ANNOTATIONS, heads)))
                if _has_duplicates(names):
                    decision = self.service.prioritize_items(pod, _items(heads))
                    return _encode(list(map(wire.HostPriority, decision.names, decision.scores)))
            decision = self.service.prioritize(pod, names)
        return _encode(list(map(wire.HostPriority, decision.names, decision.scores)))


_NAME: Callable[[wire.NodeHead], str] = operator.attrgetter("metadata.name")
_ANNOTATIONS: Callable[[wire.NodeHead], dict[str, str] | None] = operator.attrgetter("metadata.annotations")


def _pod(head: wire.PodHead) -> scheduler.Pod:
    """The service's view of a request's pod; InvalidArgument when its capacity annotations are not byte counts."""
    meta = head.metadata
    requested = scheduling.requested_bytes(meta.annotations or {})
    key = scheduler.pod_key(meta.namespace, meta.name, meta.uid)
    claims = head.claims() if requested else ()
    return scheduler.Pod(key, meta.namespace, meta.name, requested, claims)


class _HeadMemo:
    """Decoded heads of the previous full-Node filter request's items, by position.

    kube-scheduler sends the same Nodes in the same order request after request, and a Node rarely changes
    between two of them; comparing an item's bytes with the item at the same position last time is about five
    times cheaper than decoding it again. Holds the previous request's items (and so its body) alive.
    """

    def __init__(self) -> None:
        self.items: list[msgspec.Raw] = []
        self.heads: list[wire.NodeHead] = []
        self.reused = 0  # items of the last call served from the previous request's decode

    def decode(self, items: list[msgspec.Raw]) -> list[wire.NodeHead]:
        """Heads of ``items``; ValueError naming the first item that does not decode."""
        last_items, last_heads = self.items, self.heads
        common = min(len(items), len(last_items))
        same = list(map(operator.eq, items[:common], last_items[:common]))
        if common == len(items) and all(same):
            heads = last_heads[:common]
            self.reused = common
        else:
            self.reused = sum(same)
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


def _items(heads: Sequence[wire.NodeHead]) -> list[scheduler.Item]:
    return [scheduler.Item(h.metadata.name, node_index.capacities(h.metadata.annotations)) for h in heads]


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
