"""The kube-scheduler model's vocabulary: its configuration, what it is told about a pod's claims, the extender it
calls, and what one scheduling attempt answers.

Numbers and strings are kube-scheduler v1.37's (pkg/scheduler, read at v1.37.2): plugin weights from
``apis/config/v1/default_plugins.go``, reason strings from each plugin, the extender's score scaling from
``schedule_one.go`` (``MaxNodeScore / MaxExtenderPriority``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from topolvm import constants
from topolvm.core import workloads

MAX_NODE_SCORE = 100
MAX_EXTENDER_PRIORITY = 10

# Score plugin weights of the default profile; VolumeBinding has none in the list, and the framework turns a
# weight of 0 into 1 (framework/runtime/framework.go, getScoreWeights).
WEIGHT_TAINT_TOLERATION = 3
WEIGHT_NODE_AFFINITY = 2
WEIGHT_NODE_RESOURCES_FIT = 1
WEIGHT_BALANCED_ALLOCATION = 1
WEIGHT_VOLUME_BINDING = 1

# Filter reasons, exactly as the plugins word them (they are counted in the FitError message).
REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_TAINT = "node(s) had untolerated taint(s)"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_CPU = "Insufficient cpu"
REASON_MEMORY = "Insufficient memory"
REASON_PV_NODE_AFFINITY = "node(s) didn't match PersistentVolume's node affinity"
REASON_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
REASON_NOT_ENOUGH_SPACE = "node(s) did not have enough free storage"
REASON_NODE_NAME_PREFILTER = "node(s) didn't satisfy plugin(s) [NodeName]"
REASON_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
MESSAGE_NO_NODES = "no nodes available to schedule pods"

# Plugin names used in ScheduleResult.breakdown.
TAINT_TOLERATION = "TaintToleration"
NODE_AFFINITY = "NodeAffinity"
NODE_RESOURCES_FIT = "NodeResourcesFit"
BALANCED_ALLOCATION = "NodeResourcesBalancedAllocation"
VOLUME_BINDING = "VolumeBinding"
EXTENDER = "Extender"  # framework.ExtenderName: what the queue records when an extender rejected nodes
NODE_UNSCHEDULABLE = "NodeUnschedulable"
NODE_NAME = "NodeName"

# The plugin behind each filter reason: the pod's UnschedulablePlugins after a failed cycle (each rejected node
# counts under the first plugin that rejected it), which decide what cluster events move it back to the queue.
PLUGIN_OF_REASON = {
    REASON_UNSCHEDULABLE: NODE_UNSCHEDULABLE,
    REASON_TAINT: TAINT_TOLERATION,
    REASON_AFFINITY: NODE_AFFINITY,
    REASON_TOO_MANY_PODS: NODE_RESOURCES_FIT,
    REASON_CPU: NODE_RESOURCES_FIT,
    REASON_MEMORY: NODE_RESOURCES_FIT,
    REASON_PV_NODE_AFFINITY: VOLUME_BINDING,
    REASON_BIND_CONFLICT: VOLUME_BINDING,
    REASON_NOT_ENOUGH_SPACE: VOLUME_BINDING,
    REASON_NODE_NAME_PREFILTER: NODE_NAME,
    REASON_UNBOUND_IMMEDIATE: VOLUME_BINDING,
}


@dataclass(frozen=True)
class SchedulerConfig:
    """The parts of a KubeSchedulerConfiguration that move a TopoLVM pod's placement."""

    # 0 is the adaptive default: 50% - nodes/125, at least 5% (and never fewer than 100 nodes).
    percentage_of_nodes_to_score: int = 0
    # The extender entry: its weight, and the resources that make it interested in a pod (TopoLVM's webhook adds
    # topolvm.io/capacity to the first container). An empty tuple means interested in every pod.
    extender_weight: int = 1
    extender_managed_resources: tuple[str, ...] = (constants.CAPACITY_RESOURCE,)
    # The StorageCapacityScoring feature gate (beta, on by default in v1.37) and VolumeBindingArgs.shape:
    # (utilization percent, score 0..10) points; the default prefers nodes with more free capacity.
    storage_capacity_scoring: bool = True
    volume_binding_shape: tuple[tuple[int, int], ...] = ((0, 10), (100, 0))


@dataclass(frozen=True)
class ClaimView:
    """One PVC of the pod, as the VolumeBinding plugin sees it.

    ``bound_node``: the claim is bound and its PV's node affinity names this node (topology.topolvm.io/node).
    ``selected_node``: the claim carries volume.kubernetes.io/selected-node from an earlier cycle.
    ``provisioner_has_capacity_tracking``: the provisioner's CSIDriver has storageCapacity: true, so a
    CSIStorageCapacity with room is required (and scored) on a node.
    """

    name: str
    storage_class: str
    request_bytes: int
    wait_for_first_consumer: bool = True
    bound_node: str | None = None
    provisioner_has_capacity_tracking: bool = True
    selected_node: str | None = None


@dataclass(frozen=True)
class FilterResult:
    """An extender's filter answer: names that passed (in the extender's order) and the failed ones with why."""

    passed: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    unresolvable: dict[str, str] = field(default_factory=dict)


class Extender(Protocol):
    """A scheduler extender with a filter and a prioritize verb (what TopoLVM's topolvm-scheduler serves)."""

    def filter(self, pod: workloads.Pod, nodes: Sequence[str]) -> FilterResult: ...

    def prioritize(self, pod: workloads.Pod, nodes: Sequence[str]) -> Sequence[int]:
        """One score in 0..MAX_EXTENDER_PRIORITY per node, in the order given."""
        ...


@dataclass(frozen=True)
class ScheduleResult:
    """One scheduling attempt. ``node`` is None when the pod is unschedulable; ``message`` is then the
    FailedScheduling text. ``scores`` holds the total of every scored node (empty when one node was feasible),
    ``tied`` the nodes sharing the top score, ``failures`` the reason histogram of the nodes rejected in this
    cycle, ``breakdown`` the weighted score per plugin (only when asked for), ``rejectors`` the plugins that
    rejected nodes of an unschedulable pod (``EXTENDER`` for the extender; empty when no plugin did, as with no
    nodes at all)."""

    node: str | None
    evaluated: int
    feasible: int
    scores: Mapping[str, int]
    tied: tuple[str, ...]
    message: str
    failures: Mapping[str, int]
    breakdown: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    rejectors: frozenset[str] = frozenset()


def num_feasible_nodes_to_find(percentage: int, num_all_nodes: int) -> int:
    """How many feasible nodes a cycle looks for before it stops filtering (schedule_one.go)."""
    if num_all_nodes < 100:
        return num_all_nodes
    if percentage == 0:
        percentage = max(50 - num_all_nodes // 125, 5)
    return max(num_all_nodes * percentage // 100, 100)


def fit_error_message(num_all_nodes: int, histogram: Mapping[str, int], prefilter_message: str = "") -> str:
    """FitError.Error without the PostFilter (preemption) part: "0/N nodes are available: <sorted counts>."."""
    message = f"0/{num_all_nodes} nodes are available:"
    if prefilter_message:
        return f"{message} {prefilter_message}."
    parts = sorted(f"{count} {reason}" for reason, count in histogram.items())
    if parts:
        message += f" {', '.join(parts)}."
    return message
