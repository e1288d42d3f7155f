"""Scenario files: the cluster, the scheduler set-up, the workload and the events of one simulation, validated.

A scenario is YAML (docs/simulator.md documents every key). Types and unknown keys are checked by msgspec, whose
errors name the path (``at `$.cluster.node-pools[0].count```); values by the checks below and, for workloads and
events, in ``simulator.scenario_workload``, which name the key too. Sizes, durations and rates need units
(``simulator.units``). Each node pool's ``lvmd`` block is upstream's lvmd.yaml, read by lvmd's own parser, so a
pool can be described by pasting a real node's lvmd.yaml.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from simulator import checks, trace, units
from simulator.scenario_workload import DiskEvent, NodeEvent, NonNegative, Positive, Strict, WorkloadSpec
from topolvm import errors
from topolvm.core import model, resources, scheduling
from topolvm.lvmd import config as lvmd_config


class VolumeGroupSpec(Strict):
    name: str
    disks: list[str]  # PV sizes, with units
    extent_size: str = "4Mi"

    def __post_init__(self) -> None:
        checks.check(checks.vg_name, self.name, "name")
        if not self.disks:
            raise ValueError(f"volume group {self.name!r}: disks: at least one disk is needed")
        for disk in self.disks:
            checks.check(checks.positive_size, disk, "disks")
        extent = units.size(self.extent_size) if checks.ok(units.size, self.extent_size) else 0
        if extent < 4096 or extent & (extent - 1):
            raise ValueError(f"extent-size: {self.extent_size!r} must be a power of two of at least 4Ki (as lvm2's)")
        if any(units.size(d) < extent for d in self.disks):
            raise ValueError(f"disks: every disk must hold at least one extent ({self.extent_size})")


class ThinPoolSpec(Strict):
    volume_group: str
    name: str
    size: str

    def __post_init__(self) -> None:
        checks.check(checks.positive_size, self.size, "size")


class TaintSpec(Strict):
    key: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    value: str = ""

    def __post_init__(self) -> None:
        checks.check(checks.label_key, self.key, "key")
        if not checks.LABEL_VALUE.match(self.value):
            raise ValueError(f"value: {self.value!r} is not a valid taint value")


class NodePool(Strict):
    name: str
    count: NonNegative
    volume_groups: list[VolumeGroupSpec]
    lvmd: dict[str, Any]  # upstream lvmd.yaml (device-classes, lvcreate-option-classes)
    thin_pools: list[ThinPoolSpec] = msgspec.field(default_factory=list)
    cpu: str = "32"
    memory: str = "128Gi"
    max_pods: Positive = 110
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    taints: list[TaintSpec] = msgspec.field(default_factory=list)
    # Names of the pool's first nodes, in order (a snapshot of a live cluster keeps its nodes' names, so its
    # trace can place volumes on them); nodes beyond these are named <pool>-00000, <pool>-00001...
    node_names: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not checks.DNS_LABEL.match(self.name) or len(self.name) > 56:
            raise ValueError(
                f"name: {self.name!r}: a lower-case DNS label of at most 56 characters (nodes are named after it)"
            )
        checks.check(checks.cpu, self.cpu, "cpu")
        checks.check(checks.positive_size, self.memory, "memory")
        for key, value in self.labels.items():
            checks.check(checks.label_key, key, "labels")
            if not checks.LABEL_VALUE.match(value):
                raise ValueError(f"labels: {value!r} (of {key!r}) is not a valid label value")
        for name in self.node_names:
            if not checks.DNS_SUBDOMAIN.match(name):
                raise ValueError(f"node-names: {name!r} is not a valid node name")
        sizes = {vg.name: sum(units.size(d) for d in vg.disks) for vg in self.volume_groups}
        for pool in self.thin_pools:
            if pool.volume_group not in sizes:
                raise ValueError(f"thin-pools: volume group {pool.volume_group!r} is not in volume-groups")
            sizes[pool.volume_group] -= units.size(pool.size)
            if sizes[pool.volume_group] < 0:
                raise ValueError(
                    f"thin-pools: {pool.name!r} does not fit volume group {pool.volume_group!r} (its disks are smaller)"
                )


class StorageClassSpec(Strict):
    name: str
    device_class: str = ""
    binding_mode: Literal["WaitForFirstConsumer", "Immediate"] = "WaitForFirstConsumer"
    allow_expansion: bool = True
    fstype: Literal["ext4", "xfs", "btrfs"] = "ext4"  # what TopoLVM's CSI driver accepts


class ClusterSpec(Strict):
    node_pools: list[NodePool]
    storage_classes: list[StorageClassSpec]

    def __post_init__(self) -> None:
        if not self.node_pools:
            raise ValueError("node-pools: at least one pool is needed")
        if sum(p.count for p in self.node_pools) == 0:
            raise ValueError("node-pools: the cluster has 0 nodes; give some pool a count of at least 1")
        for kind, seen in (
            ("node pool", [p.name for p in self.node_pools]),
            ("storage class", [s.name for s in self.storage_classes]),
            ("node", [n for p in self.node_pools for n in p.node_names]),
        ):
            dupes = {n for n in seen if seen.count(n) > 1}
            if dupes:
                raise ValueError(f"{kind} names must be unique: {sorted(dupes)}")


class ExtenderSpec(Strict):
    mode: Literal["spread", "pack"] = "spread"
    default_divisor: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    divisors: dict[str, Annotated[float, msgspec.Meta(gt=0)]] = msgspec.field(default_factory=dict)
    reservation_ttl: str = "600s"  # deploy/manifests/scheduler.yaml
    weight: Positive = 200
    tie_break: Literal["extender", "scheduler"] = "extender"

    def __post_init__(self) -> None:
        checks.check(units.duration, self.reservation_ttl, "reservation-ttl")
        # topolvm-scheduler refuses the same pair (its extender-weight is this weight)
        problem = scheduling.weight_problem(self.weight, scheduling.TieBreak(self.tie_break))
        if problem:
            raise ValueError(f"weight: {problem}; or tie-break: scheduler")


class SchedulerSpec(Strict):
    # extender: topolvm-scheduler as a kube-scheduler extender; capacity-tracking: CSIStorageCapacity (the CSIDriver's
    # storageCapacity: true) without it; both: what deploy/ ships, so a pod must pass the two.
    mode: Literal["extender", "capacity-tracking", "both"] = "both"
    extender: ExtenderSpec = msgspec.field(default_factory=ExtenderSpec)
    percentage_of_nodes_to_score: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    storage_capacity_scoring: bool = True  # kube-scheduler v1.37: StorageCapacityScoring is beta, on
    capacity_poll_interval: str = "60s"  # external-provisioner --capacity-poll-interval
    scheduling_slo: str = "5m"  # a pod not running this long after creation counts as failed

    @property
    def extender_on(self) -> bool:
        return self.mode != "capacity-tracking"

    @property
    def capacity_tracking_on(self) -> bool:
        return self.mode != "extender"

    def __post_init__(self) -> None:
        checks.check(checks.positive_duration, self.capacity_poll_interval, "capacity-poll-interval")
        checks.check(checks.positive_duration, self.scheduling_slo, "scheduling-slo")


class LatencySpec(Strict):
    """Modelled delays; defaults from this project's benchmarks (bench/lvmd_bench.py: ~95 ms per lvm command)."""

    watch: str = "5ms"
    reconcile: str = "2ms"
    lvm_command: str = "95ms"
    scheduling_cycle: str = "2ms"
    provisioner: str = "20ms"

    def __post_init__(self) -> None:
        for key in ("watch", "reconcile", "lvm_command", "scheduling_cycle", "provisioner"):
            checks.check(units.duration, getattr(self, key), key.replace("_", "-"))


