"""``topolvm-sim snapshot``: a scenario and a trace that start a simulation where a live cluster is now.

Called by ``simulator.cli``. Reads the cluster through the Cluster port (``topolvm.kube.client.KubeCluster``):
Nodes, LogicalVolumes, TopoLVM's StorageClasses, PersistentVolumeClaims, PersistentVolumes and pending Pods.
Builds
- node pools of nodes that look alike (``simulator.node_shapes`` infers their volume groups), every node keeping
  its name (the pool's ``node-names``);
- a trace: at t=0 a ``drain-node`` per cordoned node and a ``place-claim`` per LogicalVolume, on its node and
  under its claim's name (an LV no claim owns is placed as ``topolvm-unclaimed/<LV name>``; one whose node is gone
  is left out, with a warning); once those volumes are in place (``settle_seconds``), an ``expand-claim`` per
  claim asking for more than its volume holds (an expansion in flight) and a ``create-pod`` per pending pod with
  TopoLVM claims;
- ``scheduler.mode`` as the cluster runs it, when its API tells (``simulator.snapshot_mode``).
Not carried over: running pods' CPU and memory (the simulated nodes start without pods), pending pods' node
selectors, affinity and tolerations, claims of other provisioners, pending claims no pod uses.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from simulator import node_shapes, snapshot_mode, trace, units
from topolvm import constants, errors, ports
from topolvm.core import devclass, model, resources, workloads

UNCLAIMED_NAMESPACE = "topolvm-unclaimed"


@dataclasses.dataclass(frozen=True)
class Options:
    lvmd: Mapping[str | None, node_shapes.Lvmd]  # by pool label value; None: for every node
    pool_label: str | None = None
    selector: Mapping[str, str] = dataclasses.field(default_factory=dict)  # node labels
    namespaces: tuple[str, ...] = ()  # where pending pods are looked for (empty: everywhere)
    name: str = "snapshot"


@dataclasses.dataclass(frozen=True)
class Live:
    """What the cluster holds, as read."""

    nodes: list[resources.Node]
    volumes: list[resources.LogicalVolume]
    storage_classes: list[workloads.StorageClass]
    claims: list[workloads.PersistentVolumeClaim]
    persistent_volumes: list[workloads.PersistentVolume]
    pods: list[workloads.Pod]  # pending, with claims
    node_names: frozenset[str] = frozenset()  # every Node, whatever the selector
    scheduling: snapshot_mode.Evidence | None = None  # what tells the scheduler set-up


def read(cluster: ports.Cluster, options: Options) -> Live:
    """Everything a snapshot needs; raises the port's errors (Unavailable when the server cannot be reached)."""
    nodes = [
        n
        for n in cluster.list_of(resources.NODE)
        if all(n.meta.labels.get(k) == v for k, v in options.selector.items())
    ]
    try:
        volumes = cluster.list_of(resources.LOGICAL_VOLUME)
    except errors.NotFound:
        raise errors.ConfigError(
            "the API server does not serve logicalvolumes.topolvm.io: TopoLVM is not installed there"
        ) from None
    if options.namespaces:
        pods = [p for ns in options.namespaces for p in cluster.list_of(workloads.POD, namespace=ns)]
    else:
        pods = cluster.list_of(workloads.POD)
    every_node = cluster.list_of(resources.NODE) if options.selector else nodes
    classes = [sc for sc in cluster.list_of(workloads.STORAGE_CLASS) if sc.provisioner == constants.PLUGIN_NAME]
    claims = cluster.list_of(workloads.PVC)
    return Live(
        nodes=nodes,
        volumes=volumes,
        storage_classes=classes,
        claims=claims,
        persistent_volumes=cluster.list_of(workloads.PV),
        pods=[p for p in pods if not p.spec.node_name and p.status.phase == "Pending" and p.claim_names()],
        node_names=frozenset(n.name for n in every_node),
        scheduling=snapshot_mode.evidence(cluster, {n.name for n in nodes}, classes, claims, pods),
    )


