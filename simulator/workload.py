"""Workloads: seeded generators that produce trace operations over simulated time, and the executor that applies
them to the simulated cluster (creating claims and webhook-mutated pods, deleting, expanding, snapshotting,
adding, failing and draining nodes, adding disks).

Generators and trace replay meet in ``Executor.apply``: everything that happens to the cluster is a
``simulator.trace`` operation, recorded as it is applied, so a generated run can be written out and replayed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import random
from collections.abc import Callable
from typing import Any

import msgspec
import simpy

from simulator import engine, provisioner, scenario, scenario_workload, trace, units, world
from topolvm import constants, errors
from topolvm.core import quantity, resources, workloads

Admit = Callable[[workloads.Pod], workloads.Pod]
MiB = 1 << 20


class Executor:
    def __init__(
        self,
        w: world.World,
        prov: provisioner.Provisioner,
        admit: Admit,
        *,
        record: bool = False,
    ) -> None:
        self.world = w
        self.env = w.env
        self.cluster = w.cluster
        self.provisioner = prov
        self.admit = admit
        self.recorded: list[trace.Op] = []
        self.record = record
        self.snapshots: dict[str, str] = {}  # snapshot name -> snapshot (volume) ID
        self.pod_listeners: list[Callable[[workloads.Pod], None]] = []  # pods as created
        self.errors: list[str] = []
        # StatefulSet pods by key, so the StatefulSet controller can recreate one deleted by anyone but its owner
        self._members: dict[tuple[str, str], trace.CreatePod] = {}
        self._retiring: set[tuple[str, str]] = set()
        self.recreated = 0
        self._placed: dict[tuple[str, str], str] = {}  # claims of place-claim operations -> their node
        self._unpublished: dict[str, list[trace.PlaceClaim]] = {}  # by node: waiting for its first capacity
        self._deferred: dict[tuple[str, str], int] = {}  # expansions of claims not bound yet: the size asked for
        self.expansions_deferred = 0
        w.capacity_listeners.append(self._published)
        self.cluster.watch(workloads.POD, self._on_pod)
        self.cluster.watch(workloads.PVC, self._on_claim)
        prov.on_failure.append(self._placement_failed)

    def apply(self, op: trace.Op) -> None:
        if self.record:
            self.recorded.append(msgspec.structs.replace(op, t=round(float(self.env.now), 6)))
        try:
            self._apply(op)
        except errors.TopoLVMError as exc:
            self.errors.append(f"t={self.env.now:.1f}s {op.__class__.__name__}: {exc}")

    def _apply(self, op: trace.Op) -> None:
        handlers: dict[type[Any], Callable[[Any], object]] = {
            trace.CreatePod: self._create_pod,
            trace.DeletePod: self._delete_pod,
            trace.ExpandClaim: self._expand,
            trace.Snapshot: self._take_snapshot,
            trace.DeleteSnapshot: self._delete_snapshot,
            trace.AddNode: lambda o: self.world.add_node(o.pool, o.name or None),
            trace.FailNode: lambda o: self.world.fail_node(o.name) if o.name in self.world.nodes else None,
            trace.DrainNode: lambda o: self.world.drain_node(o.name),
            trace.AddDisk: lambda o: (
                self.world.add_disk(o.node, o.volume_group, trace.size_of(o.size))
                if o.node in self.world.nodes
                else None
            ),
            trace.PlaceClaim: self._place_claim,
        }
        handlers[type(op)](op)

    def _place_claim(self, op: trace.PlaceClaim) -> None:
        """A claim whose volume exists on ``op.node``: kube-scheduler's choice is already made, so the provisioner
        model provisions it there once it sees the claim. A node added at the same time has not published its
        capacity yet (TopoLVM's controller would refuse it), so the claim waits for that."""
        if op.node not in self.world.nodes:
            raise errors.NotFound(f"claim {op.namespace}/{op.name}: node {op.node!r} does not exist")
        if self.cluster.get(workloads.STORAGE_CLASS, op.storage_class) is None:
            raise errors.NotFound(f"claim {op.namespace}/{op.name}: storage class {op.storage_class!r} does not exist")
        node = self.cluster.get(resources.NODE, op.node)
        if node is not None and not any(k.startswith(constants.CAPACITY_KEY_PREFIX) for k in node.meta.annotations):
            self._unpublished.setdefault(op.node, []).append(op)
            return
        meta = resources.Meta(
            name=op.name, namespace=op.namespace, annotations={workloads.SELECTED_NODE_ANNOTATION: op.node}
        )
        spec = workloads.ClaimSpec(storage_class_name=op.storage_class, request_bytes=trace.size_of(op.size))
        self.cluster.create(workloads.PersistentVolumeClaim(meta, spec))
        self._placed[(op.namespace, op.name)] = op.node

    def _published(self, node: world.SimNode, _capacity: object) -> None:
        for op in self._unpublished.pop(node.name, ()):
            try:
                self._place_claim(op)
            except errors.TopoLVMError as exc:
                self.errors.append(f"t={self.env.now:.1f}s PlaceClaim: {exc}")

    def _placement_failed(self, pvc: workloads.PersistentVolumeClaim, exc: errors.TopoLVMError) -> None:
        node = self._placed.pop((pvc.meta.namespace, pvc.meta.name), None)
        if node is not None and not pvc.spec.volume_name:  # a bound claim failed later (expansion): not this
            where = f"{pvc.meta.namespace}/{pvc.meta.name}"
            self.errors.append(f"t={self.env.now:.1f}s PlaceClaim: claim {where} not placed on node {node}: {exc}")

    def _expand(self, op: trace.ExpandClaim) -> None:
        """Grow a claim's request. Only a Bound claim's request may change (the API server refuses it before, and
        external-resizer acts only on bound claims), so an expansion of a claim not bound yet waits until it is."""
        pvc = self.cluster.get(workloads.PVC, op.name, namespace=op.namespace)
        if pvc is None:
            return
        key, size = (op.namespace, op.name), trace.size_of(op.size)
        if pvc.status.phase == "Bound":
            self._grow(pvc, size)
        elif size > max(pvc.spec.request_bytes, self._deferred.get(key, 0)):
            self.expansions_deferred += key not in self._deferred
            self._deferred[key] = size

    def _grow(self, pvc: workloads.PersistentVolumeClaim, size: int) -> None:
        if size <= pvc.spec.request_bytes:
            return
        sc = self.cluster.get(workloads.STORAGE_CLASS, pvc.spec.storage_class_name or "")
        if sc is None or not sc.allow_volume_expansion:  # the API server's PersistentVolumeClaimResize admission
            raise errors.FailedPrecondition(
                f"claim {pvc.meta.namespace}/{pvc.meta.name}: only dynamically provisioned pvc can be resized and the "
                "storageclass that provisions the pvc must support resize"
            )
        self.cluster.update(dataclasses.replace(pvc, spec=dataclasses.replace(pvc.spec, request_bytes=size)))

    def _on_claim(self, event: resources.Event[workloads.PersistentVolumeClaim]) -> None:
        """Deferred expansions: applied once their claim is Bound, dropped with it."""
        key = (event.object.meta.namespace, event.object.meta.name)
        if key not in self._deferred:
            return
        if event.type is resources.EventType.DELETED:
            del self._deferred[key]
            return
        current = self.cluster.get(workloads.PVC, key[1], namespace=key[0])  # the event may be older
        if current is not None and current.status.phase == "Bound":
            try:
                self._grow(current, self._deferred.pop(key))
            except errors.TopoLVMError as exc:
                self.errors.append(f"t={self.env.now:.1f}s ExpandClaim (deferred until bound): {exc}")

    def _take_snapshot(self, op: trace.Snapshot) -> None:
        pvc = self.cluster.get(workloads.PVC, op.claim, namespace=op.namespace)
        if pvc is not None:
            self.env.process(self._snapshot(op.name, pvc))

    def _delete_snapshot(self, op: trace.DeleteSnapshot) -> None:
        snapshot_id = self.snapshots.pop(op.name, None)
        if snapshot_id is not None:
            self.provisioner.delete_snapshot(snapshot_id)

    def _create_pod(self, op: trace.CreatePod) -> None:
        volumes = []
        for claim in op.claims:
            meta = resources.Meta(name=claim.name, namespace=op.namespace)
            spec = workloads.ClaimSpec(storage_class_name=claim.storage_class, request_bytes=claim.bytes)
            with contextlib.suppress(errors.AlreadyExists):  # a StatefulSet's pod comes back to its claim
                self.cluster.create(workloads.PersistentVolumeClaim(meta, spec))
            volumes.append(workloads.PodVolume(claim.name, claim_name=claim.name))
        container = workloads.Container(
            "app", {workloads.CPU: quantity.to_milli(op.cpu), workloads.MEMORY: units.size(op.memory)}
        )
        labels = {"app": op.owner} if op.owner else {}
        pod = workloads.Pod(
            resources.Meta(name=op.name, namespace=op.namespace, labels=labels),
            workloads.PodSpec(containers=(container,), volumes=tuple(volumes)),
        )
        created = self.cluster.create(self.admit(pod))
        if op.owner:
            self._members[(op.namespace, op.name)] = op
        for listener in self.pod_listeners:
            listener(created)

    def _on_pod(self, event: resources.Event[workloads.Pod]) -> None:
        """The StatefulSet controller: a member pod deleted by someone else (the pod garbage collector after a
        node failure) is created again, with the same name and claims."""
        if event.type is not resources.EventType.DELETED:
            return
        key = (event.object.meta.namespace, event.object.meta.name)
        if key in self._retiring:
            self._retiring.discard(key)
            self._members.pop(key, None)
            return
        op = self._members.get(key)
        if op is not None:
            self.recreated += 1
            engine.later(self.env, 1.0, functools.partial(self._recreate, op))

    def _recreate(self, op: trace.CreatePod) -> None:
        if self.cluster.get(workloads.POD, op.name, namespace=op.namespace) is None:
            self._create_pod(msgspec.structs.replace(op, t=float(self.env.now)))

    def _delete_pod(self, op: trace.DeletePod) -> None:
        pod = self.cluster.get(workloads.POD, op.name, namespace=op.namespace)
        if pod is None:
            return
        self._retiring.add((op.namespace, op.name))
        self.cluster.delete(workloads.POD, op.name, namespace=op.namespace)
        if op.delete_claims:
            for claim in pod.claim_names():
                if self.cluster.get(workloads.PVC, claim, namespace=op.namespace) is not None:
                    self.cluster.delete(workloads.PVC, claim, namespace=op.namespace)

    def _snapshot(self, name: str, pvc: workloads.PersistentVolumeClaim) -> engine.Process:
        snapshot_id = yield from self.provisioner.snapshot(name, pvc)
        if snapshot_id is not None:
            self.snapshots[name] = snapshot_id


class Generators:
    """Seeded processes that turn the scenario's workloads and events into operations at their times."""

    def __init__(self, env: simpy.Environment, loaded: scenario.Loaded, executor: Executor, rng: random.Random) -> None:
        self.env = env
        self.spec = loaded.spec
        self.executor = executor
        self.rng = rng
        self.end = units.duration(self.spec.duration)
        self._serial: dict[str, int] = {}

    def start(self) -> None:
        for workload in self.spec.workloads:
            if workload.rate is not None:
                self.env.process(self._stream(workload))
            else:
                self.env.process(self._statefulset(workload))
        for event in self.spec.node_events:
            engine.later(self.env, units.duration(event.at), functools.partial(self._node_event, event))
        for disk in self.spec.disk_events:
            engine.later(self.env, units.duration(disk.at), functools.partial(self._disk_event, disk))

    # --- random draws ---
    def size(self, spec: scenario_workload.SizeSpec) -> int:
        rng = self.rng
        if spec.fixed is not None:
            value = float(units.size(spec.fixed))
        elif spec.choice is not None:
            value = float(units.size(rng.choices(spec.choice, weights=spec.weights)[0]))
        elif spec.lognormal_median is not None:
            value = units.size(spec.lognormal_median) * math.exp(rng.gauss(0.0, spec.sigma))
        else:
            assert spec.min is not None and spec.max is not None
            value = rng.uniform(units.size(spec.min), units.size(spec.max))
        if spec.min is not None:
            value = max(value, units.size(spec.min))
        if spec.max is not None:
            value = min(value, units.size(spec.max))
        return max(MiB, math.ceil(value / MiB) * MiB)  # whole MiB: what people ask for

    def duration(self, spec: scenario_workload.DurationDist) -> float | None:
        if spec.forever:
            return None
        if spec.fixed is not None:
            return units.duration(spec.fixed)
        assert spec.exponential_mean is not None
        return self.rng.expovariate(1.0 / units.duration(spec.exponential_mean))

    # --- workloads ---
    def _name(self, prefix: str) -> str:
        n = self._serial.get(prefix, 0)
        self._serial[prefix] = n + 1
        return f"{prefix}-{n}"

    def _stream(self, w: scenario_workload.WorkloadSpec) -> engine.Process:
        assert w.rate is not None
        rate = units.rate(w.rate)
        stop = min(self.end, units.duration(w.stop)) if w.stop is not None else self.end
        yield self.env.timeout(units.duration(w.start))
        while True:
            yield self.env.timeout(self.rng.expovariate(rate))
            if self.env.now >= stop:
                return
            self._launch(w, self._name(w.name), owner="")

    def _statefulset(self, w: scenario_workload.WorkloadSpec) -> engine.Process:
        yield self.env.timeout(units.duration(w.start))
        for i in range(w.replicas or 0):
            self._launch(w, f"{w.name}-{i}", owner=w.name)

    def _launch(self, w: scenario_workload.WorkloadSpec, pod: str, owner: str) -> None:
        ns = world.NAMESPACE
        claims = [
            trace.Claim(name=f"{pod}-c{j}", storage_class=c.storage_class, size=self.size(c.size))
            for j, c in enumerate(w.claims)
        ]
        now = float(self.env.now)
        self.executor.apply(
            trace.CreatePod(t=now, namespace=ns, name=pod, claims=claims, cpu=w.cpu, memory=w.memory, owner=owner)
        )
        life = self.duration(w.lifetime)
        if life is not None:
            engine.later(
                self.env, life, lambda: self.executor.apply(trace.DeletePod(t=now + life, namespace=ns, name=pod))
            )
        if w.expansion is not None and self.rng.random() < w.expansion.probability:
            after = self.duration(w.expansion.after)
            if after is not None and (life is None or after < life):
                for claim in claims:
                    grown = math.ceil(claim.bytes * w.expansion.factor / MiB) * MiB
                    op = trace.ExpandClaim(t=now + after, namespace=ns, name=claim.name, size=grown)
                    engine.later(self.env, after, functools.partial(self.executor.apply, op))
        if w.snapshots is not None:
            self.env.process(self._snapshots(w.snapshots, pod, claims, life))

    def _snapshots(
        self, spec: scenario_workload.SnapshotSpec, pod: str, claims: list[trace.Claim], life: float | None
    ) -> engine.Process:
        every = units.duration(spec.every)
        ends = self.env.now + life if life is not None else math.inf
        taken: list[str] = []
        n = 0
        while True:
            yield self.env.timeout(every)
            if self.env.now >= ends:
                break
            for claim in claims:
                name = f"snap-{claim.name}-{n}"
                self.executor.apply(
                    trace.Snapshot(t=self.env.now, namespace=world.NAMESPACE, claim=claim.name, name=name)
                )
                taken.append(name)
            n += 1
            while len(taken) > spec.keep * len(claims):
                self.executor.apply(trace.DeleteSnapshot(t=self.env.now, name=taken.pop(0)))
        for name in taken:  # a workload's snapshots go with it
            self.executor.apply(trace.DeleteSnapshot(t=self.env.now, name=name))

    # --- events ---
    def _node_event(self, event: scenario_workload.NodeEvent) -> None:
        now = float(self.env.now)
        if event.action == "add":
            for _ in range(event.count):
                self.executor.apply(trace.AddNode(t=now, pool=event.pool))
            return
        alive = sorted(self.executor.world.pool_nodes(event.pool))
        if event.count > len(alive):
            self.executor.errors.append(
                f"t={now:.1f}s: asked to {event.action} {event.count} nodes of pool {event.pool!r}; {len(alive)} exist"
            )
        chosen = sorted(self.rng.sample(alive, min(event.count, len(alive))))
        for name in chosen:
            op: trace.Op = (
                trace.FailNode(t=now, name=name) if event.action == "fail" else trace.DrainNode(t=now, name=name)
            )
            self.executor.apply(op)

    def _disk_event(self, disk: scenario_workload.DiskEvent) -> None:
        for name in sorted(self.executor.world.pool_nodes(disk.pool)):
            self.executor.apply(
                trace.AddDisk(t=float(self.env.now), node=name, volume_group=disk.volume_group, size=disk.size)
            )


def replay(env: simpy.Environment, ops: list[trace.Op], executor: Executor) -> None:
    """Apply a trace's operations at their times."""

    def run() -> engine.Process:
        for op in ops:
            if op.t > env.now:
                yield env.timeout(op.t - env.now)
            executor.apply(op)

    env.process(run())