class Scenario(Strict):
    cluster: ClusterSpec
    name: str = "scenario"
    seed: int = 1
    duration: str = "7d"
    sample_interval: str = "1h"
    scheduler: SchedulerSpec = msgspec.field(default_factory=SchedulerSpec)
    latencies: LatencySpec = msgspec.field(default_factory=LatencySpec)
    workloads: list[WorkloadSpec] = msgspec.field(default_factory=list)
    node_events: list[NodeEvent] = msgspec.field(default_factory=list)
    disk_events: list[DiskEvent] = msgspec.field(default_factory=list)
    trace: str | None = None  # a JSONL trace replayed beside the workloads (the state a snapshot starts from)

    def __post_init__(self) -> None:
        checks.check(checks.positive_duration, self.duration, "duration")
        checks.check(units.duration, self.sample_interval, "sample-interval")
        if units.duration(self.sample_interval) <= 0:
            raise ValueError("sample-interval: must be positive")


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A validated scenario with its lvmd configurations parsed (one per pool)."""

    spec: Scenario
    lvmd: dict[str, model.LvmdConfig]  # by pool name


def parse(data: Any, source: str = "scenario") -> Loaded:
    """Validate already-read YAML data; ConfigError naming ``source`` and the key."""
    try:
        spec = msgspec.convert(data, Scenario)
    except msgspec.ValidationError as exc:
        raise errors.ConfigError(f"{source}: {exc}") from None
    lvmd: dict[str, model.LvmdConfig] = {}
    for i, pool in enumerate(spec.cluster.node_pools):
        where = f"{source}: cluster.node-pools[{i}].lvmd"
        config = lvmd_config.from_mapping(pool.lvmd, where)
        vgs = {vg.name for vg in pool.volume_groups}
        for dc in config.device_classes:
            if dc.volume_group not in vgs:
                raise errors.ConfigError(
                    f"{where}: device class {dc.name!r} uses volume group {dc.volume_group!r}, "
                    f"which is not in cluster.node-pools[{i}].volume-groups"
                )
        lvmd[pool.name] = config
    _cross_check(spec, lvmd, source)
    return Loaded(spec, lvmd)


def _cross_check(spec: Scenario, lvmd: dict[str, model.LvmdConfig], source: str) -> None:
    classes = {dc.name for config in lvmd.values() for dc in config.device_classes}
    has_default = any(dc.default for config in lvmd.values() for dc in config.device_classes)
    storage_classes = {sc.name for sc in spec.cluster.storage_classes}
    for i, sc in enumerate(spec.cluster.storage_classes):
        if sc.device_class and sc.device_class not in classes:
            raise errors.ConfigError(
                f"{source}: cluster.storage-classes[{i}].device-class: {sc.device_class!r} is not a device class of "
                f"any node pool ({', '.join(sorted(classes))})"
            )
        if not sc.device_class and not has_default:
            raise errors.ConfigError(
                f"{source}: cluster.storage-classes[{i}]: no device class and no pool has a default"
            )
    pools = {p.name: p for p in spec.cluster.node_pools}
    for i, w in enumerate(spec.workloads):
        for j, claim in enumerate(w.claims):
            if claim.storage_class not in storage_classes:
                raise errors.ConfigError(
                    f"{source}: workloads[{i}].claims[{j}].storage-class: {claim.storage_class!r} is not in "
                    f"cluster.storage-classes"
                )
    event_pools = [("node-events", i, e.pool) for i, e in enumerate(spec.node_events)]
    event_pools += [("disk-events", i, e.pool) for i, e in enumerate(spec.disk_events)]
    for key, i, pool in event_pools:
        if pool not in pools:
            raise errors.ConfigError(f"{source}: {key}[{i}].pool: no node pool named {pool!r}")
    for i, disk in enumerate(spec.disk_events):
        if disk.volume_group not in {vg.name for vg in pools[disk.pool].volume_groups}:
            raise errors.ConfigError(
                f"{source}: disk-events[{i}].volume-group: pool {disk.pool!r} has no {disk.volume_group!r}"
            )


def loads(text: str, source: str = "scenario") -> Loaded:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{source}: the top level must be a mapping")
    return parse(data, source)


def load(path: str | Path) -> Loaded:
    """A scenario file; its ``trace``, when relative, is taken relative to the file's directory."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise errors.ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    loaded = loads(text, str(p))
    if loaded.spec.trace is None:
        return loaded
    spec = msgspec.structs.replace(loaded.spec, trace=trace_path(loaded.spec.trace, p.parent))
    return Loaded(spec, loaded.lvmd)