@dataclasses.dataclass
class Snapshot:
    scenario: dict[str, Any]  # without ``trace``: ``write`` sets it
    ops: list[trace.Op]
    pools: list[node_shapes.Pool]
    placed_bytes: dict[str, int]  # per device class
    volumes: int
    pending_pods: int
    settle_seconds: float
    skipped_nodes: list[str]  # no capacity annotation: not TopoLVM nodes
    warnings: list[str]
    mode_reason: str = ""  # why scheduler.mode is what it is
    expansions: int = 0  # claims whose request is larger than their volume: expanded at settle_seconds


class _Builder:
    def __init__(self, live: Live, options: Options) -> None:
        self.live = live
        self.options = options
        self.warnings: list[str] = []
        self.lvmd: dict[str, node_shapes.Lvmd] = {}  # by node
        self.skipped: list[str] = []
        self.extra_classes: dict[str, workloads.StorageClass] = {}  # made for unclaimed volumes, by device class
        self.expansions: list[tuple[str, str, int]] = []  # (namespace, claim, requested bytes)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # --- nodes ---
    def node_lvmd(self, node: resources.Node) -> node_shapes.Lvmd | None:
        label = self.pool_of(node)
        given = self.options.lvmd.get(label) if label is not None else None
        given = given or self.options.lvmd.get(None)
        annotated = any(k.startswith(constants.CAPACITY_KEY_PREFIX) for k in node.meta.annotations)
        if not annotated:
            return None
        if given is not None:
            return given
        if self.options.lvmd:
            raise errors.ConfigError(
                f"node {node.name} ({self.options.pool_label}={label}): no lvmd.yaml for its pool; give "
                f"--lvmd-config {label}=PATH, or one --lvmd-config PATH for every node"
            )
        self.warn(
            "no --lvmd-config: every capacity annotation is taken as a thick device class with spare-gb 0 in a "
            "volume group of its own; give the nodes' lvmd.yaml for spare, thin pools and RAID"
        )
        return node_shapes.derive_lvmd(node.meta.annotations)

    def pool_of(self, node: resources.Node) -> str | None:
        if self.options.pool_label is None:
            return None
        return node.meta.labels.get(self.options.pool_label, "unlabelled")

    # --- volumes ---
    def resolve_class(self, node: str, name: str) -> model.DeviceClass | None:
        try:
            return devclass.find(self.lvmd[node].config.device_classes, name)
        except errors.NotFound:
            return None

    def storage_class_for(self, dc: model.DeviceClass, wanted: str | None) -> str:
        """The claim's own storage class when it is TopoLVM's and of the volume's device class, else one of that
        device class (made if there is none)."""

        def fits(sc: workloads.StorageClass) -> bool:
            return sc.device_class == dc.name or (not sc.device_class and dc.default)

        candidates = sorted(self.live.storage_classes, key=lambda s: (s.name != wanted, s.name))
        for sc in candidates:
            if fits(sc):
                return sc.name
        made = self.extra_classes.get(dc.name)
        if made is None:
            params = {constants.DEVICE_CLASS_PARAMETER: dc.name}
            made = workloads.StorageClass(resources.Meta(name=f"topolvm-{dc.name}"), constants.PLUGIN_NAME, params)
            self.extra_classes[dc.name] = made
        return made.name

    def placements(self) -> tuple[list[trace.PlaceClaim], dict[str, list[node_shapes.Volume]]]:
        claims = {(c.meta.namespace, c.meta.name): c for c in self.live.claims}
        by_uid = {c.meta.uid: c for c in self.live.claims if c.meta.uid}
        by_handle = {pv.spec.volume_handle: pv for pv in self.live.persistent_volumes if pv.spec.volume_handle}
        ops: list[trace.PlaceClaim] = []
        owned: set[tuple[str, str]] = set()
        volumes: dict[str, list[node_shapes.Volume]] = {n: [] for n in self.lvmd}
        orphaned: list[str] = []
        for lv in sorted(self.live.volumes, key=lambda v: (v.spec.node_name, v.name)):
            node = lv.spec.node_name
            size = lv.status.current_size
            if size is None and lv.status.volume_id:
                size = lv.spec.size
            if node not in self.live.node_names:
                orphaned.append(f"{lv.name} (node {node})")
                continue
            if node not in self.lvmd or size is None:
                continue  # on a node left out, or not created yet (its claim is still pending)
            dc = self.resolve_class(node, lv.spec.device_class)
            if dc is None:
                self.warn(f"LogicalVolume {lv.name}: node {node} has no class {lv.spec.device_class!r}; left out")
                continue
            volumes[node].append(node_shapes.Volume(dc.name, size, lv.spec.lvcreate_option_class))
            pv = next((by_handle[i] for i in lv.volume_ids if i in by_handle), None)
            ref = pv.spec.claim_ref if pv is not None else None
            pvc = claims.get((ref.namespace, ref.name)) if ref is not None else None
            if pvc is None:
                pvc = by_uid.get(lv.spec.name.removeprefix("pvc-"))  # provisioned, its PV not made yet
            if pvc is not None and (pvc.meta.namespace, pvc.meta.name) in owned:
                pvc = None  # a second LV for one claim (left behind by a retried creation): it takes room too
            if pvc is not None:
                owned.add((pvc.meta.namespace, pvc.meta.name))
            namespace, name = (pvc.meta.namespace, pvc.meta.name) if pvc is not None else (UNCLAIMED_NAMESPACE, lv.name)
            sc = self.storage_class_for(dc, pvc.spec.storage_class_name if pvc is not None else None)
            ops.append(trace.PlaceClaim(t=0.0, namespace=namespace, name=name, storage_class=sc, size=size, node=node))
            if pvc is not None and pvc.spec.request_bytes > size:  # an expansion in flight (or failed)
                self.expand(pvc, namespace, name, size)
        if orphaned:
            self.warn(
                f"{len(orphaned)} LogicalVolume(s) on nodes that no longer exist are left out (TopoLVM's node "
                f"cleanup has not removed them: is topolvm-controller running?): {', '.join(orphaned[:5])}"
            )
        return ops, volumes

    def expand(self, pvc: workloads.PersistentVolumeClaim, namespace: str, name: str, size: int) -> None:
        expandable = {sc.name for sc in self.live.storage_classes if sc.allow_volume_expansion}
        if pvc.spec.storage_class_name in expandable:
            self.expansions.append((namespace, name, pvc.spec.request_bytes))
        else:
            self.warn(
                f"claim {namespace}/{name} asks for {pvc.spec.request_bytes} bytes but its volume holds {size}, and "
                "its storage class does not allow expansion: placed as it is"
            )

    # --- pending pods ---
    def pending(self, placed: set[tuple[str, str]], at: float, offered: Sequence[str]) -> list[trace.CreatePod]:
        claims = {(c.meta.namespace, c.meta.name): c for c in self.live.claims}
        usable = set(offered)
        ops = []
        used: set[tuple[str, str]] = set()
        pods = sorted(self.live.pods, key=lambda p: (p.meta.creation_timestamp or "", p.namespace, p.name))
        for pod in pods:
            wanted = []
            for volume in pod.spec.volumes:
                name = volume.claim_name or (f"{pod.name}-{volume.name}" if volume.ephemeral is not None else None)
                if name is None:
                    continue
                pvc = claims.get((pod.namespace, name))
                if pvc is not None:
                    sc, size = pvc.spec.storage_class_name, pvc.spec.request_bytes
                elif volume.ephemeral is not None:
                    sc, size = volume.ephemeral.storage_class_name, volume.ephemeral.request_bytes
                else:
                    continue
                if sc in usable:
                    wanted.append(trace.Claim(name=name, storage_class=sc, size=size))
                    used.add((pod.namespace, name))
            if wanted:
                cpu, memory = _requests(pod)
                ops.append(
                    trace.CreatePod(t=at, namespace=pod.namespace, name=pod.name, claims=wanted, cpu=cpu, memory=memory)
                )
        left = [
            f"{c.meta.namespace}/{c.meta.name}"
            for c in self.live.claims
            if c.status.phase == "Pending" and c.spec.storage_class_name in usable
            and (c.meta.namespace, c.meta.name) not in used | placed
            and (not self.options.namespaces or c.meta.namespace in self.options.namespaces)
        ]  # fmt: skip
        if left:
            self.warn(f"{len(left)} pending claim(s) no pending pod uses are left out: {', '.join(sorted(left)[:5])}")
        return ops

    # --- storage classes ---
    def storage_classes(self) -> tuple[list[dict[str, Any]], list[str]]:
        classes = {dc.name for lvmd in self.lvmd.values() for dc in lvmd.config.device_classes}
        has_default = any(dc.default for lvmd in self.lvmd.values() for dc in lvmd.config.device_classes)
        specs, offered = [], []
        for sc in sorted([*self.live.storage_classes, *self.extra_classes.values()], key=lambda s: s.name):
            if (sc.device_class and sc.device_class not in classes) or (not sc.device_class and not has_default):
                self.warn(f"storage class {sc.name}: no node offers device class {sc.device_class or '(default)'!r}")
                continue
            spec: dict[str, Any] = {"name": sc.name}
            if sc.device_class:
                spec["device-class"] = sc.device_class
            spec.update({
                "binding-mode": sc.volume_binding_mode,
                "allow-expansion": sc.allow_volume_expansion,
                "fstype": sc.parameters.get(constants.FSTYPE_PARAMETER, "ext4"),
            })  # fmt: skip
            specs.append(spec)
            offered.append(sc.name)
        return specs, offered


