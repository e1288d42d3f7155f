"""Where the simulated world plugs into TopoLVM's services: the scheduler extender (``SchedulerService`` fed by
the same watches topolvm-scheduler runs, answering the kube-scheduler model as the HTTP verbs answer
kube-scheduler) and the pod webhook (``services.admission``, applied to every pod before it is created).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from simulator import scenario, units, world
from simulator.kube_scheduler import api as ks_api
from topolvm import constants
from topolvm.core import resources, scheduling, workloads
from topolvm.kube import memory as kube_memory
from topolvm.services import admission as admission_service
from topolvm.services import scheduler as scheduler_service


def capacities(annotations: dict[str, str] | None) -> dict[str, str]:
    prefix = constants.CAPACITY_KEY_PREFIX
    return {k[len(prefix) :]: v for k, v in (annotations or {}).items() if k.startswith(prefix)}


class SimExtender:
    """kube_scheduler.Extender over ``SchedulerService``, with nodeCacheCapable's Node watch and the extender's
    Pod and PVC watches (``--watch-pods``: bindings, selected nodes and claims' volumes end or move reservations,
    annotation drops do not)."""

    def __init__(self, w: world.World, spec: scenario.ExtenderSpec) -> None:
        policy = scheduling.Policy(
            default_divisor=spec.default_divisor,
            divisors={(k or constants.DEFAULT_DEVICE_CLASS_ANNOTATION_NAME): v for k, v in spec.divisors.items()},
            mode=scheduling.Mode(spec.mode),
            tie_break=scheduling.TieBreak(spec.tie_break),
        )
        self.weight = spec.weight
        self.managed_resource = constants.CAPACITY_RESOURCE
        self.service = scheduler_service.SchedulerService(
            policy, units.duration(spec.reservation_ttl), w.clock, watched_nodes=True, watched_pods=True
        )
        self.filter_calls = 0
        self.prioritize_calls = 0
        self._most: dict[str, list[tuple[str, int]]] = {}  # class -> (node, annotation bytes), largest first
        self._last_pod: tuple[workloads.Pod, scheduler_service.Pod] | None = None
        cluster = w.cluster
        cluster.watch(resources.NODE, self._on_node)
        cluster.watch(workloads.POD, self._on_pod)
        cluster.watch(workloads.PVC, self._on_claim)

    def most_free(self, device_class: str, pod: workloads.Pod) -> int | None:
        """At least as much as any node could give ``pod`` of the class now: its capacity annotation less what is
        held for other pods. Nodes are ranked by annotation once per Node change; the first that holds nothing
        for others bounds every node after it."""
        ranked = self._most.get(device_class)
        if ranked is None:
            free = self.service.index.free(device_class)
            ranked = self._most[device_class] = sorted(free.items(), key=lambda item: (-item[1], item[0]))
        ledger = self.service.ledger
        key = scheduler_service.pod_key(pod.meta.namespace, pod.meta.name, pod.meta.uid)
        best: int | None = None
        now = self.service.clock.now()
        for name, value in ranked:
            if best is not None and value <= best:
                break  # sorted: nothing further can beat it
            usable = value - ledger.held(name, device_class, value, now, exclude=key) if ledger else value
            best = usable if best is None else max(best, usable)
        return best

    def _on_node(self, event: resources.Event[resources.Node]) -> None:
        self._most.clear()
        if event.type is resources.EventType.DELETED:
            self.service.node_removed(event.object.name)
        else:
            self.service.node_updated(event.object.name, capacities(dict(event.object.meta.annotations)))

    def _on_pod(self, event: resources.Event[workloads.Pod]) -> None:
        pod = event.object
        key = scheduler_service.pod_key(pod.meta.namespace, pod.meta.name, pod.meta.uid)
        if event.type is resources.EventType.DELETED:
            self.service.pod_deleted(key)
        elif pod.spec.node_name:
            self.service.pod_bound(key, pod.spec.node_name)

    def _on_claim(self, event: resources.Event[workloads.PersistentVolumeClaim]) -> None:
        """As topolvm-scheduler's ``kube.apply_claim``: a volume ends the pod's holds once all its claims have one,
        a selected-node before that moves them."""
        pvc = event.object
        namespace, name = pvc.meta.namespace, pvc.meta.name
        if event.type is resources.EventType.DELETED:
            self.service.claim_deleted(namespace, name)
        elif pvc.spec.volume_name:
            self.service.claim_bound(namespace, name)
        elif pvc.selected_node:
            self.service.claim_selected(namespace, name, pvc.selected_node)

    def _pod(self, pod: workloads.Pod) -> scheduler_service.Pod:
        # filter and prioritize of one cycle are asked about the same pod object: translate it once
        if self._last_pod is not None and self._last_pod[0] is pod:
            return self._last_pod[1]
        seen = scheduler_service.Pod(
            key=scheduler_service.pod_key(pod.meta.namespace, pod.meta.name, pod.meta.uid),
            namespace=pod.meta.namespace,
            name=pod.meta.name,
            requested=scheduling.requested_bytes(pod.meta.annotations),
            claims=pod.claim_names(),
        )
        self._last_pod = (pod, seen)
        return seen

    def interested(self, pod: workloads.Pod) -> bool:
        return any(
            self.managed_resource in c.requests or self.managed_resource in c.limits for c in pod.spec.containers
        )

    def filter(self, pod: workloads.Pod, nodes: Sequence[str]) -> ks_api.FilterResult:
        self.filter_calls += 1
        self.service.expire()
        decision = self.service.filter(self._pod(pod), nodes)
        failures = decision.failures
        passed = [n for n in nodes if n not in failures] if failures else list(nodes)
        # Neither missing capacity nor a full VG is fixed by preemption: all go to FailedAndUnresolvableNodes.
        return ks_api.FilterResult(passed=passed, failed={}, unresolvable=dict(failures))

    def prioritize(self, pod: workloads.Pod, nodes: Sequence[str]) -> list[int]:
        self.prioritize_calls += 1
        # The model's node list names every node once, as kube-scheduler's does: the scores come in its order.
        return self.service.prioritize(self._pod(pod), nodes, distinct=True).scores


def admission(cluster: kube_memory.InMemoryCluster) -> Callable[[workloads.Pod], workloads.Pod]:
    """The webhook's mutation, as the API server applies it to every pod being created."""

    def admit(pod: workloads.Pod) -> workloads.Pod:
        decision = admission_service.decide(pod, cluster)
        return admission_service.mutated(pod, decision.capacities) if decision.mutates else pod

    return admit


def scheduler_config(spec: scenario.SchedulerSpec) -> ks_api.SchedulerConfig:
    """The KubeSchedulerConfiguration the scenario describes (deploy/scheduler-config.yaml's extender entry)."""
    return ks_api.SchedulerConfig(
        percentage_of_nodes_to_score=spec.percentage_of_nodes_to_score,
        extender_weight=spec.extender.weight,
        storage_capacity_scoring=spec.storage_capacity_scoring,
    )
