"""Upstream's Prometheus metrics for node capacity (docs/compat.md), fed by lvmd's capacity stream, and ours for
volume health.

``CapacityMetrics`` is a ``Lvmd.watch`` listener: it sets ``topolvm_volumegroup_*`` and ``topolvm_thinpool_*``
for this node on every change, with no timer of its own. ``VolumeHealthMetrics`` sets
``topolvm_volumes_unhealthy`` from each of topolvm-node's health sweeps.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from topolvm.core import health, model
from topolvm.services import publish

_LABELS = ("node", "device_class")


class CapacityMetrics:
    def __init__(self, node_name: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.node = node_name

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, _LABELS, registry=registry)

        self.available = gauge("topolvm_volumegroup_available_bytes", "Allocatable bytes of the device class")
        self.size = gauge("topolvm_volumegroup_size_bytes", "Size of the device class's volume group or thin pool")
        self.pool_size = gauge("topolvm_thinpool_size_bytes", "Size of the thin pool")
        self.data = gauge("topolvm_thinpool_data_percent", "Data usage of the thin pool, percent")
        self.meta = gauge("topolvm_thinpool_metadata_percent", "Metadata usage of the thin pool, percent")
        self.over = gauge(
            "topolvm_thinpool_overprovisioned_available",
            "Bytes still allocatable in the thin pool under overprovisioning",
        )

    def __call__(self, capacity: model.NodeCapacity) -> None:
        for stats in capacity.device_classes:
            labels = (self.node, stats.device_class)
            self.available.labels(*labels).set(stats.free_bytes)
            self.size.labels(*labels).set(stats.size_bytes)
            if stats.thin_pool is not None:
                self.pool_size.labels(*labels).set(stats.thin_pool.size_bytes)
                self.data.labels(*labels).set(stats.thin_pool.data_percent)
                self.meta.labels(*labels).set(stats.thin_pool.metadata_percent)
                self.over.labels(*labels).set(stats.thin_pool.overprovisioned_available)


class VolumeHealthMetrics:
    """``topolvm_volumes_unhealthy{node, device_class, status}``: this node's TopoLVM volumes whose worst
    condition is ``status`` (DEGRADED, INACCESSIBLE, DATA_LOSS), every pair present (0 when none)."""

    STATUSES = tuple(status.value for status in health.Status)

    def __init__(self, node_name: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.node = node_name
        self.unhealthy = Gauge(
            "topolvm_volumes_unhealthy",
            "TopoLVM volumes of the node with an adverse condition, by their worst status",
            (*_LABELS, "status"),
            registry=registry,
        )

        self.last_success = Gauge(
            "topolvm_volume_health_sweep_last_success_timestamp_seconds",
            "When topolvm-node's volume health sweep last completed (it also runs while lvmd is away: then not)",
            ("node",),
            registry=registry,
        )

    def set(self, sweep: publish.HealthSweep) -> None:
        for device_class in sweep.device_classes:
            for status in self.STATUSES:
                value = sweep.unhealthy.get((device_class, status), 0)
                self.unhealthy.labels(self.node, device_class, status).set(value)
        self.last_success.labels(self.node).set_to_current_time()
