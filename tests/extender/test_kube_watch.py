"""The extender's API watches against a real kube-apiserver (tests/support/controlplane.py), under an identity
that has only what docs/scheduler.md asks for: get/list/watch on nodes, pods and persistentvolumeclaims.

A pod the extender was asked about gets a reservation; a selected-node annotation on its claim moves it; the
pods/binding subresource (what kube-scheduler calls) or a volume for its claim ends it; Node objects feed and
shrink the node cache.
Needs etcd and kube-apiserver (ci/peers/build.sh etcd kube-apiserver); skips without them, fails in CI.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane
from topolvm import clock, errors
from topolvm.core import reservations, scheduling, workloads
from topolvm.extender import config, holder, kube, metrics
from topolvm.kube import client as kube_client
from topolvm.services import scheduler

GiB = 1 << 30
USER = "topolvm-extender-watch-test"
RULES = [
    {"apiGroups": [""], "resources": ["nodes", "pods", "persistentvolumeclaims"], "verbs": ["get", "list", "watch"]}
]


def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.05)


def created(kube_api: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    code, reply = kube_api.request("POST", path, body)
    assert code == 201, reply
    return reply


@pytest.fixture(scope="module")
def least_privileged(kube_api: ControlPlane) -> Any:
    """A KubeCluster acting as a user bound to RULES only (the admin impersonates it)."""
    from kubernetes import client
    from kubernetes import config as kube_config

    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": USER}}
    kube_api.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {**role, "rules": RULES})
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
    }
    kube_api.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding)
    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=kube_api.kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration, header_name="Impersonate-User", header_value=USER)
    cluster = kube_client.KubeCluster(api)
    eventually(lambda: _allowed(cluster), "RBAC grants the test user list on pods")
    return cluster


def _allowed(cluster: kube_client.KubeCluster) -> bool:
    try:
        cluster.list_of(workloads.POD, namespace="default")
    except errors.TopoLVMError:
        return False
    return True


@pytest.fixture
def stats() -> metrics.Metrics:
    return metrics.Metrics()


@pytest.fixture
def state(stats: metrics.Metrics) -> Iterator[holder.Holder]:
    cfg = config.Config(reservation_ttl=600)  # long: only events may end the reservations here
    yield holder.build(cfg, stats, clock=clock.ManualClock(0.0), watched_nodes=True)


def ends(stats: metrics.Metrics) -> dict[str, float]:
    result = {}
    for reason in reservations.EndReason:
        value = stats.registry.get_sample_value("topolvm_extender_reservation_ends_total", {"reason": reason.value})
        if value:
            result[reason.value] = value
    return result


@pytest.fixture
def namespace(kube_api: ControlPlane) -> str:
    name = f"extender-{uuid.uuid4().hex[:8]}"
    created(kube_api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def make_pod(kube_api: ControlPlane, namespace: str, name: str, claim: str) -> scheduler.Pod:
    claim_body = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "3Gi"}}},
    }
    created(kube_api, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", claim_body)
    pod_body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"capacity.topolvm.io/ssd": str(3 * GiB)}},
        "spec": {
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }
    uid = created(kube_api, f"/api/v1/namespaces/{namespace}/pods", pod_body)["metadata"]["uid"]
    return scheduler.Pod(uid, namespace, name, {"ssd": 3 * GiB}, (claim,))


def test_binding_through_the_api_ends_the_reservation(
    kube_api: ControlPlane, least_privileged: Any, stats: metrics.Metrics, namespace: str
) -> None:
    # As --watch-nodes --watch-pods run it, with kube-scheduler breaking ties: the first pod is held on both.
    policy = scheduling.Policy(tie_break=scheduling.TieBreak.SCHEDULER)
    cfg = config.Config(policy=policy, reservation_ttl=600)  # long: only events may end the reservations here
    state = holder.build(cfg, stats, clock=clock.ManualClock(0.0), watched_nodes=True, watched_pods=True)
    service = state.service
    for name in ("n1", "n2"):
        service.node_updated(name, {"ssd": str(4 * GiB)})
    first = make_pod(kube_api, namespace, "first", "data-first")
    second = make_pod(kube_api, namespace, "second", "data-second")
    watches = kube.watch_pods(state, least_privileged)
    try:
        with state.lock:  # the scores tie: the first pod is held on both nodes
            assert service.prioritize(first, ["n1", "n2"]).contenders == ("n1", "n2")

        # kube-scheduler chose n2 for the first pod: VolumeBinding's PreBind annotates its claim.
        patch = {"metadata": {"annotations": {kube.SELECTED_NODE_ANNOTATION: "n2"}}}
        path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-first"
        code, reply = _merge_patch(kube_api, path, patch)
        assert code == 200, reply
        eventually(lambda: service.ledger.nodes_of(first.key) == ("n2",), "the reservation keeps to selected-node")
        with state.lock:
            assert service.prioritize(second, ["n1", "n2"]).contenders == ("n1",)

        # Then it binds the pod (the pods/binding subresource): the reservation ends.
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "first"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n2"},
        }
        created(kube_api, f"/api/v1/namespaces/{namespace}/pods/first/binding", binding)
        eventually(lambda: not service.ledger.nodes_of(first.key), "binding ends the reservation")
        assert service.ledger.nodes_of(second.key) == ("n1",)

        # The second pod's claim gets its volume (the PV controller binds it): its capacity is spent.
        path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-second"
        code, reply = _merge_patch(kube_api, path, {"spec": {"volumeName": "pv-second"}})
        assert code == 200, reply
        eventually(lambda: not service.ledger, "a volume for every claim of the pod ends its reservation")
        code, _ = kube_api.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/second")
        assert code == 200
        eventually(lambda: service.tracked_pods() == 0, "the deleted pod is forgotten")
        assert ends(stats) == {"not-chosen": 1, "bound": 1, "claims-bound": 1}
    finally:
        for watch in watches:
            watch.close()


def test_node_watch_feeds_and_shrinks_the_cache(
    kube_api: ControlPlane, least_privileged: Any, state: holder.Holder, stats: metrics.Metrics
) -> None:
    name = f"node-{uuid.uuid4().hex[:8]}"
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": {"capacity.topolvm.io/ssd": str(5 * GiB), "other": "x"}},
    }
    created(kube_api, "/api/v1/nodes", node)
    service = state.service
    service.node_updated("long-gone", {"ssd": "1"})  # cached earlier, deleted while no watch ran
    watch = kube.watch_nodes(state, least_privileged)
    try:
        eventually(lambda: service.index.raw(name) == {"ssd": str(5 * GiB)}, "the listed node is cached")
        assert "long-gone" not in service.index
        with state.lock:
            service.filter(scheduler.Pod("p", requested={"ssd": 3 * GiB}), [name])
        patch = {"metadata": {"annotations": {"capacity.topolvm.io/ssd": str(2 * GiB - 4096)}}}
        code, reply = _merge_patch(kube_api, f"/api/v1/nodes/{name}", patch)
        assert code == 200, reply
        eventually(lambda: not service.ledger, "the annotation drop ends the reservation (provisioned)")
        code, _ = kube_api.request("DELETE", f"/api/v1/nodes/{name}")
        assert code == 200
        eventually(lambda: name not in service.index, "a deleted node leaves the cache")
        assert ends(stats) == {"provisioned": 1}
    finally:
        watch.close()


def _merge_patch(kube_api: ControlPlane, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    import json
    import ssl
    import urllib.error
    import urllib.request

    request = urllib.request.Request(kube_api.url + path, data=json.dumps(body).encode(), method="PATCH")
    request.add_header("Authorization", f"Bearer {kube_api.token}")
    request.add_header("Content-Type", "application/merge-patch+json")
    context = ssl.create_default_context(cafile=kube_api.ca_file)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
