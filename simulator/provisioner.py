"""Models of the Kubernetes programs around TopoLVM's controller: external-provisioner, the PV controller's
binding, external-resizer and the snapshotter.

They call the real ``ControllerService`` as the CSI sidecars call topolvm-controller, and wait for answers on
LogicalVolume events as the CSI server's waiter does. What the real programs do, modelled:
- a WaitForFirstConsumer claim is provisioned once kube-scheduler annotates it with the selected node; the
  CreateVolume request names that node (external-provisioner's topology requirement, reduced to the node it
  puts first — which is the node TopoLVM places a WaitForFirstConsumer volume on); an Immediate claim at once,
  with external-provisioner's requirement for it (every node, rotated by a hash of the claim's name:
  ``simulator.topology``), so TopoLVM's controller puts it where upstream's would;
- a final error (no room) removes the selected-node annotation so kube-scheduler tries again ("reschedule");
  a transient one, or any of an Immediate claim (there is no choice to withdraw), is retried with backoff (1 s
  doubling, at most 5 min, as external-provisioner's rate limiter, which never gives up);
- a Ready volume becomes a PersistentVolume with node affinity, bound to its claim;
- a deleted claim's volume is deleted (reclaim policy Delete), then its PV;
- a Bound claim whose request grew is expanded (ControllerExpandVolume), with external-resizer's backoff.
Its CSIStorageCapacity publisher is ``simulator.capacity_tracking``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable

import simpy

from simulator import engine, topology
from topolvm import constants, errors
from topolvm.core import resources, workloads
from topolvm.kube import memory as kube_memory
from topolvm.services import controller

log = logging.getLogger(__name__)
PVC, PV = workloads.PVC, workloads.PV
_TRANSIENT = (errors.Unavailable, errors.Conflict)  # the CO retries these; anything else is final


class LvEvents:
    """simpy events that fire at the next change of a LogicalVolume (the CSI server's ``Waiter``)."""

    def __init__(self, env: simpy.Environment, cluster: kube_memory.InMemoryCluster) -> None:
        self.env = env
        self._waiting: dict[str, list[simpy.Event]] = {}
        cluster.watch(resources.LOGICAL_VOLUME, self._on_event)

    def _on_event(self, event: resources.Event[resources.LogicalVolume]) -> None:
        for waiter in self._waiting.pop(event.object.name, ()):
            if not waiter.triggered:
                waiter.succeed()

    def next_change(self, name: str) -> simpy.Event:
        waiter = self.env.event()
        self._waiting.setdefault(name, []).append(waiter)
        return waiter


def resizer_backoff(failures: int) -> float:
    """external-resizer's delay before its next attempt after ``failures`` failures in a row (1 s doubling,
    at most 5 min: --retry-interval-start, --retry-interval-max)."""
    return min(300.0, 2.0 ** min(failures - 1, 16))


@dataclasses.dataclass(frozen=True)
class _Stuck:
    node: str
    node_capacity: dict[str, str]  # the node's capacity annotations when the expansion failed
    size: int
    failures: int  # attempts in a row that failed, or would have (see ``Provisioner._on_node``)
    failed_at: float

    def next_attempt(self, now: float) -> tuple[float, int]:
        """When external-resizer tries next, at ``now`` or later, and how many attempts will have failed by then."""
        at, failures = self.failed_at + resizer_backoff(self.failures), self.failures
        while at < now:
            failures += 1
            at += resizer_backoff(failures)
        return at, failures


@dataclasses.dataclass
class ProvisionStats:
    provisioned: int = 0
    rescheduled: int = 0
    retried: int = 0
    deleted: int = 0
    expanded: int = 0
    expansion_failures: int = 0
    snapshots: int = 0


class Provisioner:
    def __init__(
        self,
        env: simpy.Environment,
        cluster: kube_memory.InMemoryCluster,
        service: controller.ControllerService,
        *,
        latency: float,
        timeout: float = 60.0,
    ) -> None:
        self.env = env
        self.cluster = cluster
        self.service = service
        self.latency = latency
        self.timeout = timeout
        self.lv_events = LvEvents(env, cluster)
        self.stats = ProvisionStats()
        self._busy: set[tuple[str, str]] = set()  # claims being provisioned, resized or deleted
        self.on_failure: list[Callable[[workloads.PersistentVolumeClaim, errors.TopoLVMError], None]] = []
        self._stuck: dict[tuple[str, str], _Stuck] = {}  # expansions that failed for want of room
        self._retrying: set[tuple[str, str]] = set()  # of those, the ones with an attempt due
        cluster.watch(PVC, self._on_claim)
        cluster.watch(resources.NODE, self._on_node)

    # --- claims ---
    def _storage_class(self, pvc: workloads.PersistentVolumeClaim) -> workloads.StorageClass | None:
        if pvc.spec.storage_class_name is None:
            return None
        sc = self.cluster.get(workloads.STORAGE_CLASS, pvc.spec.storage_class_name)
        return sc if sc is not None and sc.provisioner == constants.PLUGIN_NAME else None

    def _on_claim(self, event: resources.Event[workloads.PersistentVolumeClaim]) -> None:
        pvc = event.object
        key = (pvc.meta.namespace, pvc.meta.name)
        if event.type is resources.EventType.DELETED:
            if pvc.spec.volume_name and key not in self._busy:
                self._start(key, self._delete(pvc))
            return
        if key in self._busy or pvc.meta.deleting:
            return
        sc = self._storage_class(pvc)
        if sc is None:
            return
        if not pvc.spec.volume_name:
            immediate = sc.volume_binding_mode == "Immediate"
            if immediate or pvc.selected_node:
                self._start(key, self._provision(pvc, sc))
        elif pvc.status.phase == "Bound" and pvc.spec.request_bytes > (pvc.status.capacity_bytes or 0):
            held = self._stuck.get(key)
            if (
                held is not None
                and held.node_capacity == self._node_capacity(held.node)
                and held.size == pvc.spec.request_bytes
            ):
                return  # failed before, and nothing on its node changed since: it would fail again
            self._start(key, self._expand(pvc, sc))

    def _node_capacity(self, name: str) -> dict[str, str]:
        node = self.cluster.get(resources.NODE, name)
        if node is None:
            return {}
        prefix = constants.CAPACITY_KEY_PREFIX
        return {k: v for k, v in node.meta.annotations.items() if k.startswith(prefix)}

    def _on_node(self, event: resources.Event[resources.Node]) -> None:
        """A node's capacity changed: expansions that failed there for want of room may fit now. external-resizer
        tries again at its next backoff step, not at the change: its attempts while nothing changed would have
        failed the same way, so they are only counted towards the backoff (not run, not in the stats)."""
        name = event.object.name
        for key, held in list(self._stuck.items()):
            if held.node != name or key in self._busy or key in self._retrying:
                continue
            at, failures = held.next_attempt(float(self.env.now))
            self._retrying.add(key)
            engine.later(self.env, at - self.env.now, functools.partial(self._retry_expansion, key, failures))

    def _retry_expansion(self, key: tuple[str, str], failures: int) -> None:
        """external-resizer's attempt, ``failures`` failed ones after the last that ran."""
        self._retrying.discard(key)
        held = self._stuck.get(key)
        current = self.cluster.get(PVC, key[1], namespace=key[0])
        if current is None:
            self._stuck.pop(key, None)
            return
        if held is None or key in self._busy:
            return
        if held.node_capacity == self._node_capacity(held.node) and held.size == current.spec.request_bytes:
            # changed and changed back: this attempt fails as the last one did
            self._stuck[key] = dataclasses.replace(held, failures=failures + 1, failed_at=float(self.env.now))
            return
        self._stuck[key] = dataclasses.replace(held, failures=failures)
        self._on_claim(resources.Event(resources.EventType.MODIFIED, current))

    def _start(self, key: tuple[str, str], process: engine.Process) -> None:
        self._busy.add(key)

        def run() -> engine.Process:
            try:
                yield from process
            finally:
                self._busy.discard(key)
                current = self.cluster.get(PVC, key[1], namespace=key[0])
                if current is not None:  # look again: the claim may have changed meanwhile
                    self._on_claim(resources.Event(resources.EventType.MODIFIED, current))

        self.env.process(run())

    def volume_name(self, pvc: workloads.PersistentVolumeClaim) -> str:
        return f"pvc-{pvc.meta.uid}"  # external-provisioner's naming: prefix "pvc", the claim's UID

    def _wait_ready(self, check: Callable[[], controller.Ready | controller.Pending], cr_name: str) -> engine.Process:
        deadline = self.env.now + self.timeout
        while True:
            state = check()
            if isinstance(state, controller.Ready):
                return state
            if self.env.now >= deadline:
                raise errors.Unavailable(f"not ready after {self.timeout:.0f}s")
            yield self.lv_events.next_change(cr_name) | self.env.timeout(deadline - self.env.now)

    def _provision(self, pvc: workloads.PersistentVolumeClaim, sc: workloads.StorageClass) -> engine.Process:
        backoff = 1.0
        while True:
            yield self.env.timeout(self.latency)
            current = self.cluster.get(PVC, pvc.meta.name, namespace=pvc.meta.namespace)
            if current is None or current.meta.deleting or current.spec.volume_name:
                return
            immediate = sc.volume_binding_mode == "Immediate"
            node = current.selected_node
            if not immediate and not node:
                return  # the scheduler withdrew its choice
            name = self.volume_name(current)
            preferred, requisite = self._topology(current)
            request = controller.VolumeRequest(
                name=name,
                required_bytes=current.spec.request_bytes,
                device_class=sc.device_class,
                fstype="block"
                if current.spec.volume_mode == "Block"
                else sc.parameters.get(constants.FSTYPE_PARAMETER, "ext4"),
                preferred_nodes=preferred,
                requisite_nodes=requisite,
            )
            try:
                if not requisite:
                    raise errors.Unavailable("no available topology found")  # no node has registered TopoLVM yet
                first = self.service.create_volume(request)
                ready = (
                    first
                    if isinstance(first, controller.Ready)
                    else (yield from self._wait_ready(functools.partial(self.service.creation_state, name), name))
                )
            except errors.TopoLVMError as exc:
                if not isinstance(exc, _TRANSIENT):
                    if node:
                        self._reschedule(current, exc)
                        return
                    for listener in self.on_failure:  # an Immediate claim: no choice to withdraw, tried again
                        listener(current, exc)
                self.stats.retried += 1
                yield self.env.timeout(backoff)
                backoff = min(backoff * 2, 300.0)
                continue
            self._bind(current, sc, ready)
            return

    def _topology(self, pvc: workloads.PersistentVolumeClaim) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """external-provisioner's (preferred, requisite) nodes: the selected node, or for an Immediate claim every
        node's ``topology.topolvm.io/node``, rotated by a hash of the claim's name (``simulator.topology``)."""
        if pvc.selected_node:
            return (pvc.selected_node,), (pvc.selected_node,)
        key = constants.TOPOLOGY_NODE_KEY
        nodes = self.cluster.list_of(resources.NODE)
        return topology.immediate_requirements(
            (n.meta.labels[key] for n in nodes if key in n.meta.labels), pvc.meta.name
        )

    def _reschedule(self, pvc: workloads.PersistentVolumeClaim, exc: errors.TopoLVMError) -> None:
        for listener in self.on_failure:
            listener(pvc, exc)
        if not pvc.selected_node:
            return
        self.stats.rescheduled += 1
        current = self.cluster.get(PVC, pvc.meta.name, namespace=pvc.meta.namespace)
        if current is not None and current.selected_node:
            meta = current.meta.annotated({workloads.SELECTED_NODE_ANNOTATION: None})
            self.cluster.update(resources.evolve(current, meta=meta))

    def _bind(self, pvc: workloads.PersistentVolumeClaim, sc: workloads.StorageClass, ready: controller.Ready) -> None:
        """Create the PV and bind both ways, as external-provisioner and the PV controller do."""
        ref = workloads.ClaimRef(pvc.meta.namespace, pvc.meta.name, pvc.meta.uid)
        spec = workloads.VolumeSpec(
            capacity_bytes=ready.size,
            volume_handle=ready.volume_id,
            fs_type=sc.parameters.get(constants.FSTYPE_PARAMETER, ""),
            volume_attributes={constants.DEVICE_CLASS_PARAMETER: sc.device_class} if sc.device_class else {},
            claim_ref=ref,
            node_name=ready.node_name,
            storage_class_name=sc.meta.name,
            volume_mode=pvc.spec.volume_mode,
        )
        pv = self.cluster.create(workloads.PersistentVolume(resources.Meta(name=ready.cr_name), spec))
        self.cluster.update_status(resources.evolve(pv, status=workloads.VolumeStatus("Bound")))
        current = self.cluster.get(PVC, pvc.meta.name, namespace=pvc.meta.namespace)
        if current is None:
            return  # deleted meanwhile: the PV's watch-driven cleanup handles it
        bound = self.cluster.update(
            resources.evolve(current, spec=resources.evolve(current.spec, volume_name=pv.meta.name))
        )
        self.cluster.update_status(resources.evolve(bound, status=workloads.ClaimStatus("Bound", ready.size)))
        self.stats.provisioned += 1

    def _delete(self, pvc: workloads.PersistentVolumeClaim) -> engine.Process:
        yield self.env.timeout(self.latency)
        pv = self.cluster.get(PV, pvc.spec.volume_name)
        if pv is None or pv.spec.reclaim_policy != "Delete":
            return
        self.service.delete_volume(pv.spec.volume_handle)
        while self.cluster.get(resources.LOGICAL_VOLUME, pv.meta.name) is not None:
            yield self.lv_events.next_change(pv.meta.name) | self.env.timeout(self.timeout)
        self.cluster.delete(PV, pv.meta.name)
        self.stats.deleted += 1

    def _expand(self, pvc: workloads.PersistentVolumeClaim, sc: workloads.StorageClass) -> engine.Process:
        yield self.env.timeout(self.latency)
        pv = self.cluster.get(PV, pvc.spec.volume_name)
        if pv is None or not sc.allow_volume_expansion:
            return
        want = pvc.spec.request_bytes
        fstype = "block" if pvc.spec.volume_mode == "Block" else "ext4"
        try:
            first = self.service.expand_volume(pv.spec.volume_handle, want, 0, fstype)
            stamp = first.request if isinstance(first, controller.Pending) else ""
            size = want
            ready = (
                first
                if isinstance(first, controller.Ready)
                else (
                    yield from self._wait_ready(
                        lambda: self.service.expansion_state(pv.meta.name, size, stamp), pv.meta.name
                    )
                )
            )
        except errors.TopoLVMError as exc:
            self.stats.expansion_failures += 1
            for listener in self.on_failure:
                listener(pvc, exc)
            # external-resizer retries with backoff; a retry while nothing on the node changed fails the same way,
            # so after this one the next waits for a change of the node's capacity (``_on_node``).
            key = (pvc.meta.namespace, pvc.meta.name)
            failures = self._stuck[key].failures + 1 if key in self._stuck else 1
            node_capacity = self._node_capacity(pv.spec.node_name)
            self._stuck[key] = _Stuck(pv.spec.node_name, node_capacity, want, failures, float(self.env.now))
            yield self.env.timeout(resizer_backoff(failures))
            return
        self._stuck.pop((pvc.meta.namespace, pvc.meta.name), None)
        current = self.cluster.get(PVC, pvc.meta.name, namespace=pvc.meta.namespace)
        if current is not None:
            self.cluster.update_status(
                dataclasses.replace(current, status=dataclasses.replace(current.status, capacity_bytes=ready.size))
            )
        self.stats.expanded += 1

    # --- snapshots (thin snapshots; full copies on thick classes) ---
    def snapshot(self, name: str, pvc: workloads.PersistentVolumeClaim) -> engine.Process:
        """Take a snapshot of a bound claim's volume (csi-snapshotter's CreateSnapshot)."""
        pv = self.cluster.get(PV, pvc.spec.volume_name) if pvc.spec.volume_name else None
        if pv is None:
            return None
        try:
            first = self.service.create_snapshot(name=name, source_volume_id=pv.spec.volume_handle)
            ready = (
                first
                if isinstance(first, controller.Ready)
                else (yield from self._wait_ready(functools.partial(self.service.creation_state, name), name))
            )
        except errors.TopoLVMError as exc:
            for listener in self.on_failure:
                listener(pvc, exc)
            return None
        self.stats.snapshots += 1
        return ready.volume_id

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.service.delete_volume(snapshot_id, snapshot=True)
