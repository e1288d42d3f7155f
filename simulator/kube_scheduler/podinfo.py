"""What the kube-scheduler model derives from one pod, and the per-node predicates on a pod's constraints.

Requests follow component-helpers' ``resource.PodRequests`` (v0.37): containers summed, each init container a
floor (max), no pod overhead or pod-level resources in this model. The *non-zero* variant used by the
NodeResourcesFit score and a node's NonZeroRequested counts a container that omits cpu or memory as asking for
100m / 200 MiB (pkg/scheduler/util/pod_resources.go); a request present with value 0 stays 0.

Taints and tolerations follow core/v1 ``Toleration.ToleratesTaint``; node selectors and affinity terms follow
component-helpers' ``nodeaffinity`` and apimachinery's label ``Requirement``. The TaintTolerationComparison
operators (alpha, off) are not modelled: a Gt/Lt toleration matches nothing, as upstream with the gate off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from topolvm.core import resources, workloads

DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024
UNSCHEDULABLE_TAINT_KEY = "node.kubernetes.io/unschedulable"

_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class Requests:
    cpu: int  # millicores, as the pod really asks (NodeResourcesFit filter, BalancedAllocation)
    memory: int
    nonzero_cpu: int  # with the scheduler's defaults for omitted requests (LeastAllocated, NonZeroRequested)
    nonzero_memory: int


def _aggregate(pod: workloads.Pod, resource: str, default: int | None) -> int:
    def one(container: workloads.Container) -> int:
        if resource in container.requests:
            return container.requests[resource]
        return default if default is not None else 0

    total = sum(one(c) for c in pod.spec.containers)
    for init in pod.spec.init_containers:
        if resource in init.requests or default is not None:
            total = max(total, one(init))
    return total


def pod_requests(pod: workloads.Pod) -> Requests:
    return Requests(
        cpu=_aggregate(pod, workloads.CPU, None),
        memory=_aggregate(pod, workloads.MEMORY, None),
        nonzero_cpu=_aggregate(pod, workloads.CPU, DEFAULT_MILLI_CPU_REQUEST),
        nonzero_memory=_aggregate(pod, workloads.MEMORY, DEFAULT_MEMORY_REQUEST),
    )


def requests_resource(pod: workloads.Pod, names: tuple[str, ...]) -> bool:
    """HTTPExtender.IsInterested: a container or init container requests or limits one of ``names``."""
    if not names:
        return True
    for container in (*pod.spec.containers, *pod.spec.init_containers):
        if any(n in container.requests or n in container.limits for n in names):
            return True
    return False


@dataclass(frozen=True)
class Constraints:
    """The pod fields that decide the per-node static checks; the key of the model's per-pod-shape cache."""

    node_selector: tuple[tuple[str, str], ...]
    required_terms: tuple[tuple[workloads.Requirement, ...], ...]
    preferred_terms: tuple[workloads.PreferredTerm, ...]
    tolerations: tuple[workloads.Toleration, ...]

    @property
    def has_required(self) -> bool:
        return bool(self.node_selector) or bool(self.required_terms)


def constraints_of(pod: workloads.Pod) -> Constraints:
    spec = pod.spec
    return Constraints(
        tuple(sorted(spec.node_selector.items())), spec.required_terms, spec.preferred_terms, spec.tolerations
    )


# --- taints ---------------------------------------------------------------------------------------------------


def tolerates(toleration: workloads.Toleration, taint: resources.Taint) -> bool:
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator == workloads.Operator.EQUAL:
        return toleration.value == taint.value
    return toleration.operator == workloads.Operator.EXISTS


def tolerated(tolerations: tuple[workloads.Toleration, ...], taint: resources.Taint) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def tolerates_unschedulable(tolerations: tuple[workloads.Toleration, ...]) -> bool:
    """NodeUnschedulable: spec.unschedulable is forgiven by a toleration of its NoSchedule taint."""
    return tolerated(tolerations, resources.Taint(UNSCHEDULABLE_TAINT_KEY, resources.TaintEffect.NO_SCHEDULE))


