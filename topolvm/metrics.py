"""Upstream's Prometheus metrics for node capacity (docs/compat.md), fed by lvmd's capacity stream.

``CapacityMetrics`` is a ``Lvmd.watch`` listener: it sets ``topolvm_volumegroup_*`` and ``topolvm_thinpool_*``
for this node on every change, with no timer of its own.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from topolvm.core import model

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
