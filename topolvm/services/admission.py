"""The pod admission decision: which TopoLVM capacity a new pod needs, and the pod as the webhook leaves it.

Called by the pod mutating webhook (``topolvm.webhook``, which turns the decision into a JSONPatch) and by the
simulator (which applies ``mutated`` to the pods it creates), so both worlds route pods to the extender alike.
Follows upstream's pod mutator:
- per device class, it sums the storage requests of the pod's *pending* PVCs and generic ephemeral volumes whose
  StorageClass is provisioned by ``topolvm.io`` (a request of 0 or none counts as 1 GiB);
- a pod with an already bound TopoLVM PVC is left alone (its node is fixed by the PV);
- missing PVCs or StorageClasses are skipped (pods may be created before their claims);
- a pod without containers is denied (there is nowhere to put the ``topolvm.io/capacity`` resource).
Beyond upstream's webhook configuration, a namespace labelled ``topolvm.io/webhook: ignore`` is also honoured
here, so a missing namespaceSelector in the MutatingWebhookConfiguration cannot wedge system namespaces.

Reads go through the ``Cluster`` port (PVCs, StorageClasses, Namespaces); its errors propagate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from topolvm import constants, ports
from topolvm.core import resources, sizing, workloads

CAPACITY_REQUEST = 1  # the topolvm.io/capacity amount: only its presence matters to kube-scheduler


@dataclasses.dataclass(frozen=True)
class Decision:
    """Allowed or denied, with a reason; ``capacities`` (bytes by ``capacity.topolvm.io/<class>`` key) is what an
    allowed pod requests, empty when it needs nothing from TopoLVM."""

    allowed: bool
    reason: str
    capacities: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def mutates(self) -> bool:
        return self.allowed and bool(self.capacities)


class _Classes:
    """StorageClass reads for one admission, remembered: a pod often mounts several claims of one class."""

    def __init__(self, cluster: ports.Cluster) -> None:
        self._cluster = cluster
        self._seen: dict[str, workloads.StorageClass | None] = {}

    def topolvm_class(self, name: str) -> workloads.StorageClass | None:
        if name not in self._seen:
            found = self._cluster.get(workloads.STORAGE_CLASS, name)
            self._seen[name] = found if found is not None and found.provisioner == constants.PLUGIN_NAME else None
        return self._seen[name]


def _requested(request_bytes: int) -> int:
    return request_bytes or sizing.DEFAULT_SIZE


def capacities(pod: workloads.Pod, cluster: ports.Cluster) -> dict[str, int] | None:
    """Bytes per capacity annotation key; None when a bound TopoLVM claim pins the pod to a node already.

    Claims are looked up in the pod's namespace (the webhook fills it in for pods made from templates)."""
    classes = _Classes(cluster)
    totals: dict[str, int] = {}
    namespace = pod.meta.namespace
    for volume in pod.spec.volumes:
        if volume.claim_name is not None:
            if not volume.claim_name or not namespace:
                continue  # no claim can be named so; the API server refuses such a pod anyway
            claim = cluster.get(workloads.PVC, volume.claim_name, namespace=namespace)
            if claim is None or claim.spec.storage_class_name is None:
                continue
            storage_class = classes.topolvm_class(claim.spec.storage_class_name)
            if storage_class is None:
                continue
            if claim.status.phase != "Pending":
                return None
            key = constants.capacity_annotation(storage_class.device_class)
            totals[key] = totals.get(key, 0) + _requested(claim.spec.request_bytes)
        elif volume.ephemeral is not None:
            if volume.ephemeral.storage_class_name is None:
                continue
            storage_class = classes.topolvm_class(volume.ephemeral.storage_class_name)
            if storage_class is None:
                continue
            key = constants.capacity_annotation(storage_class.device_class)
            totals[key] = totals.get(key, 0) + _requested(volume.ephemeral.request_bytes)
    return totals


def opted_out(namespace: str, cluster: ports.Cluster) -> bool:
    found = cluster.get(resources.NAMESPACE, namespace) if namespace else None
    return found is not None and (
        found.meta.labels.get(constants.NAMESPACE_OPT_OUT_LABEL) == constants.NAMESPACE_OPT_OUT_VALUE
    )


def decide(pod: workloads.Pod, cluster: ports.Cluster) -> Decision:
    """The decision for a pod being created."""
    if not pod.spec.containers:
        return Decision(False, "pod has no containers")
    if not pod.spec.volumes:
        return Decision(True, "no volumes")
    namespace = pod.meta.namespace
    if opted_out(namespace, cluster):
        label = f"{constants.NAMESPACE_OPT_OUT_LABEL}={constants.NAMESPACE_OPT_OUT_VALUE}"
        return Decision(True, f"namespace {namespace} opted out ({label})")
    totals = capacities(pod, cluster)
    if totals is None:
        return Decision(True, "pod has a bound TopoLVM volume")
    if not totals:
        return Decision(True, "no request for TopoLVM")
    return Decision(True, "capacity requested", totals)


def mutated(pod: workloads.Pod, capacities: Mapping[str, int]) -> workloads.Pod:
    """``pod`` with the capacity annotations and ``topolvm.io/capacity`` in its first container's requests and
    limits (what the webhook's patch does to it). Unchanged when nothing is requested or it has no container."""
    if not capacities or not pod.spec.containers:
        return pod
    meta = pod.meta.annotated({key: str(size) for key, size in sorted(capacities.items())})
    first, *rest = pod.spec.containers
    first = resources.evolve(
        first,
        requests={**first.requests, constants.CAPACITY_RESOURCE: CAPACITY_REQUEST},
        limits={**first.limits, constants.CAPACITY_RESOURCE: CAPACITY_REQUEST},
    )
    spec = resources.evolve(pod.spec, containers=(first, *rest))
    pod_with_capacity: workloads.Pod = resources.evolve(pod, meta=meta, spec=spec)
    return pod_with_capacity
