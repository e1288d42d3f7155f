"""The webhook's TLS without cert-manager (scripts/webhook_tls.py), and the webhook under its own ServiceAccount
called by the real kube-apiserver through deploy/'s MutatingWebhookConfiguration: pods with TopoLVM volumes are
mutated; kube-system, topolvm-system and opted-out pods never reach it, so they are created even while the
webhook is down (failurePolicy: Fail applies to everything else).

The configuration's clientConfig is switched from the Service (nothing routes Service IPs here) to the
webhook's loopback URL; its selectors, rules and policy are deploy/'s as applied.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Deployed, logs_without_403, new_namespace
from tests.support import deployment, processes
from tests.support.controlplane import ControlPlane
from tests.support.driver import Processes
from topolvm import constants

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "webhook_tls.py"
NS = deployment.NAMESPACE
SERVICE_NAME = f"topolvm-webhook.{NS}.svc"
HOOK = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/topolvm-hook"


def run_script(deployed: Deployed, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), f"--kubeconfig={deployed.plane.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def tls_secret(deployed: Deployed) -> dict[str, bytes]:
    code, secret = deployed.plane.request("GET", f"/api/v1/namespaces/{NS}/secrets/topolvm-webhook-tls")
    assert code == 200 and secret["type"] == "kubernetes.io/tls"
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


@dataclass(frozen=True)
class Webhook:
    plane: ControlPlane
    port: int
    ca_file: Path

    def healthy(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))  # verifies the chain and 127.0.0.1
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/healthz", timeout=2, context=context) as r:
                return bool(r.status == 200)
        except OSError:
            return False


@pytest.fixture(scope="module")
def webhook(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (scripts/install-system-deps.sh installs it)")
    first = run_script(deployed, "--extra-san=IP:127.0.0.1")
    assert "written" in first.stdout and "caBundle" in first.stdout
    data = tls_secret(deployed)
    work = tmp_path_factory.mktemp("webhook")
    for name, content in data.items():
        (work / name).write_bytes(content)
    port = processes.free_port()
    procs = Processes(work)
    procs.start(
        "topolvm.webhook.cli", f"--cert={work / 'tls.crt'}", f"--key={work / 'tls.key'}",
        f"--listen=127.0.0.1:{port}", f"--kubeconfig={deployed.kubeconfigs['topolvm-webhook']}", log="webhook",
    )  # fmt: skip
    hook = Webhook(deployed.plane, port, work / "ca.crt")
    deployment.wait_for(hook.healthy, "the webhook to serve /healthz over TLS")
    original = deployed.plane.request("GET", HOOK)[1]["webhooks"][0]["clientConfig"]
    patch = [
        {"op": "remove", "path": "/webhooks/0/clientConfig/service"},
        {"op": "add", "path": "/webhooks/0/clientConfig/url", "value": f"https://127.0.0.1:{port}/pod/mutate"},
    ]
    code, reply = deployed.plane.request("PATCH", HOOK, patch, content_type="application/json-patch+json")
    assert code == 200, reply
    try:
        yield hook
    finally:
        procs.stop_all()
        restore = [{"op": "replace", "path": "/webhooks/0/clientConfig", "value": original}]
        deployed.plane.request("PATCH", HOOK, restore, content_type="application/json-patch+json")
        logs_without_403(procs.logs())


def test_script_stores_the_secret_and_the_ca_bundle_and_keeps_a_valid_one(deployed: Deployed, webhook: Webhook) -> None:
    data = tls_secret(deployed)
    code, hook = deployed.plane.request("GET", HOOK)
    assert code == 200
    assert base64.b64decode(hook["webhooks"][0]["clientConfig"]["caBundle"]) == data["ca.crt"]
    # The serving certificate is for the Service the apiserver calls, signed by that CA.
    context = ssl.create_default_context(cafile=str(webhook.ca_file))
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", webhook.port), timeout=5), server_hostname=SERVICE_NAME
    ) as tls:
        assert tls.version() is not None
    again = run_script(deployed)
    assert "kept" in again.stdout and tls_secret(deployed) == data


def pvc(namespace: str, name: str, size: str) -> dict[str, Any]:
    spec = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "topolvm-provisioner",
        "resources": {"requests": {"storage": size}},
    }
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def pod_body(claim: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": f"p-{uuid.uuid4().hex[:6]}", "labels": labels or {}},
        "spec": {
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def create_pod(deployed: Deployed, namespace: str, labels: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    code, reply = deployed.plane.request(
        "POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", pvc(namespace, "data", "3Gi")
    )
    assert code in (201, 409), reply
    return deployed.plane.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod_body("data", labels))


def mutated(pod: dict[str, Any]) -> bool:
    requests = pod["spec"]["containers"][0].get("resources", {}).get("requests", {})
    return constants.CAPACITY_RESOURCE in requests


def test_apiserver_sends_application_pods_and_they_get_their_capacity(deployed: Deployed, webhook: Webhook) -> None:
    namespace = new_namespace(deployed.plane, f"app-{uuid.uuid4().hex[:6]}")
    code, pod = create_pod(deployed, namespace)
    assert code == 201, pod
    assert mutated(pod)
    assert pod["metadata"]["annotations"][constants.capacity_annotation("")] == str(3 << 30)


@pytest.mark.parametrize(
    ("namespace", "labels"),
    [("kube-system", None), (NS, None), ("opted-out", None), ("app-pod-opt-out", {"topolvm.io/webhook": "ignore"})],
    ids=["kube-system", "topolvm-system", "namespace-opt-out", "pod-opt-out"],
)
def test_excluded_pods_are_created_even_with_the_webhook_down(
    deployed: Deployed, webhook: Webhook, namespace: str, labels: dict[str, str] | None
) -> None:
    if namespace == "opted-out":
        new_namespace(deployed.plane, namespace, {"topolvm.io/webhook": "ignore"})
    elif namespace.startswith("app-"):
        new_namespace(deployed.plane, namespace)
    with stopped(webhook):
        code, pod = create_pod(deployed, namespace, labels)
        assert code == 201, pod
        assert not mutated(pod)
        # The control: the same request in an ordinary namespace is refused while the webhook is down.
        ordinary = new_namespace(deployed.plane, f"app-{uuid.uuid4().hex[:6]}")
        code, reply = create_pod(deployed, ordinary)
        assert code == 500 and "pod-hook.topolvm.io" in reply.get("message", ""), reply


@contextlib.contextmanager
def stopped(webhook: Webhook) -> Iterator[None]:
    """The webhook unreachable: the configuration points at a closed port (refused at once, where a stopped
    process would make every call wait for the 10 s timeout), then back at the webhook."""
    set_url(webhook, processes.free_port())
    try:
        yield
    finally:
        set_url(webhook, webhook.port)


def set_url(webhook: Webhook, port: int) -> None:
    patch = [{"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": f"https://127.0.0.1:{port}/pod/mutate"}]
    code, reply = webhook.plane.request("PATCH", HOOK, patch, content_type="application/json-patch+json")
    assert code == 200, reply