def has_untolerated_hard_taint(node: resources.Node, tolerations: tuple[workloads.Toleration, ...]) -> bool:
    """TaintToleration filter: a NoSchedule or NoExecute taint that no toleration matches."""
    return any(
        t.effect != resources.TaintEffect.PREFER_NO_SCHEDULE and not tolerated(tolerations, t) for t in node.spec.taints
    )


def intolerable_prefer_count(node: resources.Node, tolerations: tuple[workloads.Toleration, ...]) -> int:
    """TaintToleration score input: PreferNoSchedule taints not matched by a toleration of effect "" or
    PreferNoSchedule."""
    soft = tuple(t for t in tolerations if t.effect in ("", resources.TaintEffect.PREFER_NO_SCHEDULE))
    return sum(
        1 for t in node.spec.taints if t.effect == resources.TaintEffect.PREFER_NO_SCHEDULE and not tolerated(soft, t)
    )


# --- labels -----------------------------------------------------------------------------------------------------


def _parse_int64(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 64)."""
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _valid(req: workloads.Requirement) -> bool:
    """labels.NewRequirement's checks on operator and values (key syntax is not modelled)."""
    op = workloads.Operator
    if req.operator in (op.IN, op.NOT_IN):
        return bool(req.values)
    if req.operator in (op.EXISTS, op.DOES_NOT_EXIST):
        return not req.values
    if req.operator in (op.GT, op.LT):
        return len(req.values) == 1 and _parse_int64(req.values[0]) is not None
    return False


def requirement_matches(labels: Mapping[str, str], req: workloads.Requirement) -> bool:
    op = workloads.Operator
    value = labels.get(req.key)
    if req.operator in (op.GT, op.LT):
        have = None if value is None else _parse_int64(value)
        want = _parse_int64(req.values[0]) if len(req.values) == 1 else None
        if have is None or want is None:
            return False
        return have > want if req.operator == op.GT else have < want
    verdicts = {
        op.IN: value is not None and value in req.values,
        op.NOT_IN: value is None or value not in req.values,
        op.EXISTS: value is not None,
        op.DOES_NOT_EXIST: value is None,
    }
    return verdicts.get(req.operator, False)


def term_matches(labels: Mapping[str, str], term: tuple[workloads.Requirement, ...]) -> bool:
    """A nodeSelectorTerm's matchExpressions, ANDed; a term with an invalid requirement matches nothing."""
    return all(_valid(r) for r in term) and all(requirement_matches(labels, r) for r in term)


def required_matches(labels: Mapping[str, str], constraints: Constraints) -> bool:
    """NodeAffinity filter: nodeSelector (equality on every pair) AND one of the required terms. Empty terms are
    dropped, so required affinity whose terms are all empty matches no node."""
    if any(labels.get(k) != v for k, v in constraints.node_selector):
        return False
    if not constraints.required_terms:
        return True
    return any(term_matches(labels, t) for t in constraints.required_terms if t)


def preferred_score(labels: Mapping[str, str], terms: tuple[workloads.PreferredTerm, ...]) -> int:
    """NodeAffinity score before normalisation: the weights of the matching preferred terms (weight 0 and empty
    terms are ignored)."""
    return sum(t.weight for t in terms if t.weight and t.requirements and term_matches(labels, t.requirements))


STATIC_OK, STATIC_UNSCHEDULABLE, STATIC_TAINT, STATIC_AFFINITY = 0, 1, 2, 3


def static_code(node: resources.Node, constraints: Constraints) -> int:
    """The first of NodeUnschedulable, TaintToleration, NodeAffinity (filter order) that rejects the node."""
    if node.spec.unschedulable and not tolerates_unschedulable(constraints.tolerations):
        return STATIC_UNSCHEDULABLE
    if has_untolerated_hard_taint(node, constraints.tolerations):
        return STATIC_TAINT
    if constraints.has_required and not required_matches(node.meta.labels, constraints):
        return STATIC_AFFINITY
    return STATIC_OK