def _requests(pod: workloads.Pod) -> tuple[str, str]:
    cpu = sum(c.requests.get(workloads.CPU, 0) for c in pod.spec.containers)
    memory = sum(c.requests.get(workloads.MEMORY, 0) for c in pod.spec.containers)
    return node_shapes.cpu_text(cpu), node_shapes.size_text(memory)


def build(live: Live, options: Options) -> Snapshot:
    b = _Builder(live, options)
    nodes = {}
    for node in sorted(live.nodes, key=lambda n: n.name):
        lvmd = b.node_lvmd(node)
        if lvmd is None:
            b.skipped.append(node.name)
            continue
        b.lvmd[node.name] = lvmd
        nodes[node.name] = node
    for label in sorted(k for k in options.lvmd if k is not None):
        if not any(b.pool_of(n) == label for n in nodes.values()):
            b.warn(f"--lvmd-config {label}=...: no node has {options.pool_label}={label}")
    places, volumes = b.placements()
    shapes = {
        name: (b.pool_of(node), node_shapes.shape(node, b.lvmd[name], volumes[name], b.warn))
        for name, node in nodes.items()
    }
    pools = node_shapes.group(shapes)
    if not pools:
        raise errors.ConfigError(
            f"none of the {len(live.nodes)} node(s) read has a capacity annotation (capacity.topolvm.io/...): "
            "no TopoLVM nodes to simulate"
        )
    sc_specs, offered = b.storage_classes()  # every volume's storage class is of a class its node offers
    # Every volume of the busiest node is created by its one agent, one after another: give them time (about
    # 0.1 s of lvm commands each by default) before pending pods are scheduled against the nodes' free space.
    settle = 120.0 + max((len(v) for v in volumes.values()), default=0)
    placed = {(op.namespace, op.name) for op in places}
    creates = b.pending(placed, settle, offered)
    drains: list[trace.Op] = [trace.DrainNode(t=0.0, name=n.name) for n in nodes.values() if n.spec.unschedulable]
    placed_bytes: dict[str, int] = {}
    for node_volumes in volumes.values():
        for v in node_volumes:
            placed_bytes[v.device_class] = placed_bytes.get(v.device_class, 0) + v.size
    mode, why, doubt = snapshot_mode.detect(live.scheduling or snapshot_mode.Evidence(None, 0, 0, 0))
    if doubt:
        b.warn(doubt)
    scenario = {
        "name": options.name,
        "seed": 1,
        "duration": "30d",
        "sample-interval": "1h",
        "cluster": {"node-pools": [p.shape.spec(p.name, p.nodes) for p in pools], "storage-classes": sc_specs},
        "scheduler": {"mode": mode},
    }
    grow: list[trace.Op] = [
        trace.ExpandClaim(t=settle, namespace=ns, name=name, size=size) for ns, name, size in b.expansions
    ]
    ops: list[trace.Op] = [*drains, *places, *grow, *creates]
    return Snapshot(
        scenario, ops, pools, placed_bytes, len(places), len(creates), settle, b.skipped, b.warnings, why, len(grow)
    )


