"""A disk that dies under a mounted volume, as the pod's owner sees it: kubelet 1.37 (feature gate
CSIVolumeHealth) asks topolvm-node's NodeGetVolumeHealth every volumeStatsAggPeriod (15 s on this node) and writes the
answer into the pod's status.volumeHealth. The disk is a dm device over an NVMe disk switched to dm-error:
still enumerated, every I/O fails; it was the VG's only disk, so lvm2 reports nothing of the VG and lvmd keeps it
as lost. lvmd re-reads LVM in the background of its first request after --max-state-age (15 s here). topolvm-node logs
each change and records it as an Event on the volume's LogicalVolume."""

from __future__ import annotations

from typing import Any

from harness import faults
from tests.hil.node.conftest import FLAKY_VG
from tests.hil.node.kube import Kube
from tests.hil.node.workloads import PODS, PVCS, bound_volume, busybox_pod, claim, lv_names, mounted, remove
from tests.support import hil_node, hil_node_config

# lvmd's state age, then the kubelet probe that starts lvmd's background re-read, the next that sees it
DETECTION_S = 3 * hil_node_config.VOLUME_STATS_PERIOD_S


def _volume_health(kube: Kube, pod: str) -> list[dict[str, Any]]:
    found = kube.get(f"{PODS}/{pod}") or {}
    return [
        condition
        for entry in found.get("status", {}).get("volumeHealth") or []
        if entry["name"] == "data"
        for condition in entry.get("healthConditions") or []
    ]


def _events(kube: Kube, logical_volume: str, reason: str) -> list[dict[str, Any]]:
    """Events about LogicalVolume ``logical_volume`` with this reason (a cluster-scoped object's are in default)."""
    found = kube.get("/api/v1/namespaces/default/events") or {}
    return [
        e
        for e in found.get("items") or []
        if e["involvedObject"].get("kind") == "LogicalVolume"
        and e["involvedObject"].get("name") == logical_volume
        and e["reason"] == reason
    ]


def test_a_dead_disk_shows_in_the_pods_volume_health(
    kube: Kube, topolvm: dict[str, Any], flaky_pv: faults.FaultablePV
) -> None:
    kube.create(PVCS, claim("sick", "topolvm-flaky", "128Mi"))
    kube.create(PODS, busybox_pod("sick", "echo hello > /data/f && sync && sleep 3600", [mounted("sick")]))
    kube.wait(lambda: kube.pod_phase("sick") == "Running", "the pod running on the flaky class")
    volume = bound_volume(kube, "sick")
    handle, lv_object = volume["spec"]["csi"]["volumeHandle"], volume["metadata"]["name"]  # the PV's name
    assert handle in lv_names(FLAKY_VG)

    flaky_pv.fail()
    try:
        conditions = kube.wait(
            lambda: _volume_health(kube, "sick"), "kubelet to report the volume unhealthy", timeout=DETECTION_S + 60
        )
    finally:
        flaky_pv.restore()
    assert [(c["status"], c["reason"]) for c in conditions] == [("Inaccessible", "VolumeGroupLost")], conditions
    assert "missing" in conditions[0].get("message", ""), conditions
    logs = kube.node_agent_logs()
    assert f"volume {handle} (LV {FLAKY_VG}/{handle}" in logs and "INACCESSIBLE VolumeGroupLost" in logs
    # ... and records it for operators: a Warning Event on the volume's LogicalVolume (kubectl describe).
    [abnormal] = kube.wait(lambda: _events(kube, lv_object, "VolumeConditionAbnormal"), "the Warning Event", 30)
    assert abnormal["type"] == "Warning" and "INACCESSIBLE VolumeGroupLost" in abnormal["message"], abnormal
    assert abnormal["source"] == {"component": "topolvm-node", "host": hil_node.NODE_NAME}, abnormal

    # The disk is back: kubelet clears the pod's volume health, and the claim and its LV go as usual.
    kube.wait(lambda: _volume_health(kube, "sick") == [], "the volume healthy again", timeout=DETECTION_S + 60)
    assert kube.pod_phase("sick") == "Running"
    [normal] = kube.wait(lambda: _events(kube, lv_object, "VolumeConditionNormal"), "the Normal Event", 30)
    assert normal["type"] == "Normal", normal
    remove(kube, ["sick"], "sick")
    assert handle not in lv_names(FLAKY_VG)
