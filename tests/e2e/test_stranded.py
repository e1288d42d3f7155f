"""Upstream #1104 on the real plane: a claim deleted while its CreateVolume is still in flight, and the
provisioner that called it gone with it, leaves a LogicalVolume that no PV will ever name and no DeleteVolume will
ever remove; topolvm-controller's stranded volume sweep deletes it and the node agent removes its LV
(tests/support/stack.py runs the sweep every 2 s with a 20 s grace; deploy/ keeps 600 s and 3600 s).

The provisioner must be gone too: external-provisioner remembers a claim whose CreateVolume is in progress, and
when the claim is deleted it finishes the call and deletes the volume itself (seen here with the leader alive).
Its memory is not shared: a leader that dies mid-call, as in a node drain or an OOM kill, takes it along."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.scene import Scene
from tests.support import deployment
from tests.support.stack import CONTROLLER_REPLICAS, PROVISIONER_LEASE, STRANDED_GRACE, STRANDED_INTERVAL, GiB

pytestmark = pytest.mark.root


def test_a_claim_deleted_while_its_volume_is_created_leaves_no_lv_behind(scene: Scene) -> None:
    node = scene.node("a", (4 * GiB,))
    free = scene.stack.vg_free(node)
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{deployment.NAMESPACE}/leases/{PROVISIONER_LEASE}"
    scene.stack.kill_node_agent(node)  # CreateVolume records the LogicalVolume, then waits for the node agent
    leader = ""
    try:
        scene.claim_and_pod("data", "1Gi")

        def recorded() -> dict[str, Any] | None:
            return next(iter(scene.logical_volumes()), None)

        lv = scene.cluster.wait_for(recorded, "CreateVolume to record a LogicalVolume", timeout=60)
        claim = scene.get("persistentvolumeclaims", "data")
        assert claim is not None and lv["metadata"]["name"] == f"pvc-{claim['metadata']['uid']}"
        assert "volumeID" not in lv.get("status", {})  # no node agent: no LV yet
        lease = scene.cluster.get(lease_path)
        assert lease is not None
        leader = lease["spec"]["holderIdentity"].removeprefix("topolvm-controller-")
        scene.stack.kill_controller(leader)  # the pod of the provisioner that made the call dies with it
        for kind in ("pods", "persistentvolumeclaims"):
            path = f"/api/v1/namespaces/{scene.ns}/{kind}/data"
            code, reply = scene.cluster.request("DELETE", path, {"gracePeriodSeconds": 0})
            assert code == 200, reply
        scene.cluster.wait_for(lambda: scene.get("persistentvolumeclaims", "data") is None, "the claim to go", 60)
    finally:
        scene.stack.restart_node_agent(node)  # it creates the LV of a LogicalVolume nobody wants any more
        if leader:
            scene.stack.start_controller(leader)  # the Deployment's ReplicaSet would make the pod again

    def swept() -> bool:
        return not scene.logical_volumes() and not scene.stack.lvs(node)

    scene.cluster.wait_for(swept, "the stranded LogicalVolume and its LV to go", timeout=120)
    volumes = scene.cluster.get("/api/v1/persistentvolumes") or {}
    assert [pv for pv in volumes.get("items", []) if pv["spec"]["claimRef"]["namespace"] == scene.ns] == []
    logs = "".join(
        (scene.cluster.workdir / f"topolvm-controller-{replica}.log").read_text() for replica in CONTROLLER_REPLICAS
    )
    assert f"deleted stranded LogicalVolume {lv['metadata']['name']}" in logs
    assert scene.stack.vg_free(node) == free


def test_a_retained_volume_whose_pv_is_deleted_by_hand_is_kept(scene: Scene) -> None:
    """Reclaim policy Retain, claim deleted, the Released PV deleted by hand to keep the data (the documented
    manual reclaim): the volume was handed to a provisioner, so the sweep leaves it, past its grace, to its
    operator."""
    node = scene.node("a", (4 * GiB,))
    retain = f"retain-{scene.tag}"
    storage_class = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": retain},
        "provisioner": "topolvm.io",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    code, reply = scene.cluster.request("POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class)
    assert code == 201, reply
    scene.claim_and_pod("kept", "1Gi", storage_class=retain)
    scene.cluster.wait_for(lambda: scene.running("kept"), "the pod to run", timeout=120)
    claim = scene.get("persistentvolumeclaims", "kept")
    assert claim is not None
    pv_path = f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}"
    for kind in ("pods", "persistentvolumeclaims"):
        code, reply = scene.cluster.request("DELETE", f"/api/v1/namespaces/{scene.ns}/{kind}/kept")
        assert code == 200, reply

    def released() -> dict[str, Any] | None:
        pv = scene.cluster.get(pv_path)
        return pv if pv and pv.get("status", {}).get("phase") == "Released" else None

    handle = scene.cluster.wait_for(released, "the PV to be Released", timeout=60)["spec"]["csi"]["volumeHandle"]
    code, reply = scene.cluster.request("DELETE", pv_path)
    assert code == 200, reply
    scene.cluster.wait_for(lambda: scene.cluster.get(pv_path) is None, "the PV to go", timeout=30)
    time.sleep(STRANDED_GRACE + 3 * STRANDED_INTERVAL)  # older than the grace, several sweeps later
    (lv,) = scene.logical_volumes()
    assert lv["status"]["volumeID"] == handle and handle in scene.stack.lvs(node)
    # The operator's reclaim: delete the LogicalVolume, and the node agent removes the LV.
    code, reply = scene.cluster.request("DELETE", f"/apis/topolvm.io/v1/logicalvolumes/{lv['metadata']['name']}")
    assert code == 200, reply
    scene.cluster.wait_for(lambda: not scene.stack.lvs(node), "the LV to be removed", timeout=60)
    scene.cluster.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{retain}")
