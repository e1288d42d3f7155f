"""The Helm chart deploy/helm/topolvm: `helm lint` and `helm template` for the default values and a matrix of
value sets (tests/support/helm_chart.py), every rendered object accepted by a real kube-apiserver (server-side
apply, dry run, with the CRDs the objects need), the configuration files it renders loadable by our programs, the
default rendering equal to deploy/ and deploy/manifests generated from it, and a real install and upgrade.
helm is the peer built by `ci/peers/build.sh helm`: missing, these tests skip outside CI and fail in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import deployment, helm_chart, peers, prerequisites
from tests.support.controlplane import ControlPlane
from topolvm.extender import config as extender_config
from topolvm.lvmd import config as lvmd_config

# The value sets of tests/support/helm_chart.py, and our own sidecars in place of upstream's.
VALUE_SETS = [
    *helm_chart.VALUE_SETS,
    pytest.param({"image": {"csi": {"builtinSidecars": True}}}, deployment.NAMESPACE, id="builtin-sidecars"),
]


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    """A control plane of its own, with the CRDs of every kind the chart renders (only dry runs reach it)."""
    binaries = peers.binaries_or_skip()
    crd_dirs = deployment.third_party_crd_dirs(helm_chart.CHART_CRDS)
    if isinstance(crd_dirs, str):
        prerequisites.missing(f"cannot dry-run the chart: {crd_dirs}", ci=f"cannot dry-run the chart in CI: {crd_dirs}")
    with ControlPlane(binaries) as cp:
        cp.install_crds()
        for directory in crd_dirs:
            cp.install_crds(directory)
        yield cp


@pytest.mark.parametrize(("values", "namespace"), VALUE_SETS)
def test_lint(helm: Path, values: dict[str, Any], namespace: str) -> None:
    done = helm_chart.run_helm(helm, "lint", "--strict", str(helm_chart.CHART), "--namespace", namespace, values=values)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("values", "namespace"), VALUE_SETS)
def test_every_rendered_object_is_accepted(
    helm: Path, plane: ControlPlane, values: dict[str, Any], namespace: str
) -> None:
    rendering = helm_chart.render(helm, values, namespace)
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
    rendering = helm_chart.render(helm, values, namespace)
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

    rendered = {key(d): d for d in helm_chart.render(helm, {}).docs}
    shipped = {key(d): d for path in deployment.manifest_files() for d in deployment.documents(path)}
    assert rendered.keys() == shipped.keys()
    for k, doc in rendered.items():
        assert doc == shipped[k], k


def test_checked_in_manifests_are_a_fresh_rendering(helm: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(helm_chart.RENDER_SCRIPT), "--check", "--helm", str(helm)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"run scripts/render_manifests.py:\n{done.stdout}{done.stderr}"


def test_install_and_upgrade_keep_the_self_signed_certificate(helm: Path, plane: ControlPlane, tmp_path: Path) -> None:
    """A real `helm install` and `helm upgrade` against the apiserver (nothing runs the pods): the release
    namespace made by --create-namespace, the chart's objects stored, and the self-signed pair kept on upgrade."""
    namespace = "helm-install"
    homes = {f"HELM_{d}_HOME": str(tmp_path / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **homes}  # helm caches discovery under $HOME/.kube
    common = [str(helm_chart.CHART), "-n", namespace, "--kubeconfig", plane.kubeconfig, "--values", "-"]
    values = json.dumps({"namespace": {"create": False}, **helm_chart.SELF_SIGNED})

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
