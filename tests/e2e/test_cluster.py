"""The end-to-end cluster itself: a kwok Node goes Ready, and a plain pod scheduled by the real kube-scheduler
goes Running on it; kube-controller-manager runs its controllers under their own ServiceAccounts and cleans up
after a deleted namespace. Needs every peer of tests/support/cluster.py; skips without them, fails in CI."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.cluster import KWOK_LABEL, Cluster


def namespace(cluster: Cluster, name: str) -> str:
    code, reply = cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert code == 201, reply
    return name


def pod(name: str, node: str) -> dict[str, Any]:
    """A pod with no volumes, pinned to ``node`` by label only: kube-scheduler has to bind it."""
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "100m"}}}
            ],
        },
    }


def test_a_kwok_node_runs_a_pod_the_real_kube_scheduler_placed(kube_cluster: Cluster) -> None:
    cluster, tag = kube_cluster, uuid.uuid4().hex[:6]
    node = f"kwok-{tag}"
    cluster.add_node(node)
    ready = cluster.wait_node_ready(node)  # kwok's node-initialize Stage, then node-lifecycle's taint removal
    assert ready["metadata"]["labels"][KWOK_LABEL] == "fake"
    assert ready["status"]["nodeInfo"]["kubeletVersion"].startswith("kwok-")
    # kwok heartbeats through the Node's Lease, as a kubelet does
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
    lease = cluster.wait_for(lambda: cluster.get(lease_path), f"kwok's Lease of {node}")
    assert lease["spec"]["holderIdentity"]

    ns = namespace(cluster, f"e2e-{tag}")
    pods = f"/api/v1/namespaces/{ns}/pods"
    code, reply = cluster.request("POST", pods, pod("p", node))
    assert code == 201, reply

    def running() -> dict[str, Any] | None:
        current = cluster.get(f"{pods}/p")
        return current if current and current.get("status", {}).get("phase") == "Running" else None

    placed = cluster.wait_for(running, "the pod to be Running", timeout=60)
    assert placed["spec"]["nodeName"] == node  # bound by kube-scheduler: the pod only had a nodeSelector
    conditions = {c["type"]: c["status"] for c in placed["status"]["conditions"]}
    assert conditions["PodScheduled"] == "True" and conditions["Ready"] == "True", conditions
    assert placed["status"]["podIP"]  # from kwok's pod CIDR

    def scheduled() -> list[dict[str, Any]]:
        events = cluster.get(f"/api/v1/namespaces/{ns}/events?fieldSelector=reason%3DScheduled") or {}
        return [e for e in events.get("items", []) if e.get("reportingComponent") == "default-scheduler"]

    (event,) = cluster.wait_for(scheduled, "kube-scheduler's Scheduled event")
    assert node in event["message"], event

    # Deleting: kwok's pod-delete Stage plays kubelet's part (a graceful delete only sets deletionTimestamp),
    # then the namespace controller removes the namespace.
    code, reply = cluster.request("DELETE", f"{pods}/p")
    assert code == 200, reply
    cluster.wait_for(lambda: cluster.get(f"{pods}/p") is None, "kwok to finish the pod's deletion", timeout=30)
    code, reply = cluster.request("DELETE", f"/api/v1/namespaces/{ns}")
    assert code == 200, reply
    cluster.wait_for(lambda: cluster.get(f"/api/v1/namespaces/{ns}") is None, f"namespace {ns} to go")
    code, reply = cluster.request("DELETE", f"/api/v1/nodes/{node}")
    assert code == 200, reply


def test_controllers_run_under_their_own_service_accounts(kube_cluster: Cluster) -> None:
    """--use-service-account-credentials: the manager made a ServiceAccount per controller and took its token,
    so RBAC sees each controller as itself (system:serviceaccount:kube-system:<controller>)."""
    for account in ("persistent-volume-binder", "expand-controller", "namespace-controller", "node-controller"):
        code, reply = kube_cluster.request("GET", f"/api/v1/namespaces/kube-system/serviceaccounts/{account}")
        assert code == 200, (account, reply.get("message"))