def write(snap: Snapshot, out: Path | None, trace_out: Path | None, source: str) -> tuple[str, Path]:
    """Write the trace, and the scenario when ``out`` is given; return the scenario's text and the trace's path.

    The trace goes to ``trace_out``, by default next to the scenario (``<stem>.trace.jsonl``), and the scenario's
    ``trace`` names it relative to the scenario's directory; a scenario without a file (printed) names it by its
    absolute path."""
    if out is None:
        trace_file = (trace_out or Path("snapshot.trace.jsonl")).resolve()
        key = str(trace_file)
    else:
        trace_file = trace_out or out.with_name(out.stem + ".trace.jsonl")
        key = os.path.relpath(trace_file.resolve(), out.resolve().parent)
    header = (
        f"# topolvm-sim snapshot of {source}: {sum(len(p.nodes) for p in snap.pools)} node(s) in "
        f"{len(snap.pools)} pool(s).\n# Its trace places {snap.volumes} existing volume(s) at t=0 and creates "
        f"{snap.pending_pods} pending pod(s) at t={snap.settle_seconds:.0f}s"
        + (f", after expanding {snap.expansions} claim(s) whose request exceeds its volume" if snap.expansions else "")
        + f".\n# scheduler.mode {snap.scenario['scheduler']['mode']}: {snap.mode_reason}.\n"
        "# Add workloads, node-events and disk-events to plan from here.\n"
    )
    text = header + yaml.safe_dump({**snap.scenario, "trace": key}, sort_keys=False, default_flow_style=False)
    path = trace_file
    try:
        trace_file.parent.mkdir(parents=True, exist_ok=True)
        trace.write(trace_file, snap.ops)
        if out is not None:
            path = out
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
    except OSError as exc:
        raise errors.ConfigError(f"{path}: cannot write: {exc.strerror}") from None
    return text, trace_file


