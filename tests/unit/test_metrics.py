from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry

from topolvm import metrics
from topolvm.core import model
from topolvm.services import publish


def test_capacity_metrics_follow_the_watch() -> None:
    registry = CollectorRegistry()
    m = metrics.CapacityMetrics("n1", registry)
    thin = model.ThinPoolStats(size_bytes=100, data_percent=12.5, metadata_percent=3.0, overprovisioned_available=900)
    m(
        model.NodeCapacity(
            (model.DeviceClassStats("ssd", True, 1000, 400), model.DeviceClassStats("thin", False, 100, 900, thin))
        )
    )
    m(
        model.NodeCapacity(
            (model.DeviceClassStats("ssd", True, 1000, 300), model.DeviceClassStats("thin", False, 100, 900, thin))
        )
    )

    def value(name: str, dc: str) -> float | None:
        return registry.get_sample_value(name, {"node": "n1", "device_class": dc})

    assert value("topolvm_volumegroup_available_bytes", "ssd") == 300
    assert value("topolvm_volumegroup_size_bytes", "ssd") == 1000
    assert value("topolvm_thinpool_data_percent", "thin") == 12.5
    assert value("topolvm_thinpool_overprovisioned_available", "thin") == 900
    assert value("topolvm_thinpool_size_bytes", "ssd") is None


def test_volume_health_metrics_set_every_pair_and_clear_to_zero() -> None:
    registry = CollectorRegistry()
    m = metrics.VolumeHealthMetrics("n1", registry)

    def value(dc: str, status: str) -> float | None:
        return registry.get_sample_value(
            "topolvm_volumes_unhealthy", {"node": "n1", "device_class": dc, "status": status}
        )

    m.set(publish.HealthSweep(("ssd", "thin"), Counter({("ssd", "INACCESSIBLE"): 2, ("thin", "DEGRADED"): 1})))
    assert (value("ssd", "INACCESSIBLE"), value("thin", "DEGRADED"), value("ssd", "DATA_LOSS")) == (2, 1, 0)
    done = registry.get_sample_value("topolvm_volume_health_sweep_last_success_timestamp_seconds", {"node": "n1"})
    assert done is not None and done > 1.7e9
    m.set(publish.HealthSweep(("ssd", "thin"), Counter()))
    assert value("ssd", "INACCESSIBLE") == 0 and value("thin", "DEGRADED") == 0
