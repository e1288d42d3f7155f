"""The flow of the seed deck (slides 16, 25-29) through the real programs: a PVC waits for its pod, the real
kube-scheduler asks our extender, the real external-provisioner calls CreateVolume for the selected node, our
controller and node agent create the LV on that node's VG, the PV binds, the pod runs (kwok's kubelet).

Everything of ours runs under its own ServiceAccount with deploy/'s RBAC (tests/support/stack.py); each test
registers its own Nodes, labels them with its tag and pins its pods to that label.
"""

from __future__ import annotations

import collections
from typing import Any

import pytest

from tests.e2e.scene import SELECTED_NODE, Scene
from tests.support import deployment
from tests.support.stack import CONTROLLER_REPLICAS, PROVISIONER_LEASE, GiB
from topolvm import constants
from topolvm.core.quantity import to_bytes as quantity_bytes

pytestmark = pytest.mark.root

MiB = 1 << 20


def test_a_pod_and_its_claim_land_on_the_node_with_room_and_run(scene: Scene) -> None:
    # large first: the extender learns a Node's capacity from its own watch, which can trail add_node's return by
    # a moment on a loaded machine (docs/fidelity.md); a pod placed then would not see the last Node added. CI saw
    # it once (2026-12-05) with small-then-large.
    large = scene.node("large", (6 * GiB,))
    small = scene.node("small", (2 * GiB,))
    scene.claim_and_pod("app", "1Gi")

    pod = scene.cluster.wait_for(lambda: scene.running("app"), "the pod to run", timeout=120)
    assert pod["spec"]["nodeName"] == large  # spread: the node with the most free capacity
    claim = scene.get("persistentvolumeclaims", "app")
    assert claim is not None and claim["status"]["phase"] == "Bound"
    assert claim["metadata"]["annotations"][SELECTED_NODE] == large  # kube-scheduler's choice, for the provisioner
    pv = scene.cluster.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    assert pv is not None and pv["spec"]["csi"]["driver"] == constants.PLUGIN_NAME
    (term,) = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": constants.TOPOLOGY_NODE_KEY, "operator": "In", "values": [large]}]
    (lv,) = scene.logical_volumes()
    assert lv["spec"]["nodeName"] == large and lv["status"]["volumeID"] == pv["spec"]["csi"]["volumeHandle"]
    assert scene.stack.lvs(large) == {lv["status"]["volumeID"]: GiB}  # the LV itself, on that node's VG
    assert scene.stack.lvs(small) == {}
    # kube-scheduler asked our extender: the pod carries the webhook's request and the extender's Scheduled node
    requests = pod["spec"]["containers"][0]["resources"]["requests"]
    assert constants.CAPACITY_RESOURCE in requests, requests

    scene.delete_all()
    assert scene.stack.lvs(large) == {}


def test_a_claim_larger_than_any_node_keeps_its_pod_pending(scene: Scene) -> None:
    """deploy/ turns on Storage Capacity Tracking next to the extender: csi-provisioner publishes our
    GetCapacity per node as CSIStorageCapacity, and kube-scheduler's VolumeBinding refuses the node before the
    extender is asked (kube-scheduler calls extenders only with the nodes its plugins let through)."""
    node = scene.node("a", (2 * GiB,))
    scene.claim_and_pod("big", "8Gi")

    capacity = scene.cluster.wait_for(lambda: scene.capacity(node), f"csi-provisioner to publish {node}'s capacity")
    free = scene.stack.vg_free(node)
    assert quantity_bytes(capacity["capacity"]) == free and free < 2 * GiB  # GetCapacity: the VG's free bytes

    def failed() -> list[dict[str, Any]]:
        events = scene.events("big", "FailedScheduling")
        return [e for e in events if "did not have enough free storage" in e["message"]]

    scene.cluster.wait_for(failed, "kube-scheduler's FailedScheduling event", timeout=60)
    pod = scene.get("pods", "big")
    assert pod is not None and not pod["spec"].get("nodeName") and pod["status"]["phase"] == "Pending"
    claim = scene.get("persistentvolumeclaims", "big")
    assert claim is not None and claim["status"]["phase"] == "Pending"
    assert SELECTED_NODE not in claim["metadata"].get("annotations", {})  # never handed to the provisioner
    assert scene.logical_volumes() == []
    scene.delete_all()


