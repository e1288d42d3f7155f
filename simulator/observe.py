"""What a run measures: capacity per device class over time (totals, the spread across nodes, bytes stranded on
nodes too full for a typical request), pods pending and running, scheduling attempts and why they failed, and
each pod's wait from creation to binding (a pod that waits longer than the scenario's scheduling SLO has failed).

Capacity comes from lvmd's own reports (every node's ``NodeCapacity`` as it publishes it), the rest from the
scheduler model's attempts and bindings. For thin classes "size" is the overprovisioned virtual size
(ratio x pool), which is what a volume request is measured against.

A class's size splits three ways: *used* — its own volumes (virtual sizes for a thin class), *free* — what lvmd
reports, and *reserved* — the rest: thin pools carved out of a thick class's VG, its spare-gb, RAID and stripe
overheads, and volumes of other classes sharing the VG. Utilisation is used over used + free (the room volumes
can have): a thick class is full when its free bytes are gone, however much of its VG a thin pool holds.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import statistics
from collections import Counter
from typing import Any

import simpy

from simulator import engine, scheduling, units, world
from topolvm.core import model, workloads

Key = tuple[str, str]
PER_NODE_LIMIT = 200  # clusters up to this size also get a per-node time series


@dataclasses.dataclass(frozen=True)
class Decision:
    """A pod placed: where, among which equally scored nodes, and when it was bound."""

    pod: Key
    node: str
    tied: tuple[str, ...]
    chosen_at: float
    bound_at: float | None = None


@dataclasses.dataclass
class PodRecord:
    created: float
    classes: tuple[str, ...]  # device classes of its claims
    requests: tuple[int, ...]
    bound: float | None = None
    deleted: float | None = None
    attempts: int = 0
    storage_failures: int = 0
    last_message: str = ""


class Observer:
    def __init__(self, w: world.World, *, sample_interval: float, slo: float) -> None:
        self.world = w
        self.env: simpy.Environment = w.env
        self.slo = slo
        self.classes = w.device_classes()
        self.latest: dict[str, model.NodeCapacity] = {}
        self.pods: dict[Key, PodRecord] = {}
        self.reasons: Counter[str] = Counter()
        self.attempts = 0
        self.failed_attempts = 0
        self.first_storage_failure: float | None = None
        self.decisions: list[Decision] = []  # successful attempts in order; bound_at filled in when bound
        self._open: dict[Key, int] = {}  # pod -> index of its latest decision
        self.series: list[dict[str, Any]] = []
        self.per_node: list[tuple[float, str, str, int, int]] = []  # (t, node, class, size, free)
        self.requested: dict[str, list[int]] = {c: [] for c in self.classes}
        self.pending: dict[Key, PodRecord] = {}  # neither bound nor deleted
        self.settled_failed = 0  # bound or deleted, after waiting longer than the SLO
        self.running = 0  # bound and not deleted
        self._ratios = self._thin_ratios()
        self._volumes: dict[str, tuple[model.NodeCapacity, dict[str, int]]] = {}  # node -> (capacity, used)
        w.capacity_listeners.append(self._on_capacity)
        w.node_listeners.append(self._on_node)
        self.env.process(self._sample_loop(sample_interval))

    def _thin_ratios(self) -> dict[str, dict[str, float]]:
        """pool -> thin class -> overprovision ratio"""
        out: dict[str, dict[str, float]] = {}
        for pool, config in self.world.loaded.lvmd.items():
            out[pool] = {dc.name: dc.thin_pool.overprovision_ratio for dc in config.device_classes if dc.thin_pool}
        return out

    # --- feeds ---
    def _on_capacity(self, sim_node: world.SimNode, capacity: model.NodeCapacity) -> None:
        self.latest[sim_node.name] = capacity

    def _on_node(self, name: str, added: bool) -> None:
        if not added:
            self.latest.pop(name, None)
            self._volumes.pop(name, None)

    def pod_created(self, pod: workloads.Pod) -> None:
        classes, requests = [], []
        for claim in pod.claim_names():
            pvc = self.world.cluster.get(workloads.PVC, claim, namespace=pod.meta.namespace)
            sc = self.world.cluster.get(workloads.STORAGE_CLASS, pvc.spec.storage_class_name or "") if pvc else None
            if pvc is None or sc is None:
                continue
            device_class = sc.device_class or self._default_class()
            classes.append(device_class)
            requests.append(pvc.spec.request_bytes)
            bisect.insort(self.requested.setdefault(device_class, []), pvc.spec.request_bytes)
        record = PodRecord(float(self.env.now), tuple(classes), tuple(requests))
        key = (pod.meta.namespace, pod.meta.name)
        earlier = self.pods.pop(key, None)
        if earlier is not None:  # the same name again (a StatefulSet's pod recreated): keep the first's record
            self.pods[(key[0], f"{key[1]}#{len(self.pods)}")] = earlier
        self.pods[key] = self.pending[key] = record

    def pod_deleted(self, key: Key) -> None:
        record = self.pods.get(key)
        if record is not None and record.deleted is None:
            record.deleted = float(self.env.now)
            if record.bound is not None:
                self.running -= 1
            self._settle(key, record)

    def _settle(self, key: Key, record: PodRecord) -> None:
        if self.pending.pop(key, None) is not None and self._failed(record, float(self.env.now)):
            self.settled_failed += 1

    def attempt(self, attempt: scheduling.Attempt) -> None:
        self.attempts += 1
        record = self.pods.get(attempt.pod)
        if record is not None:
            record.attempts += 1
        if attempt.node is not None:
            self._open[attempt.pod] = len(self.decisions)
            self.decisions.append(Decision(attempt.pod, attempt.node, attempt.tied, attempt.time))
            return
        self.failed_attempts += 1
        storage = False
        for reason, count in attempt.failures.items():
            self.reasons[reason] += count
            storage = storage or scheduling.is_storage_reason(reason)
        if record is not None:
            record.last_message = attempt.message
            record.storage_failures += storage
        if storage and self.first_storage_failure is None:
            self.first_storage_failure = attempt.time

    def bound(self, key: Key, node: str) -> None:
        record = self.pods.get(key)
        if record is not None and record.bound is None:
            record.bound = float(self.env.now)
            self.running += 1
            self._settle(key, record)
        index = self._open.pop(key, None)
        if index is not None:
            self.decisions[index] = dataclasses.replace(self.decisions[index], bound_at=float(self.env.now))

    def _default_class(self) -> str:
        for config in self.world.loaded.lvmd.values():
            for dc in config.device_classes:
                if dc.default:
                    return dc.name
        return ""

    # --- sampling ---
    def _sample_loop(self, interval: float) -> engine.Process:
        while True:
            self.sample()
            yield self.env.timeout(interval)

    def class_totals(self) -> dict[str, ClassTotals]:
        """class -> its size, free and used bytes over the nodes, per-node utilisation and free bytes"""
        totals = {c: ClassTotals() for c in self.classes}
        for name, capacity in self.latest.items():
            sim_node = self.world.nodes.get(name)
            if sim_node is None:
                continue
            ratios = self._ratios.get(sim_node.pool.name, {})
            used_by_class = self._used(sim_node, capacity)
            for stats in capacity.device_classes:
                size = (
                    int(stats.size_bytes * ratios[stats.device_class])
                    if stats.device_class in ratios
                    else stats.size_bytes
                )
                used = used_by_class.get(stats.device_class, 0)
                t = totals.setdefault(stats.device_class, ClassTotals())
                t.size += size
                t.free += stats.free_bytes
                t.used += used
                t.utils.append(utilization(used, stats.free_bytes, size))
                t.frees.append(stats.free_bytes)
        return totals

    def _used(self, sim_node: world.SimNode, capacity: model.NodeCapacity) -> dict[str, int]:
        """Bytes of each class's volumes on the node, read from its lvmd once per capacity it publishes (every
        change of its volumes publishes a new one)."""
        cached = self._volumes.get(sim_node.name)
        if cached is not None and cached[0] is capacity:
            return cached[1]
        used = {
            stats.device_class: sum(lv.size for lv in sim_node.lvmd.list_lvs(device_class=stats.device_class))
            for stats in capacity.device_classes
        }
        self._volumes[sim_node.name] = (capacity, used)
        return used

    def typical_request(self, device_class: str) -> int | None:
        values = self.requested.get(device_class) or []
        return values[len(values) // 2] if values else None

    def sample(self) -> None:
        now = float(self.env.now)
        row: dict[str, Any] = {"t": now}
        for device_class, t in self.class_totals().items():
            size, free, utils = t.size, t.free, t.utils
            typical = self.typical_request(device_class)
            stranded = sum(f for f in t.frees if typical is not None and f < typical)
            utils.sort()
            row[f"{device_class}.size"] = size
            row[f"{device_class}.free"] = free
            row[f"{device_class}.used"] = t.used
            row[f"{device_class}.reserved"] = max(0, size - free - t.used)
            row[f"{device_class}.utilization"] = round(utilization(t.used, free, size), 6)
            row[f"{device_class}.node_p50"] = round(_quantile(utils, 0.5), 6)
            row[f"{device_class}.node_p90"] = round(_quantile(utils, 0.9), 6)
            row[f"{device_class}.node_max"] = round(utils[-1], 6) if utils else 0.0
            row[f"{device_class}.stranded"] = stranded
            row[f"{device_class}.fragmentation"] = round(stranded / free, 6) if free else 0.0
        pending = len(self.pending)
        running = self.running
        failed = self.settled_failed + sum(1 for r in self.pending.values() if now - r.created > self.slo)
        row.update(pods_pending=pending, pods_running=running, pods_failed=failed, nodes=len(self.latest))
        row.update(attempts=self.attempts, failed_attempts=self.failed_attempts)
        self.series.append(row)
        if len(self.world.nodes) <= PER_NODE_LIMIT:
            for name, capacity in self.latest.items():
                sim_node = self.world.nodes.get(name)
                ratios = self._ratios.get(sim_node.pool.name, {}) if sim_node is not None else {}
                for stats in capacity.device_classes:
                    size = (
                        int(stats.size_bytes * ratios[stats.device_class])
                        if stats.device_class in ratios
                        else stats.size_bytes
                    )
                    self.per_node.append((now, name, stats.device_class, size, stats.free_bytes))

    def _failed(self, record: PodRecord, now: float) -> bool:
        """Not bound within the SLO (measured up to ``now``, or to its deletion)."""
        end = record.bound if record.bound is not None else (record.deleted if record.deleted is not None else now)
        return end - record.created > self.slo

    # --- the answer ---
    def summary(self, end: float) -> dict[str, Any]:
        records = list(self.pods.values())
        waits = sorted(r.bound - r.created for r in records if r.bound is not None)
        failed = sum(1 for r in records if self._failed(r, end))
        judged = sum(1 for r in records if r.bound is not None or r.deleted is not None or end - r.created > self.slo)
        last = self.series[-1] if self.series else {}
        capacity: dict[str, Any] = {}
        for device_class in self.classes:
            used = [row.get(f"{device_class}.used", 0) for row in self.series]
            utils = [row.get(f"{device_class}.utilization", 0.0) for row in self.series]
            capacity[device_class] = {
                "size_bytes": last.get(f"{device_class}.size", 0),
                "used_bytes_end": last.get(f"{device_class}.used", 0),
                "used_bytes_peak": max(used, default=0),
                "reserved_bytes_end": last.get(f"{device_class}.reserved", 0),
                "utilization_end": last.get(f"{device_class}.utilization", 0.0),
                "utilization_peak": max(utils, default=0.0),
                "stranded_bytes_end": last.get(f"{device_class}.stranded", 0),
                "fragmentation_end": last.get(f"{device_class}.fragmentation", 0.0),
                "projected_full_s": self._projection(device_class),
            }
        return {
            "pods": {
                "created": len(records),
                "bound": sum(1 for r in records if r.bound is not None),
                "pending_at_end": sum(1 for r in records if r.bound is None and r.deleted is None),
                "failed": failed,
                "judged": judged,
                "failure_rate": round(failed / judged, 6) if judged else 0.0,
                "wait_p50_s": round(_quantile(waits, 0.5), 3),
                "wait_p99_s": round(_quantile(waits, 0.99), 3),
                "with_storage_failures": sum(1 for r in records if r.storage_failures),
            },
            "scheduling": {
                "attempts": self.attempts,
                "failed_attempts": self.failed_attempts,
                "reasons": dict(self.reasons.most_common()),
            },
            "capacity": capacity,
            "time_to_exhaustion_s": self.first_storage_failure,
        }

    def _projection(self, device_class: str) -> float | None:
        """When used bytes reach used + free (the room volumes can have) at the trend of the run's second half
        (least squares); None if flat."""
        rows = self.series[len(self.series) // 2 :]
        points = [(r["t"], r.get(f"{device_class}.used", 0)) for r in rows]
        if len(points) < 3:
            return None
        ts = [p[0] for p in points]
        ys = [float(p[1]) for p in points]
        t_mean, y_mean = statistics.fmean(ts), statistics.fmean(ys)
        var = sum((t - t_mean) ** 2 for t in ts)
        if var == 0:
            return None
        slope = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True)) / var
        size = rows[-1].get(f"{device_class}.used", 0) + rows[-1].get(f"{device_class}.free", 0)
        if slope <= 0 or not size:
            return None
        at = ts[-1] + (size - ys[-1]) / slope
        return round(at, 1) if math.isfinite(at) else None


@dataclasses.dataclass
class ClassTotals:
    size: int = 0
    free: int = 0
    used: int = 0  # by the class's volumes
    utils: list[float] = dataclasses.field(default_factory=list)  # per node
    frees: list[int] = dataclasses.field(default_factory=list)  # per node


def utilization(used: int, free: int, size: int) -> float:
    """Used over the room volumes can have (used + free); a class with no room at all is full."""
    room = used + free
    if room:
        return used / room
    return 1.0 if size else 0.0


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return float(values[min(len(values) - 1, int(q * len(values)))])


def describe_bytes(value: float) -> str:
    return units.text_of_bytes(value)
