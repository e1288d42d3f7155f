"""deploy/ applied to a real kube-apiserver, and identities to act as its ServiceAccounts.

Used by tests/integration/conftest.py (fixture ``deployed``) and the tests of deploy/: manifests are stored by
server-side apply (not a dry run), ServiceAccount tokens come from the TokenRequest API (real bound tokens, so
the apiserver itself derives the user ``system:serviceaccount:<ns>:<name>`` and its groups), and access checks
are SelfSubjectAccessReviews sent with those tokens. Stdlib plus PyYAML; no kubectl.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import peers
from tests.support.controlplane import ControlPlane

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAMESPACE = "topolvm-system"
SERVICE_ACCOUNTS = ("topolvm-controller", "topolvm-node", "topolvm-scheduler", "topolvm-webhook")
FIELD_MANAGER = "topolvm-tests"
# Third-party CRDs deploy/ refers to, copied out of their Go modules by `ci/peers/build.sh crds`.
THIRD_PARTY_CRDS = ("external-snapshotter", "cert-manager")


def manifest_files() -> list[Path]:
    """Every file an operator applies: deploy/manifests (namespace first) and the cert-manager TLS option."""
    manifests = sorted((DEPLOY / "manifests").glob("*.yaml"), key=lambda p: (p.name != "namespace.yaml", p.name))
    return [*manifests, *sorted((DEPLOY / "tls").glob("*.yaml"))]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def third_party_crd_dirs(names: tuple[str, ...] = THIRD_PARTY_CRDS) -> list[Path] | str:
    """The CRD directories of ``names`` (deploy/'s: ``THIRD_PARTY_CRDS``), or why they are missing (with the
    command that makes them)."""
    root = peers.peers_bin_dir().parent / "crds"
    dirs = [root / name for name in names]
    missing = [str(d) for d in dirs if not any(d.glob("*.yaml"))]
    if missing:
        return f"no CRDs in {', '.join(missing)}; fetch them with: ci/peers/build.sh crds"
    return dirs


class ApplyError(AssertionError):
    pass


@dataclass(frozen=True)
class _Resource:
    plural: str
    namespaced: bool


class Applier:
    """Server-side apply of manifests, finding each kind's REST path by discovery (cached per group/version)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._kinds: dict[str, dict[str, _Resource]] = {}

    def _resource(self, api_version: str, kind: str) -> _Resource:
        if api_version not in self._kinds:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            code, reply = self.plane.request("GET", base)
            if code != 200:
                raise ApplyError(f"discovery of {api_version}: HTTP {code}: {reply.get('message')}")
            self._kinds[api_version] = {
                r["kind"]: _Resource(r["name"], r["namespaced"]) for r in reply["resources"] if "/" not in r["name"]
            }
        return self._kinds[api_version][kind]

    def path(self, doc: dict[str, Any]) -> str:
        resource = self._resource(doc["apiVersion"], doc["kind"])
        base = "/api/v1" if doc["apiVersion"] == "v1" else f"/apis/{doc['apiVersion']}"
        meta = doc["metadata"]
        scope = f"/namespaces/{meta['namespace']}" if resource.namespaced else ""
        return f"{base}{scope}/{resource.plural}/{meta['name']}"

    def apply(self, doc: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply of ``doc``; with ``dry_run`` the apiserver validates and admits it but stores nothing."""
        path = self.path(doc) + f"?fieldManager={FIELD_MANAGER}&force=true" + ("&dryRun=All" if dry_run else "")
        code, reply = self.plane.request("PATCH", path, doc, content_type="application/apply-patch+yaml")
        if code not in (200, 201):
            raise ApplyError(f"{doc['kind']} {doc['metadata']['name']}: HTTP {code}: {reply.get('message')}")
        return reply

    def apply_files(self, paths: Iterable[Path]) -> list[dict[str, Any]]:
        return [self.apply(doc) for path in paths for doc in documents(path)]


def service_account_token(plane: ControlPlane, name: str, namespace: str = NAMESPACE) -> str:
    """A bound token of ServiceAccount ``namespace/name`` from the TokenRequest API (the SA must exist)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    code, reply = plane.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body)
    if code != 201:
        raise ApplyError(f"TokenRequest for {namespace}/{name}: HTTP {code}: {reply.get('message')}")
    return str(reply["status"]["token"])


def write_kubeconfig(plane: ControlPlane, token: str, path: Path) -> str:
    """A kubeconfig for ``token`` against ``plane`` (its CA); returns the path as a string."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": plane.url, "certificate-authority": plane.ca_file}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "sa"}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return str(path)


@dataclass(frozen=True)
class Access:
    """One request a component makes (or must never make): verb on group/resource[/subresource] in a namespace
    ("" = cluster-wide or cluster-scoped)."""

    verb: str
    resource: str
    group: str = ""
    namespace: str = ""
    subresource: str = ""

    def __str__(self) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.group or 'core'}/{what}{where}"


def allowed(plane: ControlPlane, token: str, access: Access) -> bool:
    """Whether the token's identity may do ``access``, as the apiserver's authorizer answers a
    SelfSubjectAccessReview sent with that token (every authenticated user may send one)."""
    attributes = {
        "verb": access.verb,
        "group": access.group,
        "resource": access.resource,
        "subresource": access.subresource,
        "namespace": access.namespace,
    }
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    code, reply = plane.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body, token=token)
    if code != 201:
        raise ApplyError(f"SelfSubjectAccessReview {access}: HTTP {code}: {reply.get('message')}")
    return bool(reply["status"].get("allowed"))


def whoami(plane: ControlPlane, token: str) -> dict[str, Any]:
    """The user the apiserver sees behind ``token`` (SelfSubjectReview)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    code, reply = plane.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body, token=token)
    if code != 201:
        raise ApplyError(f"SelfSubjectReview: HTTP {code}: {reply.get('message')}")
    user: dict[str, Any] = reply["status"]["userInfo"]
    return user


def wait_for(predicate: Any, what: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