def test_a_burst_of_pods_never_overcommits_a_node(scene: Scene) -> None:
    """#117: 100 pods of 1 GiB at once on four nodes with room for 20 each: 80 run, 20 wait; no claim is ever
    handed to a node without room (csi-provisioner reports no failed provisioning)."""
    nodes = [scene.node(str(i), (21 * GiB,)) for i in range(4)]  # 21 GiB less its metadata: room for 20
    names = [f"burst-{i:03d}" for i in range(100)]
    for name in names:
        scene.claim_and_pod(name, "1Gi")

    def placed() -> dict[str, str] | None:
        pods = (scene.cluster.get(f"/api/v1/namespaces/{scene.ns}/pods") or {}).get("items", [])
        running = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods if p["status"].get("phase") == "Running"}
        return running if len(running) >= 80 else None

    running = scene.cluster.wait_for(placed, "80 pods to run", timeout=300, interval=1.0)
    assert len(running) == 80
    assert collections.Counter(running.values()) == {node: 20 for node in nodes}
    for node in nodes:
        assert sorted(scene.stack.lvs(node).values()) == [GiB] * 20
    failed = scene.cluster.get(f"/api/v1/namespaces/{scene.ns}/events?fieldSelector=reason%3DProvisioningFailed")
    messages = [e["message"] for e in (failed or {}).get("items", [])]
    # No claim was handed to a node without room: nothing sent back for lack of space. Backpressure is allowed:
    # on a loaded machine more than 8 CreateVolumes may wait on one node, or more than 24 in all, and the rest are
    # told UNAVAILABLE, retry (runtime.Waiter's per-node and total caps; fresh-clone CIs saw the first on
    # 2026-12-05 and the second on 2026-12-06).
    refused = [m for m in messages if "Unavailable" not in m]
    assert not refused, refused
    assert all("too many calls are waiting" in m for m in messages), messages
    pending = [name for name in names if name not in running]
    for name in pending:
        pod = scene.get("pods", name)
        assert pod is not None and not pod["spec"].get("nodeName")
        # Refused by the extender (its ledger holds what it promised to pods still being provisioned) or, once
        # csi-provisioner's next poll (every minute) has published the fuller VGs, by VolumeBinding.
        events = scene.cluster.wait_for(lambda n=name: scene.events(n, "FailedScheduling"), f"{name}: FailedScheduling")
        reasons = ("out of VG free space", "did not have enough free storage")
        assert all(any(r in e["message"] for r in reasons) for e in events), [e["message"] for e in events]
    scene.delete_all()


