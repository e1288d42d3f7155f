"""A thin volume's snapshot restored into a new claim holds what the volume held when the snapshot was taken:
csi-snapshotter beside topolvm-controller, the cluster's snapshot-controller, a thin LV snapshot of the origin on
real device-mapper, and pods that write and read through kubelet."""

from __future__ import annotations

import json
import secrets
import subprocess
from typing import Any

from tests.hil.node.kube import Kube
from tests.hil.node.workloads import PODS, PVCS, VG, bound_volume, busybox_pod, claim, mounted, remove

SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1/namespaces/default/volumesnapshots"
THIN_CLASS = "topolvm-provisioner-thin"  # and the chart's VolumeSnapshotClass of the same name


def _origins() -> dict[str, str]:
    """LV name -> its origin (empty for a volume that is not a snapshot), as lvm2 reports them."""
    report = subprocess.run(
        ["lvs", "--reportformat", "json", "-o", "lv_name,origin", VG], capture_output=True, text=True, check=True
    ).stdout
    return {row["lv_name"]: row["origin"] for row in json.loads(report)["report"][0]["lv"]}


def test_thin_snapshot_restores_the_data_it_was_taken_with(kube: Kube, topolvm: dict[str, Any]) -> None:
    before, after = secrets.token_hex(8), secrets.token_hex(8)
    kube.create(PVCS, claim("origin", THIN_CLASS, "256Mi"))
    kube.create(PODS, busybox_pod("origin-1", f"echo {before} > /data/f && sync", [mounted("origin")]))
    kube.wait_pod_done("origin-1")
    origin = bound_volume(kube, "origin")["spec"]["csi"]["volumeHandle"]

    kube.create(
        SNAPSHOTS,
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "snap"},
            "spec": {"volumeSnapshotClassName": THIN_CLASS, "source": {"persistentVolumeClaimName": "origin"}},
        },
    )
    ready = kube.wait(
        lambda: (s := kube.get(f"{SNAPSHOTS}/snap")) and s.get("status", {}).get("readyToUse") and s,
        "the VolumeSnapshot ready to use",
        timeout=240,
    )
    content = kube.get(
        f"/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/{ready['status']['boundVolumeSnapshotContentName']}"
    )
    assert content is not None
    snapshot_lv = content["status"]["snapshotHandle"]
    assert _origins().get(snapshot_lv) == origin  # a thin snapshot of the origin's LV

    # The origin moves on; the snapshot does not.
    kube.create(PODS, busybox_pod("origin-2", f"echo {after} > /data/f && sync", [mounted("origin")]))
    kube.wait_pod_done("origin-2")
    restored = claim("restored", THIN_CLASS, "256Mi")
    restored["spec"]["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}
    kube.create(PVCS, restored)
    kube.create(PODS, busybox_pod("restored", "cat /data/f", [mounted("restored")]))
    assert kube.wait_pod_done("restored").strip() == before
    restored_lv = bound_volume(kube, "restored")["spec"]["csi"]["volumeHandle"]
    assert _origins().get(restored_lv) in (origin, snapshot_lv), _origins()  # thin: made from the snapshot

    remove(kube, ["restored"], "restored")
    kube.delete(f"{SNAPSHOTS}/snap")
    kube.wait_gone(f"{SNAPSHOTS}/snap")
    kube.wait(lambda: snapshot_lv not in _origins(), "the snapshot's LV removed")
    remove(kube, ["origin-1", "origin-2"], "origin")
    assert not {origin, snapshot_lv, restored_lv} & _origins().keys()
