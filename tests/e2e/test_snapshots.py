"""CSI snapshots through the real programs: a VolumeSnapshot of a thin claim goes through the real
snapshot-controller and csi-snapshotter to our CreateSnapshot (a read-only thin snapshot LV on the claim's node),
a claim restored from it goes through external-provisioner to CreateVolume with the snapshot as source (a writable
thin snapshot of it, on the same node), and deleting the VolumeSnapshot (deletionPolicy Delete) removes its LV.

The thin node's lvmd runs over in-memory LVM (tests/support/stack_snapshots.py: no device-mapper on this host);
everything else is the real program.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.scene import Scene
from tests.support.stack import GiB

pytestmark = pytest.mark.root

THIN = "topolvm-provisioner-thin"  # deploy/'s thin StorageClass and VolumeSnapshotClass
SNAP_API = "/apis/snapshot.storage.k8s.io/v1"


def by_volume_id(scene: Scene) -> dict[str, dict[str, Any]]:
    return {lv["status"]["volumeID"]: lv for lv in scene.logical_volumes() if lv.get("status", {}).get("volumeID")}


def test_a_thin_claims_snapshot_is_restored_into_a_new_claim_on_its_node(scene: Scene) -> None:
    nodes = {scene.node(suffix, (8 * GiB,), thin_pool=4 * GiB) for suffix in ("a", "b")}
    scene.claim_and_pod("src", "1Gi", storage_class=THIN)
    pod = scene.cluster.wait_for(lambda: scene.running("src"), "the source pod to run", timeout=120)
    source_node = pod["spec"]["nodeName"]
    (other,) = nodes - {source_node}  # now with more room: spread would pick it for a new volume
    claim = scene.get("persistentvolumeclaims", "src")
    assert claim is not None
    pv = scene.cluster.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    assert pv is not None
    source_id = pv["spec"]["csi"]["volumeHandle"]

    snapshot = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "snap"},
        "spec": {"volumeSnapshotClassName": THIN, "source": {"persistentVolumeClaimName": "src"}},
    }
    path = f"{SNAP_API}/namespaces/{scene.ns}/volumesnapshots"
    code, reply = scene.cluster.request("POST", path, snapshot)
    assert code == 201, reply

    def ready() -> dict[str, Any] | None:
        snap = scene.cluster.get(f"{path}/snap") or {}
        return snap if snap.get("status", {}).get("readyToUse") else None

    snap = scene.cluster.wait_for(ready, "the VolumeSnapshot to be ready to use", timeout=90)
    content = scene.cluster.get(f"{SNAP_API}/volumesnapshotcontents/{snap['status']['boundVolumeSnapshotContentName']}")
    assert content is not None
    snapshot_id = content["status"]["snapshotHandle"]
    snap_lv = by_volume_id(scene)[snapshot_id]
    assert snap_lv["spec"]["source"] == source_id and snap_lv["spec"]["accessType"] == "ro"
    assert snap_lv["spec"]["nodeName"] == source_node
    assert snap["status"]["restoreSize"] == "1Gi"

    data_source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}
    scene.claim_and_pod("restored", "1Gi", storage_class=THIN, data_source=data_source)
    restored_pod = scene.cluster.wait_for(lambda: scene.running("restored"), "the restored pod to run", timeout=120)
    assert restored_pod["spec"]["nodeName"] == source_node  # a snapshot's restore stays on its node
    restored = scene.get("persistentvolumeclaims", "restored")
    assert restored is not None and restored["status"]["phase"] == "Bound"
    restored_pv = scene.cluster.get(f"/api/v1/persistentvolumes/{restored['spec']['volumeName']}")
    assert restored_pv is not None
    restored_lv = by_volume_id(scene)[restored_pv["spec"]["csi"]["volumeHandle"]]
    assert restored_lv["spec"]["source"] == snapshot_id and restored_lv["spec"]["accessType"] == "rw"
    on_node = scene.stack.lvs(source_node)
    assert {source_id, snapshot_id, restored_pv["spec"]["csi"]["volumeHandle"]} <= set(on_node), on_node

    code, reply = scene.cluster.request("DELETE", f"{path}/snap")
    assert code == 200, reply
    scene.cluster.wait_for(
        lambda: snapshot_id not in scene.stack.lvs(source_node), "the snapshot's LV to be removed", timeout=90
    )
    assert scene.stack.lvs(other) == {}
    scene.delete_all()