def test_a_dead_nodes_claims_are_deleted_so_its_statefulset_pod_moves_on(scene: Scene) -> None:
    """Upstream's node finalizer: a deleted Node's TopoLVM claims are deleted, so the StatefulSet controller makes
    the pod and its claim again and kube-scheduler places them on a live node."""
    first = scene.node("first", (4 * GiB,))
    app = f"db-{scene.tag}"
    statefulset = {
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 1,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "nodeSelector": {"e2e-tag": scene.tag},
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "topolvm-provisioner",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    code, reply = scene.cluster.request("POST", f"/apis/apps/v1/namespaces/{scene.ns}/statefulsets", statefulset)
    assert code == 201, reply
    pod = scene.cluster.wait_for(lambda: scene.running("db-0"), "db-0 to run", timeout=120)
    assert pod["spec"]["nodeName"] == first
    claim = scene.get("persistentvolumeclaims", "data-db-0")
    assert claim is not None
    first_uid = claim["metadata"]["uid"]

    second = scene.node("second", (4 * GiB,))
    scene.stack.kill_node(first)
    code, reply = scene.cluster.request("DELETE", f"/api/v1/nodes/{first}")
    assert code == 200, reply
    # topolvm-controller deletes the claim and releases the LogicalVolume, then lets the Node go
    scene.cluster.wait_for(lambda: scene.cluster.get(f"/api/v1/nodes/{first}") is None, f"Node {first} to go", 60)

    def moved() -> dict[str, Any] | None:
        pod = scene.running("db-0")
        return pod if pod and pod["spec"]["nodeName"] == second else None

    # pod GC removes the orphaned pod (40 s quarantine), then the StatefulSet controller makes pod and claim again
    scene.cluster.wait_for(moved, "db-0 to run on the second node", timeout=240)
    claim = scene.get("persistentvolumeclaims", "data-db-0")
    assert claim is not None and claim["metadata"]["uid"] != first_uid and claim["status"]["phase"] == "Bound"
    assert claim["metadata"]["annotations"][SELECTED_NODE] == second
    (lv,) = scene.logical_volumes()
    assert lv["spec"]["nodeName"] == second and list(scene.stack.lvs(second)) == [lv["status"]["volumeID"]]

    code, reply = scene.cluster.request("DELETE", f"/apis/apps/v1/namespaces/{scene.ns}/statefulsets/db")
    assert code == 200, reply
    scene.delete_all()


def test_when_the_leading_controller_replica_dies_the_other_provisions_once(scene: Scene) -> None:
    """deploy/controller.yaml's two replicas: the csi-provisioner sidecars elect a leader (a Lease); when the
    leader's pod dies the other takes over, and every claim is provisioned exactly once."""
    node = scene.node("a", (4 * GiB,))
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{deployment.NAMESPACE}/leases/{PROVISIONER_LEASE}"
    lease = scene.cluster.wait_for(lambda: scene.cluster.get(lease_path), "the provisioners' Lease")
    leader = lease["spec"]["holderIdentity"]
    replica = leader.removeprefix("topolvm-controller-")
    assert replica in CONTROLLER_REPLICAS, leader
    scene.stack.kill_controller(replica)
    try:
        scene.claim_and_pod("after", "1Gi")

        def new_leader() -> str | None:
            holder = (scene.cluster.get(lease_path) or {}).get("spec", {}).get("holderIdentity")
            return holder if holder and holder != leader else None

        assert scene.cluster.wait_for(new_leader, "the other replica to lead", timeout=60)
        pod = scene.cluster.wait_for(lambda: scene.running("after"), "the pod to run", timeout=120)
        assert pod["spec"]["nodeName"] == node
        volumes = scene.cluster.get("/api/v1/persistentvolumes") or {}
        mine = [pv for pv in volumes.get("items", []) if pv["spec"]["claimRef"]["namespace"] == scene.ns]
        assert len(mine) == 1 and len(scene.logical_volumes()) == 1 and len(scene.stack.lvs(node)) == 1
    finally:
        scene.stack.start_controller(replica)  # the Deployment's ReplicaSet would make the pod again
    scene.delete_all()


def test_without_the_extender_capacity_tracking_places_and_a_full_node_sends_claims_back(scene: Scene) -> None:
    """Storage Capacity Tracking alone (pods of a namespace the webhook ignores ask kube-scheduler for no
    topolvm.io/capacity, so the extender is never called): VolumeBinding places pods by the CSIStorageCapacity
    csi-provisioner published from our GetCapacity. That figure is up to a minute old, so a burst over-asks a
    node; our CreateVolume refuses what does not fit with RESOURCE_EXHAUSTED, csi-provisioner sends those
    claims back to kube-scheduler, and no VG is over-committed."""
    scene.skip_webhook()
    node = scene.node("a", (4 * GiB,))
    scene.cluster.wait_for(lambda: scene.capacity(node), f"csi-provisioner to publish {node}'s capacity", 60)
    names = [f"ct-{i}" for i in range(4)]
    for name in names:
        scene.claim_and_pod(name, "1536Mi")  # two fit in the VG's 4 GiB, four fit the published figure

    def two_running() -> list[str] | None:
        running = [name for name in names if scene.running(name)]
        return running if len(running) == 2 else None

    running = scene.cluster.wait_for(two_running, "two pods to run", timeout=120)
    for name in running:
        pod = scene.running(name)
        assert pod is not None and constants.CAPACITY_RESOURCE not in pod["spec"]["containers"][0]["resources"].get(
            "requests", {}
        )  # not mutated: kube-scheduler never asked the extender

    def sent_back() -> list[dict[str, Any]] | None:
        events = [e for name in names for e in scene.events(name, "ProvisioningFailed")]
        return events or None

    # csi-provisioner writes its Events through its API client (5 QPS, its default, shared with its PV and
    # CSIStorageCapacity writes): after one of tests/e2e/test_fidelity_scale.py's 500-event replays on the same
    # plane they arrive minutes late (2026-12-07: none within 60 s, the scheduler's log showing the send-back).
    events = scene.cluster.wait_for(sent_back, "csi-provisioner's ProvisioningFailed events", timeout=300)
    assert any("ResourceExhausted" in e["message"] for e in events), [e["message"] for e in events]
    assert sorted(scene.stack.lvs(node).values()) == [1536 * MiB] * 2  # never more than the VG holds
    for name in names:
        if name not in running:
            pod = scene.get("pods", name)
            assert pod is not None and not pod["spec"].get("nodeName")
    scene.delete_all()


def test_csi_resizer_grows_the_lv_of_a_bound_claim(scene: Scene) -> None:
    """A claim's request raised: csi-resizer calls ControllerExpandVolume, the node agent extends the LV, the PV
    grows. A filesystem volume then waits for kubelet's NodeExpandVolume (FileSystemResizePending: kwok plays
    no kubelet); a block volume is done at once."""
    node = scene.node("a", (6 * GiB,))  # 4 GiB would not hold both grown LVs: its metadata takes an extent
    scene.claim_and_pod("fs", "1Gi")
    scene.claim_and_pod("raw", "1Gi", volume_mode="Block")
    for name in ("fs", "raw"):
        scene.cluster.wait_for(lambda n=name: scene.running(n), f"pod {name} to run", timeout=120)
        path = f"/api/v1/namespaces/{scene.ns}/persistentvolumeclaims/{name}"
        patch = {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
        code, reply = scene.cluster.request("PATCH", path, patch, content_type="application/merge-patch+json")
        assert code == 200, reply

    def grown(name: str) -> dict[str, Any] | None:
        claim = scene.get("persistentvolumeclaims", name)
        pv = scene.cluster.get(f"/api/v1/persistentvolumes/{(claim or {}).get('spec', {}).get('volumeName')}")
        return claim if claim and pv and pv["spec"]["capacity"]["storage"] == "2Gi" else None

    fs = scene.cluster.wait_for(lambda: grown("fs"), "the filesystem PV to grow", timeout=90)
    raw = scene.cluster.wait_for(lambda: grown("raw"), "the block PV to grow", timeout=90)
    assert sorted(scene.stack.lvs(node).values()) == [2 * GiB, 2 * GiB]  # both LVs extended in the VG

    def resize_pending() -> bool:
        claim = scene.get("persistentvolumeclaims", "fs") or {}
        conditions = {c["type"] for c in claim.get("status", {}).get("conditions", [])}
        return "FileSystemResizePending" in conditions

    assert scene.cluster.wait_for(resize_pending, "FileSystemResizePending on the filesystem claim", timeout=30)
    assert fs["status"]["capacity"]["storage"] == "1Gi"  # kubelet's NodeExpandVolume has not run

    def block_done() -> bool:
        claim = scene.get("persistentvolumeclaims", "raw") or {}
        return bool(claim.get("status", {}).get("capacity", {}).get("storage") == "2Gi")

    assert raw is not None and scene.cluster.wait_for(block_done, "the block claim's capacity", timeout=30)
    scene.delete_all()
