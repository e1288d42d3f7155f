"""The Helm chart deploy/helm/topolvm as the tests render it: `helm template` into parsed objects, and the value
sets every chart test renders (tests/integration/test_helm_chart.py lints and dry-runs each,
tests/integration/test_helm_values.py checks what each value changes). helm is the peer built by
`ci/peers/build.sh helm` (the ``helm`` fixture of tests/integration/conftest.py finds it)."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import deployment
from tests.support.deployment import DEPLOY, NAMESPACE

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
    """The objects of one `helm template`, parsed, looked up by kind and name."""

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


def run_helm(helm: Path, *args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """``helm *args`` with ``values`` given on stdin (JSON is YAML); the result, whatever the exit code."""
    argv = [str(helm), *args, "--values", "-"]
    return subprocess.run(argv, input=json.dumps(values or {}), capture_output=True, text=True, check=False)


def render(helm: Path, values: dict[str, Any], namespace: str = NAMESPACE) -> Rendering:
    """`helm template topolvm` of the chart with ``values`` into ``namespace``; fails the test if helm refuses."""
    done = run_helm(helm, "template", "topolvm", str(CHART), "--namespace", namespace, values=values)
    assert done.returncode == 0, done.stderr
    return Rendering([d for d in yaml.safe_load_all(done.stdout) if d])
