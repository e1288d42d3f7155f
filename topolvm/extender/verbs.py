"""The extender verbs over bytes: decode ExtenderArgs, apply ``topolvm.core.scheduling``, encode the reply.

Called by ``topolvm.extender.app`` (HTTP) and directly by tests. No I/O: time comes from the holder's clock.
Malformed input gives 400 with a plain-text reason; a well-formed request whose pod annotations are invalid gets
a filter reply with ``Error`` set (kube-scheduler then reports it on the pod).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from topolvm import errors
from topolvm.core import scheduling
from topolvm.extender import config, holder, metrics, wire

log = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
REASON_NOT_CACHED = "node unknown to the extender (no capacity annotations seen yet)"


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON


def bad_request(message: str) -> Reply:
    return Reply(400, message.encode(), TEXT)


class _Candidate(NamedTuple):
    """A node under consideration (a tuple: built thousands of times per request)."""

    name: str
    raw: dict[str, str] | None  # capacity annotations by class; None = unknown node (names mode)


class Extender:
    def __init__(self, cfg: config.Config, state: holder.Holder, stats: metrics.Metrics) -> None:
        self.config = cfg
        self.policy = cfg.policy
        self.holder = state
        self.metrics = stats

    # --- filter ---------------------------------------------------------------------------------------------

    def predicate(self, body: bytes) -> Reply:
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
        items = (args.Nodes.items or []) if args.Nodes is not None else []
        self.metrics.nodes.labels("predicate").observe(len(items) if args.Nodes else len(args.NodeNames or ()))
        if args.Nodes is not None:
            try:
                candidates = self._candidates_from_items(items)
            except ValueError as exc:
                return bad_request(str(exc))
        else:
            candidates = self._candidates_from_names(args.NodeNames or [])
        if not requested:
            failures: dict[str, str] = {}
        else:
            key = holder.pod_key(meta.namespace, meta.name, meta.uid)
            failures = self._failures(candidates, requested, key)
        if args.Nodes is not None:
            kept = [raw for raw, c in zip(items, candidates, strict=True) if c.name not in failures]
            result = wire.FilterResult(Nodes=wire.ReplyNodeList(items=kept))
        else:
            result = wire.FilterResult(NodeNames=[c.name for c in candidates if c.name not in failures])
        # Neither missing capacity nor a full volume group is fixed by preempting pods: say so, so that
        # kube-scheduler does not evict pods in vain (upstream reports these as plain FailedNodes).
        result.FailedAndUnresolvableNodes = failures
        if failures and log.isEnabledFor(logging.DEBUG):
            log.debug("pod %s/%s: %d of %d nodes filtered", meta.namespace, meta.name, len(failures), len(candidates))
        return _encode(result)

    def _candidates_from_items(self, items: Sequence[msgspec.Raw]) -> list[_Candidate]:
        candidates: list[_Candidate] = []
        decode = wire.head_decoder.decode
        remember = self.holder.remember
        for index, raw in enumerate(items):
            try:
                head = decode(raw)
            except msgspec.DecodeError as exc:
                raise ValueError(f"invalid ExtenderArgs: Nodes.items[{index}]: {exc}") from None
            name = head.metadata.name
            if not name:
                raise ValueError(f"invalid ExtenderArgs: Nodes.items[{index}] has no metadata.name")
            capacities = holder.capacity_annotations(head.metadata.annotations)
            remember(name, capacities)
            candidates.append(_Candidate(name, capacities))
        self.metrics.cached_nodes.set(self.holder.known_nodes())
        return candidates

    def _candidates_from_names(self, names: Sequence[str]) -> list[_Candidate]:
        capacities = self.holder.capacities
        return [_Candidate(name, capacities(name)) for name in names]

    def _failures(self, candidates: Sequence[_Candidate], requested: dict[str, int], pod: str) -> dict[str, str]:
        now = self.holder.now()
        ledger = self.holder.ledger
        failures: dict[str, str] = {}
        held = ledger.nodes() if ledger else set()
        for candidate in candidates:
            if candidate.raw is None:
                failures[candidate.name] = REASON_NOT_CACHED
                continue
            usable = _usable(candidate, requested, ledger if candidate.name in held else _EMPTY, now, pod)
            reason = scheduling.filter_reason(usable, candidate.raw, requested)
            if reason == scheduling.REASON_NO_SPACE and ledger and candidate.name in ledger.nodes():
                plain = scheduling.usable(candidate.name, candidate.raw, requested, _EMPTY, now=now)
                if not scheduling.filter_reason(plain, candidate.raw, requested):
                    reason += " (after capacity reserved for pods being scheduled)"
            if reason:
                failures[candidate.name] = reason
        counter = self.metrics.failed_nodes
        for reason in set(failures.values()):
            counter.labels(reason.split(":")[0]).inc(sum(1 for r in failures.values() if r == reason))
        return failures

    # --- prioritize -----------------------------------------------------------------------------------------

    def prioritize(self, body: bytes) -> Reply:
        try:
            args = wire.prioritize_decoder.decode(body)
        except msgspec.DecodeError as exc:
            return bad_request(f"invalid ExtenderArgs: {exc}")
        missing = _missing(args.Pod, args.Nodes, args.NodeNames)
        if missing or args.Pod is None:
            return bad_request(missing)
        meta = args.Pod.metadata
        try:
            requested = scheduling.requested_bytes(meta.annotations or {})
            if args.Nodes is not None:
                candidates = [_head_candidate(i, head) for i, head in enumerate(args.Nodes.items or [])]
            else:
                candidates = self._candidates_from_names(args.NodeNames or [])
        except (errors.InvalidArgument, ValueError) as exc:
            # Prioritize has no error field; kube-scheduler logs a non-200 and carries on without our scores.
            return bad_request(str(exc))
        self.metrics.nodes.labels("prioritize").observe(len(candidates))
        if not requested:
            return _encode([wire.HostPriority(c.name, 0) for c in candidates])
        pod = holder.pod_key(meta.namespace, meta.name, meta.uid)
        return _encode(self._score(candidates, requested, pod))

    def _score(self, candidates: Sequence[_Candidate], requested: dict[str, int], pod: str) -> list[wire.HostPriority]:
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
            usable = _usable(candidate, requested, ledger if candidate.name in held else _EMPTY, now, pod)
            fits = not scheduling.filter_reason(usable, candidate.raw, requested)
            scores[candidate.name] = scheduling.node_score(usable, requested, policy) if fits else 0
            totals[candidate.name] = sum(v for v in usable.values() if v is not None)
            raws[candidate.name] = candidate.raw
        chosen = scheduling.choose(scores, totals, policy.mode)
        if chosen is not None and ledger.ttl > 0:
            observed = {c: scheduling.parse_free(raws[chosen].get(c)) for c in requested}
            ledger.reserve(pod, chosen, requested, observed, now)
            self._publish_ledger()
            log.debug("pod %s: reserved %s on %s", pod, requested, chosen)
        return [wire.HostPriority(name, score) for name, score in scores.items()]

    def _publish_ledger(self) -> None:
        reservations = list(self.holder.ledger.reservations())
        self.metrics.reservations.set(len(reservations))
        self.metrics.reserved_bytes.set(sum(r.size for r in reservations))


_EMPTY = scheduling.Ledger(ttl=0)


def _usable(
    candidate: _Candidate, requested: dict[str, int], ledger: scheduling.Ledger, now: float, pod: str
) -> dict[str, int | None]:
    if not ledger:  # the common case: nothing reserved on this node, skip the ledger entirely
        raw = candidate.raw or {}
        return {device_class: scheduling.parse_free(raw.get(device_class)) for device_class in requested}
    return scheduling.usable(candidate.name, candidate.raw or {}, requested, ledger, now=now, pod=pod)


def _missing(pod: object, nodes: object, names: object) -> str:
    if pod is None:
        return "invalid ExtenderArgs: Pod is required"
    if nodes is None and names is None:
        return "invalid ExtenderArgs: Nodes or NodeNames is required"
    return ""


def _head_candidate(index: int, head: wire.NodeHead) -> _Candidate:
    if not head.metadata.name:
        raise ValueError(f"invalid ExtenderArgs: Nodes.items[{index}] has no metadata.name")
    return _Candidate(head.metadata.name, holder.capacity_annotations(head.metadata.annotations))


def _encode(value: object) -> Reply:
    return Reply(200, wire.encoder.encode(value))
