"""The processes of ``tests.support.cluster.Cluster`` besides the control plane: how kube-controller-manager,
kube-scheduler and kwok are started (argv, identity, readiness probe), and the helpers they share."""

from __future__ import annotations

import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support import deployment
from tests.support.cluster_peers import (
    CONTROLLERS,
    KUBE_CONTROLLER_MANAGER,
    KUBE_SCHEDULER,
    KUBELET_CONTROLLERS,
    KWOK,
    SKIP_LOOKUP,
    scheduler_configuration,
)
from tests.support.controlplane import ControlPlaneError

if TYPE_CHECKING:
    from tests.support.cluster import Cluster

# Identities (static tokens): the users the bootstrap RBAC policy binds system:kube-controller-manager and
# system:kube-scheduler (+ system:volume-scheduler) to; kwok's is bound to kwok's ClusterRole by ``bind_kwok_role``.
KCM_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
KWOK_USER = "kwok-controller"

KWOK_LABEL = "kwok.x-k8s.io/node"
ATTACH_DETACH_ANNOTATION = "volumes.kubernetes.io/controller-managed-attach-detach"
KWOK_LABEL_VALUE = "fake"
NODE_LEASE_SECONDS = 40  # kwokctl's: kwok renews each Node's Lease (the heartbeat node-lifecycle watches)
POD_CIDR = "10.244.0.0/16"  # kwok's fake pod IPs (its default /24 has 254); off the service range 10.0.0.0/24

_RBAC = "/apis/rbac.authorization.k8s.io/v1"


class ClusterError(ControlPlaneError):
    pass


def tail(path: Path, chars: int) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def get_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5, context=ctx) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _loopback_tls() -> ssl.SSLContext:
    """For the health endpoints of kube-controller-manager and kube-scheduler: self-signed certificates they
    generate themselves, on 127.0.0.1 only."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class Component:
    """One process of the cluster: its argv (with ``{port}`` filled at each start), log and readiness probe."""

    name: str
    argv: Callable[[int], list[str]]
    ready: Callable[[int], bool]
    env: dict[str, str] | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def kube_controller_manager(self: Cluster) -> Component:
    kubeconfig = self.kubeconfigs[KUBE_CONTROLLER_MANAGER]
    controllers = (*CONTROLLERS, *KUBELET_CONTROLLERS) if self.kubelets else CONTROLLERS
    # The CA pods trust kube-apiserver with (the kube-root-ca.crt ConfigMap), for real pods only.
    root_ca = [f"--root-ca-file={self.plane.ca_file}"] if self.kubelets else []

    def argv(port: int) -> list[str]:
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            SKIP_LOOKUP,
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kube-controller-manager-certs'}",
            # Each controller as its own ServiceAccount, its token from the TokenRequest API (signed with the
            # apiserver's --service-account-signing-key-file): no --service-account-private-key-file, which
            # only feeds the legacy Secret-token controller (not run, nor the root-CA publisher that
            # --root-ca-file feeds).
            "--use-service-account-credentials=true",
            f"--controllers={','.join(controllers)}",
            *root_ca,
            "--leader-elect=false",
            f"-v={self.verbosity}",
        ]

    return Component(KUBE_CONTROLLER_MANAGER, argv, healthz)


def write_scheduler_config(self: Cluster, changes: dict[str, Any] | None = None) -> Path:
    """kube-scheduler's configuration file in the work dir (``scheduler_configuration``), rewritten by a restart."""
    config_path = self.workdir / "kube-scheduler.yaml"
    config_path.write_text(scheduler_configuration(self.kubeconfigs[KUBE_SCHEDULER], self.extender_url, changes))
    return config_path


def kube_scheduler(self: Cluster) -> Component:
    kubeconfig = self.kubeconfigs[KUBE_SCHEDULER]
    config_path = write_scheduler_config(self)

    def argv(port: int) -> list[str]:
        return [
            str(self.binaries.kube_scheduler),
            f"--config={config_path}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            SKIP_LOOKUP,
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kube-scheduler-certs'}",
            f"-v={self.verbosity}",
        ]

    return Component(KUBE_SCHEDULER, argv, lambda port: healthz(port, "/readyz"))


def kwok(self: Cluster) -> Component:
    assert self.binaries.kwok is not None and self.binaries.kwok_files is not None
    config_path = self.workdir / "kwok.yaml"
    stages = sorted((self.binaries.kwok_files / "stages").glob("*.yaml"))
    config_path.write_text("\n---\n".join(path.read_text().strip() for path in stages) + "\n")
    home = self.workdir / "kwok-home"  # kwok also loads ~/.kwok/kwok.yaml when it exists: not the user's
    home.mkdir(exist_ok=True)

    def argv(port: int) -> list[str]:
        return [
            str(self.binaries.kwok),
            f"--kubeconfig={self.kubeconfigs[KWOK]}",
            f"--config={config_path}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-label-selector={KWOK_LABEL}={KWOK_LABEL_VALUE}",
            f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
            f"--cidr={POD_CIDR}",
            f"--server-address=127.0.0.1:{port}",  # plain HTTP: /healthz
        ]

    return Component(
        KWOK, argv, lambda port: get_ok(f"http://127.0.0.1:{port}/healthz"), env={**os.environ, "HOME": str(home)}
    )


def bind_kwok_role(self: Cluster) -> None:
    assert self.binaries.kwok_files is not None
    (role,) = deployment.documents(self.binaries.kwok_files / "rbac" / "role.yaml")
    name, group = role["metadata"]["name"], "rbac.authorization.k8s.io"
    binding: dict[str, Any] = {
        "apiVersion": f"{group}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": group, "kind": "User", "name": KWOK_USER}],
    }
    for path, body in ((f"{_RBAC}/clusterroles", role), (f"{_RBAC}/clusterrolebindings", binding)):
        code, reply = self.plane.request("POST", path, body)
        if code != 201:
            raise ClusterError(f"creating {body['kind']} {body['metadata']['name']}: HTTP {code}: {reply}")


def healthz(port: int, path: str = "/healthz") -> bool:
    return get_ok(f"https://127.0.0.1:{port}{path}", _loopback_tls())
