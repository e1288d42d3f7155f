"""Every manifest in deploy/ is stored by a real kube-apiserver (server-side apply, with the snapshot and
cert-manager CRDs from their upstream modules), the pieces of deploy/ agree with each other, and the
configuration files shipped beside them load with the project's own loaders."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.integration.conftest import Deployed
from tests.support import deployment
from tests.support.deployment import DEPLOY, NAMESPACE
from topolvm.core import scheduling
from topolvm.extender import config as extender_config
from topolvm.lvmd import config as lvmd_config

FILES = deployment.manifest_files()


def docs(kind: str) -> list[dict[str, Any]]:
    return [d for path in FILES for d in deployment.documents(path) if d["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs(kind) if d["metadata"]["name"] == name]
    return doc


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(kind, name)["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_object_is_stored(deployed: Deployed, path: Any) -> None:
    applier = deployment.Applier(deployed.plane)
    for doc in deployment.documents(path):
        code, stored = deployed.plane.request("GET", applier.path(doc))
        assert code == 200, (doc["kind"], doc["metadata"]["name"], stored.get("message"))
        assert stored["metadata"]["uid"]


WORKLOADS = [
    ("Deployment", "topolvm-controller", "topolvm-controller"),
    ("DaemonSet", "topolvm-node", "topolvm-node"),
    ("DaemonSet", "topolvm-scheduler", "topolvm-scheduler"),
    ("Deployment", "topolvm-webhook", "topolvm-webhook"),
]


def test_each_workload_runs_as_its_own_service_account() -> None:
    assert sorted((kind, name) for kind, name, _ in WORKLOADS) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in docs("Deployment") + docs("DaemonSet")
    )
    for kind, name, account in WORKLOADS:
        assert pod_spec(kind, name)["serviceAccountName"] == account
    assert sorted(a for _, _, a in WORKLOADS) == sorted(deployment.SERVICE_ACCOUNTS)


@pytest.mark.parametrize(("kind", "name", "_sa"), WORKLOADS, ids=[w[1] for w in WORKLOADS])
def test_probes_target_ports_the_pod_declares(kind: str, name: str, _sa: str) -> None:
    spec = pod_spec(kind, name)
    named = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
    main = spec["containers"][0]
    assert "livenessProbe" in main, f"{name}: the main container has no liveness probe"
    for container in spec["containers"]:
        for probe in (container.get("livenessProbe"), container.get("readinessProbe")):
            if probe is None:
                continue
            port = probe["httpGet"]["port"]
            assert port in named or port in named.values(), f"{name}/{container['name']}: port {port}"


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "topolvm-controller"), ("DaemonSet", "topolvm-node")])
def test_livenessprobe_sidecar_serves_the_main_containers_healthz(kind: str, name: str) -> None:
    spec = pod_spec(kind, name)
    containers = {c["name"]: c for c in spec["containers"]}
    probe = containers["liveness-probe"]
    assert probe["image"].startswith("registry.k8s.io/sig-storage/livenessprobe:")
    endpoint = next(a for a in probe["args"] if a.startswith("--http-endpoint="))
    port = int(endpoint.rpartition(":")[2])
    main = spec["containers"][0]
    healthz = {p["name"]: p["containerPort"] for p in main["ports"]}[main["livenessProbe"]["httpGet"]["port"]]
    assert (healthz, main["livenessProbe"]["httpGet"]["path"]) == (port, "/healthz")
    # Every CSI client in the pod talks to the socket the driver serves.
    socket = next(a for a in main["command"] if a.startswith("--csi-socket=")).partition("=")[2]
    for container in containers.values():
        addresses = [a.partition("=")[2] for a in container.get("args", []) if a.startswith("--csi-address=")]
        assert addresses in ([], [socket]), container["name"]


def test_controller_runs_the_sidecars_the_driver_advertises() -> None:
    names = [c["name"] for c in pod_spec("Deployment", "topolvm-controller")["containers"]]
    assert names == ["topolvm-controller", "csi-provisioner", "csi-resizer", "csi-snapshotter", "liveness-probe"]
    snapshot_class = one("VolumeSnapshotClass", "topolvm-provisioner-thin")
    assert (snapshot_class["driver"], snapshot_class["deletionPolicy"]) == ("topolvm.io", "Delete")
    thin = one("StorageClass", "topolvm-provisioner-thin")
    assert thin["provisioner"] == snapshot_class["driver"] and "thin" in thin["parameters"]["topolvm.io/device-class"]


def test_scheduler_extender_is_reached_on_its_own_node_over_loopback() -> None:
    (config,) = deployment.documents(DEPLOY / "scheduler-config.yaml")
    (extender,) = config["extenders"]
    url = urlsplit(extender["urlPrefix"])
    options = yaml.safe_load(one("ConfigMap", "topolvm-scheduler-options")["data"]["scheduler-options.yaml"])
    host, port = extender_config.parse_listen(extender_config.from_mapping(options).listen)
    assert (url.scheme, url.hostname, url.port) == ("http", "127.0.0.1", port) and host == "127.0.0.1"
    spec = pod_spec("DaemonSet", "topolvm-scheduler")
    assert spec["hostNetwork"] is True
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]
    probe = spec["containers"][0]["livenessProbe"]["httpGet"]
    assert (probe["host"], probe["port"], probe["path"]) == ("127.0.0.1", port, "/status")
    assert "--watch-nodes" in spec["containers"][0]["command"] and extender["nodeCacheCapable"] is True


# kube-scheduler v1.37's default score plugins and their weights (pkg/scheduler/apis/config/v1/default_plugins.go,
# with VolumeBinding, DynamicResources and PodGroupPodsCount scoring when their features are on).
DEFAULT_SCORE_WEIGHTS = {
    "TaintToleration": 3, "NodeAffinity": 2, "PodTopologySpread": 2, "InterPodAffinity": 2, "DynamicResources": 2,
    "NodeResourcesFit": 1, "NodeResourcesBalancedAllocation": 1, "ImageLocality": 1, "VolumeBinding": 1,
    "PodGroupPodsCount": 1,
}  # fmt: skip


def test_extender_weight_makes_one_capacity_step_outweigh_every_default_plugin() -> None:
    (config,) = deployment.documents(DEPLOY / "scheduler-config.yaml")
    (extender,) = config["extenders"]
    max_node_score, max_extender_priority = 100, 10
    one_step = extender["weight"] * max_node_score // max_extender_priority
    assert one_step > max_node_score * sum(DEFAULT_SCORE_WEIGHTS.values())
    assert sum(DEFAULT_SCORE_WEIGHTS.values()) == scheduling.DEFAULT_PLUGIN_WEIGHTS
    # The extender breaks ties itself, and states the weight it relies on, equal to kube-scheduler's.
    options = extender_config.from_mapping(
        yaml.safe_load(one("ConfigMap", "topolvm-scheduler-options")["data"]["scheduler-options.yaml"])
    )
    assert options.policy.tie_break is scheduling.TieBreak.EXTENDER
    assert options.extender_weight == extender["weight"] >= scheduling.MIN_EXTENDER_WEIGHT
    assert extender["managedResources"] == [{"name": "topolvm.io/capacity", "ignoredByScheduler": True}]
    assert extender["filterVerb"] == "predicate" and extender["prioritizeVerb"] == "prioritize"


def test_webhook_never_gates_kube_system_or_topolvm_pods() -> None:
    (hook,) = one("MutatingWebhookConfiguration", "topolvm-hook")["webhooks"]
    assert hook["name"] == "pod-hook.topolvm.io" and hook["failurePolicy"] == "Fail"
    expressions = hook["namespaceSelector"]["matchExpressions"]
    assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]} in (
        expressions
    )
    opt_out = {"key": "topolvm.io/webhook", "operator": "NotIn", "values": ["ignore"]}
    assert opt_out in expressions and hook["objectSelector"]["matchExpressions"] == [opt_out]
    assert one("Namespace", NAMESPACE)["metadata"]["labels"]["topolvm.io/webhook"] == "ignore"
    assert hook["clientConfig"]["service"] == {"name": "topolvm-webhook", "namespace": NAMESPACE, "path": "/pod/mutate"}


def test_cert_manager_makes_the_secret_the_webhook_mounts_and_injects_its_ca() -> None:
    hook = one("MutatingWebhookConfiguration", "topolvm-hook")
    certificate = one("Certificate", "topolvm-mutatingwebhook")
    namespace, _, name = hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].partition("/")
    assert (namespace, name) == (certificate["metadata"]["namespace"], certificate["metadata"]["name"])
    volumes = {v["name"]: v for v in pod_spec("Deployment", "topolvm-webhook")["volumes"]}
    assert volumes["certs"]["secret"]["secretName"] == certificate["spec"]["secretName"] == "topolvm-webhook-tls"
    service = one("Service", "topolvm-webhook")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    issuer = one("Issuer", certificate["spec"]["issuerRef"]["name"])
    ca = one("Certificate", "topolvm-webhook-ca")
    assert issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"] and ca["spec"]["isCA"] is True


def test_lvmd_example_loads() -> None:
    cfg = lvmd_config.load(DEPLOY / "lvmd" / "lvmd.yaml")
    assert [dc.name for dc in cfg.device_classes] == ["ssd", "ssd-thin"] and cfg.lvm_command_prefix == ()
