"""kube-scheduler's queue and binding cycle around the decision model of ``simulator.kube_scheduler``.

What kube-scheduler does around each decision, modelled (pkg/scheduler/schedule_one.go):
- one scheduling cycle at a time, pods taken from the scheduling queue (``simulator.scheduling_queue``: arrival
  order, backoff, unschedulable pods moved back by the cluster events that may help them);
- the chosen node is *assumed* (its resources count for the next pods) and the binding cycle runs on its own:
  the VolumeBinding plugin's PreBind writes the selected-node annotation on the pod's unbound
  WaitForFirstConsumer claims and waits (up to 10 minutes) until they are bound; if the provisioner withdraws
  the annotation (no room) the pod is forgotten and tried again; then the pod is bound to the node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable

import simpy

from simulator import engine, scheduling_queue, world
from simulator.kube_scheduler import api as ks_api
from simulator.kube_scheduler import model as ks_model
from simulator.kube_scheduler import queueing
from topolvm import constants, errors
from topolvm.core import resources, workloads
from topolvm.core import scheduling as scheduling_policy

log = logging.getLogger(__name__)
Key = tuple[str, str]
BIND_TIMEOUT = 600.0  # VolumeBinding's bindTimeoutSeconds
PROVISIONING_FAILED = 'running PreBind plugin "VolumeBinding": failed to provision volume'
# Words of the failure reasons that are about storage: the extender's, VolumeBinding's and the provisioner's.
STORAGE_HINTS = (
    "vg free space",
    "free storage",
    "storage capacity",
    "failed to provision volume",
    "insufficient capacity",
)
RESOURCE_REASONS = frozenset({ks_api.REASON_CPU, ks_api.REASON_MEMORY, ks_api.REASON_TOO_MANY_PODS})
# At least as much as any node could give the pod of a device class (extender mode); None: no node offers it.
MostFree = Callable[[str, workloads.Pod], int | None]


@functools.lru_cache(maxsize=1024)
def is_storage_reason(reason: str) -> bool:
    lowered = reason.lower()
    return any(hint in lowered for hint in STORAGE_HINTS)


@dataclasses.dataclass(frozen=True)
class _Failure:
    attempt: Attempt
    nodes: int  # how many nodes there were
    settleable: bool  # every node turned it down for resources or storage (see ``_cannot_fit``)
    wanted: dict[str, int]  # bytes per device class (annotation name) the pod asks for
    rejectors: frozenset[str]  # the plugins that rejected it (its UnschedulablePlugins)
    claims: frozenset[Key]  # its PVCs


@dataclasses.dataclass
class Attempt:
    """One scheduling attempt, as the observer records it."""

    pod: Key
    time: float
    node: str | None
    message: str
    failures: dict[str, int]
    tied: tuple[str, ...]


class SchedulerDriver:
    def __init__(
        self,
        w: world.World,
        model: ks_model.KubeScheduler,
        *,
        cycle_latency: float,
        on_attempt: Callable[[Attempt], None],
        on_bound: Callable[[Key, str], None],
        capacity_tracking: bool,
        most_free: MostFree | None = None,
    ) -> None:
        self.world = w
        self.env: simpy.Environment = w.env
        self.cluster = w.cluster
        self.model = model
        self.cycle_latency = cycle_latency
        self.on_attempt = on_attempt
        self.on_bound = on_bound
        # whether TopoLVM's CSIDriver has storageCapacity: true (kube-scheduler then needs CSIStorageCapacity room)
        self.capacity_tracking = capacity_tracking
        self.most_free = most_free
        self.last_failed: dict[Key, _Failure] = {}  # the pod's last failed attempt
        self.settled = 0  # retries answered without a cycle (see _cannot_fit)
        self.settle_hopeless = True  # tests turn it off to show it changes no outcome
        self._capacity: dict[str, dict[str, int]] = {}  # storage class -> node -> CSIStorageCapacity bytes
        self.queue = scheduling_queue.SchedulingQueue(self.env)
        self._nodes: dict[str, resources.Node] = {}  # the informer's last copy, to tell what an update changed
        self._capacities: dict[Key, workloads.CSIStorageCapacity] = {}
        # the claims of pods whose retries may be settled, as last read; dropped on any claim or volume change
        self._views: dict[Key, tuple[list[ks_api.ClaimView], str]] = {}
        self.placed: dict[Key, str] = {}  # pods the model counts on a node: assumed (binding) or bound
        self.binding: set[Key] = set()
        self._claim_waiters: dict[Key, list[simpy.Event]] = {}
        self.cluster.watch(resources.NODE, self._on_node)
        self.cluster.watch(workloads.POD, self._on_pod)
        self.cluster.watch(workloads.PVC, self._on_claim)
        self.cluster.watch(workloads.PV, self._on_volume)
        self.cluster.watch(workloads.CSI_STORAGE_CAPACITY, self._on_capacity)
        self.env.process(self._loop())
        self.queue.start()

    # --- informers ---
    def _on_node(self, event: resources.Event[resources.Node]) -> None:
        node = event.object
        old = self._nodes.get(node.name)
        if event.type is resources.EventType.DELETED:
            self.model.remove_node(node.name)
            self._nodes.pop(node.name, None)
            self.queue.note(queueing.Event.NODE_DELETE)
            return
        self.model.set_node(node)
        self._nodes[node.name] = node
        if old is None:
            self.queue.note(queueing.Event.NODE_ADD)
        else:
            for change in queueing.node_changes(old, node):
                self.queue.note(change)

    def _on_pod(self, event: resources.Event[workloads.Pod]) -> None:
        pod = event.object
        key = (pod.meta.namespace, pod.meta.name)
        if event.type is resources.EventType.DELETED:
            assigned = key in self.placed
            self._forget(key)
            if assigned:  # it freed resources
                self.queue.note(queueing.Event.ASSIGNED_POD_DELETE)
            return
        if pod.spec.node_name and key not in self.placed:  # bound elsewhere (a cluster taken from a snapshot)
            self.placed[key] = pod.spec.node_name
            self.model.add_pod(pod, pod.spec.node_name)
        elif event.type is resources.EventType.ADDED and not pod.spec.node_name and not pod.meta.deleting:
            self.queue.add(key)

    def _on_claim(self, event: resources.Event[workloads.PersistentVolumeClaim]) -> None:
        key = (event.object.meta.namespace, event.object.meta.name)
        for waiter in self._claim_waiters.pop(key, ()):
            if not waiter.triggered:
                waiter.succeed()
        self._views.clear()
        if event.type is resources.EventType.DELETED:
            self.queue.note(queueing.Event.PVC_DELETE)
        else:
            self.queue.note(queueing.Event.PVC_ADD_UPDATE, key)

    def _on_volume(self, event: resources.Event[workloads.PersistentVolume]) -> None:
        deleted = event.type is resources.EventType.DELETED
        self._views.clear()
        self.queue.note(queueing.Event.PV_DELETE if deleted else queueing.Event.PV_ADD_UPDATE)

    def _on_capacity(self, event: resources.Event[workloads.CSIStorageCapacity]) -> None:
        c = event.object
        node = c.node_labels.get(constants.TOPOLOGY_NODE_KEY, "")
        name = (c.meta.namespace, c.meta.name)
        if event.type is resources.EventType.DELETED:
            self.model.set_capacity(node, c.storage_class_name, None, None)
            self._capacity.get(c.storage_class_name, {}).pop(node, None)
            self._capacities.pop(name, None)
            self.queue.note(queueing.Event.CAPACITY_OTHER)
        else:
            self.model.set_capacity(node, c.storage_class_name, c.capacity_bytes, c.maximum_volume_size)
            self._capacity.setdefault(c.storage_class_name, {})[node] = c.capacity_bytes or 0
            self.queue.note(queueing.capacity_change(self._capacities.get(name), c))
            self._capacities[name] = c

    def _forget(self, key: Key) -> None:
        self.queue.forget(key)
        self.last_failed.pop(key, None)
        self._views.pop(key, None)
        self.binding.discard(key)
        if self.placed.pop(key, None) is not None:
            self.model.remove_pod(key[0], key[1])

    # --- the scheduling cycle ---
    def _loop(self) -> engine.Process:
        while True:
            key = yield from self.queue.pop()
            pod = self.cluster.get(workloads.POD, key[1], namespace=key[0])
            if pod is None or pod.spec.node_name or pod.meta.deleting or key in self.placed:
                continue
            if self.cycle_latency > 0:
                yield self.env.timeout(self.cycle_latency)
            last = self.last_failed.get(key)
            if last is not None and self.settle_hopeless and self._cannot_fit(pod, last):
                self.settled += 1
                self._failed(key, pod, dataclasses.replace(last.attempt, time=float(self.env.now)), last)
                continue
            self._schedule(key, pod)

    def _schedule(self, key: Key, pod: workloads.Pod) -> None:
        claims, missing = self._claims(pod)
        if missing:
            message = f'persistentvolumeclaim "{missing}" not found'
            attempt = Attempt(key, float(self.env.now), None, message, {message: 1}, ())
            self._failed(key, pod, attempt, rejectors=frozenset({ks_api.VOLUME_BINDING}))  # its PreFilter
            return
        result = self.model.schedule(pod, claims)
        attempt = Attempt(
            key, float(self.env.now), result.node, result.message, dict(result.failures), tuple(result.tied)
        )
        if result.node is None:
            self._failed(key, pod, attempt, rejectors=result.rejectors)
            return
        self.on_attempt(attempt)
        self.model.add_pod(pod, result.node)  # assumed: counted from now on
        self.placed[key] = result.node
        self.binding.add(key)
        self.env.process(self._bind(key, pod, result.node, claims))

    def _cannot_fit(self, pod: workloads.Pod, last: _Failure) -> bool:
        """Whether a retry is bound to fail as the last attempt did, so the cycle need not run: the same nodes all
        turned the pod down for want of resources (cpu, memory, pod room) or storage, and still no node offers as
        much as the pod needs in one of those — a necessary condition of the real filters, so the cycle could not
        answer otherwise. kube-scheduler would run it, and fail the same way; the attempt is counted either way.
        Other failures (taints, affinity, volume binding) always run the cycle."""
        if not last.settleable or len(self.world.nodes) != last.nodes:
            return False
        if self.model.cannot_fit_resources(pod):
            return True
        if self.capacity_tracking and self._no_capacity_object_fits(pod):
            return True
        if self.most_free is None:
            return False
        return any((self.most_free(c, pod) or 0) < size for c, size in last.wanted.items())

    def _no_capacity_object_fits(self, pod: workloads.Pod) -> bool:
        """No CSIStorageCapacity of one of the pod's (unbound) claims' classes is as large as the claim: the
        VolumeBinding filter fails on every node."""
        key = (pod.meta.namespace, pod.meta.name)
        views = self._views.get(key)
        if views is None:
            views = self._views[key] = self._claims(pod)
        claims, missing = views
        if missing or not claims or any(c.bound_node is not None for c in claims):
            return False
        return any(max(self._capacity.get(c.storage_class, {}).values(), default=0) < c.request_bytes for c in claims)

    def _failed(
        self,
        key: Key,
        pod: workloads.Pod,
        attempt: Attempt,
        again: _Failure | None = None,
        rejectors: frozenset[str] = frozenset(),
    ) -> None:
        if again is None:
            reasons = attempt.failures
            settleable = (
                bool(reasons)
                and sum(reasons.values()) >= len(self.world.nodes)
                and all(r in RESOURCE_REASONS or is_storage_reason(r) for r in reasons)
            )
            wanted = scheduling_policy.requested_bytes(pod.meta.annotations) if settleable else {}
            claims = frozenset((key[0], name) for name in pod.claim_names())
            again = _Failure(attempt, len(self.world.nodes), settleable, wanted, rejectors, claims)
            self.last_failed[key] = again
        self.on_attempt(attempt)
        self.queue.park(key, again.rejectors, again.claims)
        status = workloads.PodStatus(
            phase="Pending", unschedulable_reason="Unschedulable", unschedulable_message=attempt.message
        )
        if pod.status != status:
            # changed or gone meanwhile: the next attempt writes it again
            with contextlib.suppress(errors.Conflict, errors.NotFound):
                self.cluster.update_status(resources.evolve(pod, status=status))

    def _claims(self, pod: workloads.Pod) -> tuple[list[ks_api.ClaimView], str]:
        views: list[ks_api.ClaimView] = []
        for name in pod.claim_names():
            pvc = self.cluster.get(workloads.PVC, name, namespace=pod.meta.namespace)
            if pvc is None:
                return [], name
            sc = self.cluster.get(workloads.STORAGE_CLASS, pvc.spec.storage_class_name or "")
            bound_node = None
            if pvc.spec.volume_name:
                pv = self.cluster.get(workloads.PV, pvc.spec.volume_name)
                bound_node = pv.spec.node_name if pv is not None else None
            views.append(
                ks_api.ClaimView(
                    name=name,
                    storage_class=pvc.spec.storage_class_name or "",
                    request_bytes=pvc.spec.request_bytes,
                    wait_for_first_consumer=sc is not None and sc.volume_binding_mode == "WaitForFirstConsumer",
                    bound_node=bound_node,
                    provisioner_has_capacity_tracking=self.capacity_tracking
                    and sc is not None
                    and sc.provisioner == constants.PLUGIN_NAME,
                )
            )
        return views, ""

    # --- the binding cycle ---
    def _bind(self, key: Key, pod: workloads.Pod, node: str, claims: list[ks_api.ClaimView]) -> engine.Process:
        ns = key[0]
        waiting = [c.name for c in claims if c.bound_node is None and c.wait_for_first_consumer]
        for name in waiting:
            self._select(ns, name, node)
        deadline = self.env.now + BIND_TIMEOUT
        outcome = ""
        while waiting:
            pending = []
            for name in waiting:
                pvc = self.cluster.get(workloads.PVC, name, namespace=ns)
                if pvc is None or (not pvc.spec.volume_name and pvc.selected_node != node):
                    outcome = PROVISIONING_FAILED
                    break
                if not pvc.spec.volume_name:
                    pending.append(name)
            if outcome or not pending:
                break
            if self.env.now >= deadline:
                outcome = "binding volumes: timed out waiting for the condition"
                break
            events = [self._claim_event((ns, name)) for name in pending]
            yield simpy.AnyOf(self.env, [*events, self.env.timeout(deadline - self.env.now)])
        if key not in self.binding:
            return  # the pod was deleted meanwhile
        if not outcome:
            try:
                self.cluster.bind_pod(namespace=ns, name=key[1], node=node)
            except (errors.Conflict, errors.NotFound) as exc:
                outcome = f"binding rejected: {exc}"
        if outcome:
            self._forget(key)
            # forgetting an assumed pod frees what it held, as a deleted assigned pod does (handleBindingCycleError)
            self.queue.note(queueing.Event.ASSIGNED_POD_DELETE)
            current = self.cluster.get(workloads.POD, key[1], namespace=ns)
            if current is not None:
                attempt = Attempt(key, float(self.env.now), None, outcome, {outcome: 1}, ())
                self._failed(key, current, attempt)
            return
        self.binding.discard(key)  # bound: the model keeps counting its requests until the pod goes
        self.on_bound(key, node)

    def _claim_event(self, key: Key) -> simpy.Event:
        waiter = self.env.event()
        self._claim_waiters.setdefault(key, []).append(waiter)
        return waiter

    def _select(self, namespace: str, name: str, node: str) -> None:
        for _ in range(5):
            pvc = self.cluster.get(workloads.PVC, name, namespace=namespace)
            if pvc is None or pvc.spec.volume_name:
                return
            try:
                meta = pvc.meta.annotated({workloads.SELECTED_NODE_ANNOTATION: node})
                self.cluster.update(resources.evolve(pvc, meta=meta))
                return
            except errors.Conflict:
                continue