def trace_path(trace: str, base: Path) -> str:
    """Where a scenario's ``trace`` is, as an absolute path: a relative one is relative to ``base`` (the scenario
    file's directory), not to wherever the run happens."""
    path = Path(trace).expanduser()
    return str(path if path.is_absolute() else base.resolve() / path)


def taints(pool: NodePool) -> tuple[resources.Taint, ...]:
    return tuple(resources.Taint(t.key, resources.TaintEffect(t.effect), t.value) for t in pool.taints)


def check_trace(loaded: Loaded, ops: list[trace.Op], source: str) -> None:
    """A trace's operations must name what the scenario has: pools, volume groups, storage classes. Checked before
    the run starts, so a typo is a clear error instead of a failure half-way through."""
    spec = loaded.spec
    pools = {p.name: {vg.name for vg in p.volume_groups} for p in spec.cluster.node_pools}
    all_vgs = set().union(*pools.values()) if pools else set()
    classes = {sc.name for sc in spec.cluster.storage_classes}
    for number, op in enumerate(ops, 1):
        where = f"{source}: operation {number} (t={op.t:g}, {type(op).__name__})"
        if isinstance(op, trace.AddNode) and op.pool not in pools:
            raise errors.ConfigError(f"{where}: no node pool named {op.pool!r}")
        if isinstance(op, trace.AddDisk) and op.volume_group not in all_vgs:
            raise errors.ConfigError(f"{where}: no node pool has a volume group {op.volume_group!r}")
        wanted = [c.storage_class for c in op.claims] if isinstance(op, trace.CreatePod) else []
        if isinstance(op, trace.PlaceClaim):
            wanted.append(op.storage_class)
        for name in wanted:
            if name not in classes:
                raise errors.ConfigError(f"{where}: no storage class named {name!r}")
