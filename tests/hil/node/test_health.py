"""A disk that dies under a mounted volume, as the pod's owner sees it: kubelet 1.37 (feature gate
CSIVolumeHealth) asks topolvm-node's NodeGetVolumeHealth every volumeStatsAggPeriod (1 min) and writes the
answer into the pod's status.volumeHealth. The disk is a dm device over an NVMe disk switched to dm-error:
still enumerated, every I/O fails; it was the VG's only disk, so lvm2 reports nothing of the VG and lvmd keeps it
as lost. lvmd re-reads LVM in the background of its first request after --max-state-age (60 s)."""

from __future__ import annotations

from typing import Any

from harness import faults
from tests.hil.node.conftest import FLAKY_VG
from tests.hil.node.kube import Kube
from tests.hil.node.workloads import PODS, PVCS, bound_volume, busybox_pod, claim, lv_names, mounted, remove

# lvmd's state age, then the kubelet probe that starts lvmd's background re-read, the next that sees it
DETECTION_S = 60 + 60 + 60


def _volume_health(kube: Kube, pod: str) -> list[dict[str, Any]]:
    found = kube.get(f"{PODS}/{pod}") or {}
    return [
        condition
        for entry in found.get("status", {}).get("volumeHealth") or []
        if entry["name"] == "data"
        for condition in entry.get("healthConditions") or []
    ]


def test_a_dead_disk_shows_in_the_pods_volume_health(
    kube: Kube, topolvm: dict[str, Any], flaky_pv: faults.FaultablePV
) -> None:
    kube.create(PVCS, claim("sick", "topolvm-flaky", "128Mi"))
    kube.create(PODS, busybox_pod("sick", "echo hello > /data/f && sync && sleep 3600", [mounted("sick")]))
    kube.wait(lambda: kube.pod_phase("sick") == "Running", "the pod running on the flaky class")
    handle = bound_volume(kube, "sick")["spec"]["csi"]["volumeHandle"]
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

    # The disk is back: kubelet clears the pod's volume health, and the claim and its LV go as usual.
    kube.wait(lambda: _volume_health(kube, "sick") == [], "the volume healthy again", timeout=DETECTION_S + 60)
    assert kube.pod_phase("sick") == "Running"
    remove(kube, ["sick"], "sick")
    assert handle not in lv_names(FLAKY_VG)
