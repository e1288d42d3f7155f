"""The Helm chart deploy/helm/topolvm: `helm lint` and `helm template` for the default values and a matrix of
value sets, every rendered object accepted by a real kube-apiserver (server-side apply, dry run, with the CRDs the
objects need), the default rendering equal to deploy/ and deploy/manifests generated from it, and what each value
changes. helm is the peer built by `ci/peers/build.sh helm`: missing, these tests skip outside CI and fail in CI."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import controlplane, deployment
from tests.support.controlplane import ControlPlane
from tests.support.deployment import DEPLOY, NAMESPACE
from topolvm.extender import config as extender_config
from topolvm.lvmd import config as lvmd_config

CHART = DEPLOY / "helm" / "topolvm"
RENDER_SCRIPT = DEPLOY.parent / "scripts" / "render_manifests.py"
# deploy/'s third-party CRDs, and prometheus-operator's for the optional PodMonitors.
CHART_CRDS = (*deployment.THIRD_PARTY_CRDS, "prometheus-operator")
CA_BUNDLE = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot checked by the chart\n").decode()
PLACED = {"nodeSelector": {"disk": "nvme"}, "tolerations": [{"key": "storage", "operator": "Exists"}]}
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

STORAGE_CLASSES = {
    "storageClasses": [
        {
            "name": "topolvm-fast",
            "storageClass": {
                "fsType": "ext4",
                "isDefaultClass": True,
                "reclaimPolicy": "Retain",
                "mountOptions": ["noatime"],
                "volumeBindingMode": "WaitForFirstConsumer",
                "allowVolumeExpansion": False,
                "additionalParameters": {"topolvm.io/device-class": "ssd", "topolvm.io/lvcreate-option-class": "raid1"},
            },
        },
        {"name": "topolvm-block", "storageClass": {"volumeBindingMode": "WaitForFirstConsumer"}},
    ],
    "snapshot": {"volumeSnapshotClasses": [{"name": "thin", "isDefaultClass": True, "deletionPolicy": "Retain"}]},
}
PODMONITORS = {
    "controller": {"prometheus": {"podMonitor": {"enabled": True, "interval": "30s"}}},
    "node": {"prometheus": {"podMonitor": {"enabled": True, "additionalLabels": {"release": "prom"}}}},
}
PLACEMENT_RESOURCES_IMAGE = {
    "controller": PLACED,
    "node": PLACED,
    "webhook": PLACED,
    "scheduler": {"nodeSelector": {"cp": "yes"}},
    "resources": {"topolvm_controller": RESOURCES, "topolvm_node": RESOURCES, "csi_provisioner": RESOURCES},
    "image": {
        "repository": "registry.example/topolvm-py",
        "reference": "0.2.0",
        "pullPolicy": "IfNotPresent",
        "pullSecrets": [{"name": "regcred"}],
    },
}
MINIMAL_CONTROLLER = {
    "controller": {
        "replicaCount": 1,
        "leaderElection": {"enabled": False},
        "storageCapacityTracking": {"enabled": False},
    },
    "snapshot": {"enabled": False},
}
CAPACITY_TRACKING_ONLY = {"scheduler": {"enabled": False}, "webhook": {"podMutatingWebhook": {"enabled": False}}}
SELF_SIGNED = {"webhook": {"certManager": False, "selfSigned": True}}
OWN_CERT = {"webhook": {"certManager": False, "secretName": "my-tls", "caBundle": CA_BUNDLE}}
SCHEDULER_OPTIONS = {
    "scheduler": {"schedulerOptions": {"mode": "pack", "tie-break": "scheduler", "divisors": {"ssd": 2, "hdd": 10}}}
}
ISSUER = {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "ca"}
MICROK8S_KUBELET = "/var/snap/microk8s/common/var/lib/kubelet"

# (values, release namespace): the value sets every test below renders, lints and dry-runs.
VALUE_SETS = [
    pytest.param({}, NAMESPACE, id="defaults"),
    pytest.param({"scheduler": {"type": "deployment"}}, NAMESPACE, id="scheduler-deployment"),
    pytest.param(SCHEDULER_OPTIONS, NAMESPACE, id="scheduler-options"),
    pytest.param(CAPACITY_TRACKING_ONLY, NAMESPACE, id="capacity-tracking-only"),
    pytest.param(SELF_SIGNED, NAMESPACE, id="self-signed"),
    pytest.param(OWN_CERT, NAMESPACE, id="own-cert"),
    pytest.param({"webhook": {"existingCertManagerIssuer": ISSUER}}, NAMESPACE, id="existing-issuer"),
    pytest.param(STORAGE_CLASSES, NAMESPACE, id="storage-classes"),
    pytest.param(PODMONITORS, NAMESPACE, id="podmonitors"),
    pytest.param(PLACEMENT_RESOURCES_IMAGE, NAMESPACE, id="placement-resources-image"),
    pytest.param({"lvmd": {"managed": True}}, NAMESPACE, id="lvmd-managed"),
    pytest.param({"node": {"lvmdEmbedded": True}}, NAMESPACE, id="lvmd-embedded"),
    pytest.param(MINIMAL_CONTROLLER, NAMESPACE, id="single-controller-no-capacity-no-snapshot"),
    pytest.param({"namespace": {"create": False}}, "storage", id="other-namespace"),
    pytest.param({"node": {"kubeletWorkDirectory": MICROK8S_KUBELET}}, NAMESPACE, id="kubelet-dir"),
]


@dataclass(frozen=True)
class Rendering:
    docs: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        (doc,) = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        return doc

    def names(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.of(kind)}

    def container(self, kind: str, name: str, container: str) -> dict[str, Any]:
        (found,) = [c for c in self.one(kind, name)["spec"]["template"]["spec"]["containers"] if c["name"] == container]
        return found

    def rules(self, kind: str) -> list[dict[str, Any]]:
        return [rule for d in self.of(kind) for rule in d.get("rules", [])]


@pytest.fixture(scope="module")
def helm() -> Path:
    return controlplane.binary_or_skip("helm")


def run_helm(helm: Path, *args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(helm), *args, "--values", "-"]
    return subprocess.run(argv, input=json.dumps(values or {}), capture_output=True, text=True, check=False)


def render(helm: Path, values: dict[str, Any], namespace: str = NAMESPACE) -> Rendering:
    done = run_helm(helm, "template", "topolvm", str(CHART), "--namespace", namespace, values=values)
    assert done.returncode == 0, done.stderr
    return Rendering([d for d in yaml.safe_load_all(done.stdout) if d])


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    """A control plane of its own, with the CRDs of every kind the chart renders (only dry runs reach it)."""
    binaries = controlplane.binaries_or_skip()
    crd_dirs = deployment.third_party_crd_dirs(CHART_CRDS)
    if isinstance(crd_dirs, str):
        if controlplane.in_ci():
            pytest.fail(f"cannot dry-run the chart in CI: {crd_dirs}", pytrace=False)
        pytest.skip(f"cannot dry-run the chart: {crd_dirs}")
    with ControlPlane(binaries) as cp:
        cp.install_crds()
        for directory in crd_dirs:
            cp.install_crds(directory)
        yield cp


@pytest.mark.parametrize(("values", "namespace"), VALUE_SETS)
def test_lint(helm: Path, values: dict[str, Any], namespace: str) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", namespace, values=values)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("values", "namespace"), VALUE_SETS)
def test_every_rendered_object_is_accepted(
    helm: Path, plane: ControlPlane, values: dict[str, Any], namespace: str
) -> None:
    rendering = render(helm, values, namespace)
    # The release namespace exists before Helm installs (the namespaced dry runs need it); the rest is a dry run.
    code, reply = plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    assert code in (201, 409), reply
    applier = deployment.Applier(plane)
    for doc in rendering.docs:
        stored = applier.apply(doc, dry_run=True)
        assert stored["metadata"]["name"] == doc["metadata"]["name"]
    # Each workload runs as its own ServiceAccount, which the rendering creates.
    for kind in ("Deployment", "DaemonSet"):
        for workload in rendering.of(kind):
            assert workload["spec"]["template"]["spec"]["serviceAccountName"] in rendering.names("ServiceAccount")


@pytest.mark.parametrize(("values", "namespace"), VALUE_SETS)
def test_rendered_configuration_files_load(helm: Path, values: dict[str, Any], namespace: str) -> None:
    """The scheduler's options and lvmd.yaml, as rendered, load with the programs' own loaders."""
    rendering = render(helm, values, namespace)
    for config_map in rendering.of("ConfigMap"):
        data = config_map["data"]
        if "scheduler-options.yaml" in data:
            options = extender_config.from_mapping(yaml.safe_load(data["scheduler-options.yaml"]))
            extender_config.parse_listen(options.listen)
        if "lvmd.yaml" in data:
            assert lvmd_config.parse(data["lvmd.yaml"]).device_classes


def test_default_rendering_is_deploy(helm: Path) -> None:
    """Object for object, parsed (comments aside): so the RBAC that test_deploy_rbac.py checks rule by rule in
    deploy/ is what the chart installs by default."""

    def key(doc: dict[str, Any]) -> tuple[str, str, str]:
        return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]

    rendered = {key(d): d for d in render(helm, {}).docs}
    shipped = {key(d): d for path in deployment.manifest_files() for d in deployment.documents(path)}
    assert rendered.keys() == shipped.keys()
    for k, doc in rendered.items():
        assert doc == shipped[k], k


def test_checked_in_manifests_are_a_fresh_rendering(helm: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(RENDER_SCRIPT), "--check", "--helm", str(helm)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"run scripts/render_manifests.py:\n{done.stdout}{done.stderr}"


def test_default_lvmd_values_are_deploy_lvmd_yaml() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["lvmd"]
    shipped = yaml.safe_load((DEPLOY / "lvmd" / "lvmd.yaml").read_text())
    assert values["deviceClasses"] == shipped["device-classes"]
    assert values["lvcreateOptionClasses"] == shipped["lvcreate-option-classes"]
    assert values["socketName"] == shipped["socket-name"]


def test_scheduler_as_deployment_behind_a_service(helm: Path) -> None:
    r = render(helm, {"scheduler": {"type": "deployment"}})
    assert "topolvm-scheduler" not in r.names("DaemonSet")
    spec = r.one("Deployment", "topolvm-scheduler")["spec"]
    assert spec["replicas"] == 1 and "hostNetwork" not in spec["template"]["spec"]
    options = yaml.safe_load(r.one("ConfigMap", "topolvm-scheduler-options")["data"]["scheduler-options.yaml"])
    assert options["listen"] == ":9251" and options["extender-weight"] == 200
    (port,) = r.one("Service", "topolvm-scheduler")["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (9251, "extender")


def test_scheduler_options(helm: Path) -> None:
    data = render(helm, SCHEDULER_OPTIONS).one("ConfigMap", "topolvm-scheduler-options")["data"]
    options = extender_config.from_mapping(yaml.safe_load(data["scheduler-options.yaml"]))
    assert options.policy.divisors == {"ssd": 2, "hdd": 10} and options.policy.default_divisor == 1
    assert options.policy.tie_break.value == "scheduler" and options.reservation_ttl == 600


def test_capacity_tracking_only_renders_no_extender_nor_webhook(helm: Path) -> None:
    r = render(helm, CAPACITY_TRACKING_ONLY)
    assert r.names("ServiceAccount") == {"topolvm-controller", "topolvm-node"}
    assert not r.of("MutatingWebhookConfiguration") and not r.of("Certificate") and not r.of("Service")
    assert r.one("CSIDriver", "topolvm.io")["spec"]["storageCapacity"] is True


def test_self_signed_webhook_certificate(helm: Path, tmp_path: Path) -> None:
    r = render(helm, SELF_SIGNED)
    assert not r.of("Certificate") and not r.of("Issuer")
    hook = r.one("MutatingWebhookConfiguration", "topolvm-hook")
    assert "annotations" not in hook["metadata"]
    secret = r.one("Secret", "topolvm-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert hook["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (scripts/install-system-deps.sh installs it)")
    for name in ("ca.crt", "tls.crt"):
        (tmp_path / name).write_bytes(base64.b64decode(secret["data"][name]))
    ca, cert = str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")
    verified = subprocess.run(["openssl", "verify", "-CAfile", ca, cert], capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    argv = ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert]
    sans = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert "DNS:topolvm-webhook.topolvm-system.svc" in sans


def test_own_certificate(helm: Path) -> None:
    r = render(helm, OWN_CERT)
    assert not r.of("Certificate") and not r.of("Secret")
    hook = r.one("MutatingWebhookConfiguration", "topolvm-hook")
    assert hook["webhooks"][0]["clientConfig"]["caBundle"] == CA_BUNDLE and "annotations" not in hook["metadata"]
    volumes = r.one("Deployment", "topolvm-webhook")["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "certs", "secret": {"secretName": "my-tls"}}]


def test_existing_cert_manager_issuer(helm: Path) -> None:
    r = render(helm, {"webhook": {"existingCertManagerIssuer": ISSUER}})
    assert not r.of("Issuer") and r.names("Certificate") == {"topolvm-mutatingwebhook"}
    assert r.one("Certificate", "topolvm-mutatingwebhook")["spec"]["issuerRef"] == ISSUER


def test_lvmd_as_a_daemonset(helm: Path) -> None:
    r = render(helm, {"lvmd": {"managed": True}})
    config = lvmd_config.parse(r.one("ConfigMap", "topolvm-lvmd")["data"]["lvmd.yaml"])
    assert [c.name for c in config.device_classes] == ["ssd", "ssd-thin"]
    spec = r.one("DaemonSet", "topolvm-lvmd")["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["automountServiceAccountToken"] is False
    subjects = [s["name"] for d in r.of("RoleBinding") + r.of("ClusterRoleBinding") for s in d["subjects"]]
    assert "topolvm-lvmd" not in subjects  # no API access at all
    node = r.container("DaemonSet", "topolvm-node", "topolvm-node")
    assert "--lvmd-socket=/run/topolvm/lvmd.sock" in node["command"]


def test_lvmd_embedded_in_topolvm_node(helm: Path) -> None:
    r = render(helm, {"node": {"lvmdEmbedded": True}})
    text = r.one("ConfigMap", "topolvm-lvmd")["data"]["lvmd.yaml"]
    assert "socket-name" not in text and lvmd_config.parse(text).device_classes
    assert "topolvm-lvmd" not in r.names("DaemonSet")
    node = r.container("DaemonSet", "topolvm-node", "topolvm-node")
    assert "--lvmd-config=/etc/topolvm/lvmd.yaml" in node["command"]
    assert not [a for a in node["command"] if a.startswith("--lvmd-socket")]
    assert r.one("DaemonSet", "topolvm-node")["spec"]["template"]["spec"]["hostPID"] is True


def test_single_controller_without_capacity_tracking_or_snapshots(helm: Path) -> None:
    r = render(helm, MINIMAL_CONTROLLER)
    pod = r.one("Deployment", "topolvm-controller")["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    assert names == ["topolvm-controller", "csi-provisioner", "csi-resizer", "liveness-probe"]
    args = [a for c in pod["containers"] for a in c.get("args", [])]
    assert not [a for a in args if a.startswith(("--leader-election", "--enable-capacity", "--capacity-ownerref"))]
    granted = {res for rule in r.rules("ClusterRole") + r.rules("Role") for res in rule["resources"]}
    assert not granted & {"leases", "csistoragecapacities", "volumesnapshotcontents/status", "volumesnapshotclasses"}
    assert not r.of("Role") and not r.of("VolumeSnapshotClass")
    assert r.one("CSIDriver", "topolvm.io")["spec"]["storageCapacity"] is False


def test_other_release_namespace(helm: Path) -> None:
    r = render(helm, {"namespace": {"create": False}}, "storage")
    assert not r.of("Namespace")
    namespaced = [d for d in r.docs if "namespace" in d["metadata"]]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"storage"}
    bindings = r.of("ClusterRoleBinding") + r.of("RoleBinding")
    assert {s["namespace"] for d in bindings for s in d["subjects"]} == {"storage"}
    assert all(n.startswith(("storage:", "storage-")) for n in r.names("ClusterRole") | r.names("ClusterRoleBinding"))
    (hook,) = r.one("MutatingWebhookConfiguration", "topolvm-hook")["webhooks"]
    ignored = hook["namespaceSelector"]["matchExpressions"][0]
    assert ignored["key"] == "kubernetes.io/metadata.name"
    assert ignored["values"] == ["kube-system", "topolvm-system", "storage"]
    provisioner = r.container("Deployment", "topolvm-controller", "csi-provisioner")
    assert "--leader-election-namespace=storage" in provisioner["args"]
    assert r.one("Certificate", "topolvm-mutatingwebhook")["spec"]["dnsNames"][-1] == "topolvm-webhook.storage.svc"


def test_storage_and_snapshot_classes(helm: Path) -> None:
    r = render(helm, STORAGE_CLASSES)
    fast = r.one("StorageClass", "topolvm-fast")
    assert fast["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    parameters = {"topolvm.io/device-class": "ssd", "topolvm.io/lvcreate-option-class": "raid1"}
    assert fast["parameters"] == {"csi.storage.k8s.io/fstype": "ext4", **parameters}
    assert (fast["reclaimPolicy"], fast["mountOptions"], fast["allowVolumeExpansion"]) == ("Retain", ["noatime"], False)
    assert not r.one("StorageClass", "topolvm-block").get("parameters")
    assert r.one("VolumeSnapshotClass", "thin")["deletionPolicy"] == "Retain"


def test_podmonitors(helm: Path) -> None:
    assert not render(helm, {}).of("PodMonitor")
    r = render(helm, PODMONITORS)
    assert r.names("PodMonitor") == {"topolvm-controller", "topolvm-node"}
    for monitor in r.of("PodMonitor"):
        workload = monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        kind = "Deployment" if workload == "topolvm-controller" else "DaemonSet"
        ports = {p["name"] for p in r.container(kind, workload, workload)["ports"]}
        assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports
    assert r.one("PodMonitor", "topolvm-node")["metadata"]["labels"] == {"release": "prom"}


def test_placement_resources_and_image(helm: Path) -> None:
    r = render(helm, PLACEMENT_RESOURCES_IMAGE)
    placed = [("Deployment", "topolvm-controller"), ("DaemonSet", "topolvm-node"), ("Deployment", "topolvm-webhook")]
    for kind, name in placed:
        pod = r.one(kind, name)["spec"]["template"]["spec"]
        assert (pod["nodeSelector"], pod["tolerations"]) == (PLACED["nodeSelector"], PLACED["tolerations"])
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        main = pod["containers"][0]
        assert (main["image"], main["imagePullPolicy"]) == ("registry.example/topolvm-py:0.2.0", "IfNotPresent")
    scheduler = r.one("DaemonSet", "topolvm-scheduler")["spec"]["template"]["spec"]
    assert scheduler["nodeSelector"] == {"cp": "yes"} and scheduler["tolerations"][0]["effect"] == "NoSchedule"
    assert r.container("Deployment", "topolvm-controller", "csi-provisioner")["resources"] == RESOURCES
    assert "resources" not in r.container("Deployment", "topolvm-controller", "csi-resizer")


def test_kubelet_work_directory(helm: Path) -> None:
    kubelet = MICROK8S_KUBELET
    r = render(helm, {"node": {"kubeletWorkDirectory": kubelet}})
    node = r.container("DaemonSet", "topolvm-node", "topolvm-node")
    assert f"--csi-socket={kubelet}/plugins/topolvm.io/node/csi-topolvm.sock" in node["command"]
    assert f"--allowed-target-prefix={kubelet}/" in node["command"]
    paths = {v["hostPath"]["path"] for v in r.one("DaemonSet", "topolvm-node")["spec"]["template"]["spec"]["volumes"]}
    assert {f"{kubelet}/plugins_registry/", f"{kubelet}/pods/", f"{kubelet}/plugins/topolvm.io/node"} <= paths


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"controller": {"leaderElection": {"enabled": False}}}, "leaderElection", id="no-election"),
        pytest.param({"node": {"lvmdEmbedded": True}, "lvmd": {"managed": True}}, "two lvmd", id="two-lvmd"),
        pytest.param({"webhook": {"selfSigned": True}}, "choose one", id="cert-manager-and-self-signed"),
        pytest.param({"scheduler": {"type": "static"}}, "daemonset or deployment", id="scheduler-type"),
    ],
)
def test_contradictory_values_are_refused(helm: Path, values: dict[str, Any], message: str) -> None:
    done = run_helm(helm, "template", "topolvm", str(CHART), "--namespace", NAMESPACE, values=values)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_install_and_upgrade_keep_the_self_signed_certificate(helm: Path, plane: ControlPlane, tmp_path: Path) -> None:
    """A real `helm install` and `helm upgrade` against the apiserver (nothing runs the pods): the release
    namespace made by --create-namespace, the chart's objects stored, and the self-signed pair kept on upgrade."""
    namespace = "helm-install"
    homes = {f"HELM_{d}_HOME": str(tmp_path / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}
    env = {"PATH": "/usr/bin:/bin", **homes}
    common = [str(CHART), "-n", namespace, "--kubeconfig", plane.kubeconfig, "--values", "-"]
    values = json.dumps({"namespace": {"create": False}, **SELF_SIGNED})

    def helm_run(*args: str) -> None:
        done = subprocess.run([str(helm), *args], input=values, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    def webhook_tls() -> tuple[str, str]:
        code, secret = plane.request("GET", f"/api/v1/namespaces/{namespace}/secrets/topolvm-webhook-tls")
        assert code == 200, secret
        path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/topolvm-hook"
        code, hook = plane.request("GET", path)
        assert code == 200, hook
        assert hook["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        return secret["data"]["tls.crt"], secret["data"]["ca.crt"]

    helm_run("install", "topolvm", *common, "--create-namespace")
    installed = webhook_tls()
    code, controller = plane.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/topolvm-controller")
    assert code == 200 and controller["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    helm_run("upgrade", "topolvm", *common)
    assert webhook_tls() == installed
    helm_run("uninstall", "topolvm", "-n", namespace, "--kubeconfig", plane.kubeconfig)
    code, _ = plane.request("GET", f"/api/v1/namespaces/{namespace}/secrets/topolvm-webhook-tls")
    assert code == 404