def summary(snap: Snapshot, source: str) -> list[str]:
    """What was taken over, for the terminal."""
    nodes = sum(len(p.nodes) for p in snap.pools)
    skipped = f" ({len(snap.skipped_nodes)} without capacity annotations left out)" if snap.skipped_nodes else ""
    lines = [f"snapshot of {source}: {nodes} node(s) in {len(snap.pools)} pool(s){skipped}"]
    for pool in snap.pools:
        disks = ", ".join(f"{vg} {'+'.join(d)}" for vg, d in pool.shape.volume_groups)
        lines.append(f"  pool {pool.name}: {len(pool.nodes)} x {pool.shape.cpu} cpu, {pool.shape.memory}, {disks}")
    volumes = ", ".join(f"{dc} {units.text_of_bytes(b)}" for dc, b in sorted(snap.placed_bytes.items()))
    lines.append(f"  volumes placed at t=0: {snap.volumes}" + (f" ({volumes})" if volumes else ""))
    lines.append(f"  pending pods created at t={snap.settle_seconds:.0f}s: {snap.pending_pods}")
    if snap.expansions:
        lines.append(f"  expansions in flight, asked for again at t={snap.settle_seconds:.0f}s: {snap.expansions}")
    lines.append(f"  scheduler.mode {snap.scenario['scheduler']['mode']}: {snap.mode_reason}")
    lines.extend(f"  warning: {w}" for w in snap.warnings)
    return lines
