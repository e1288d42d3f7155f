"""deploy/'s RBAC, checked by the real authorizer: each ServiceAccount, acting with its own bound token, may do
everything its containers do, and is refused a sample of what none of them needs.

The needs below are written out here, not read from the manifests, so that a manifest missing a rule fails. They
come from each program: our components' API calls (docs/deploy.md), and for the CSI sidecars their upstream
deploy/kubernetes/rbac.yaml (external-provisioner v6 with --enable-capacity and --capacity-ownerref-level=2,
external-resizer v2, external-snapshotter v8 without group snapshots). livenessprobe and
csi-node-driver-registrar make no API calls.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Deployed
from tests.support import deployment
from tests.support.deployment import NAMESPACE, Access

SNAP = "snapshot.storage.k8s.io"
STORAGE = "storage.k8s.io"
LEASES = "coordination.k8s.io"
TOPOLVM = "topolvm.io"
READ = ("get", "list", "watch")


def each(verbs: tuple[str, ...], resource: str, **kw: str) -> list[Access]:
    return [Access(verb, resource, **kw) for verb in verbs]


def leader_election() -> list[Access]:
    return each(("get", "list", "watch", "create", "update"), "leases", group=LEASES, namespace=NAMESPACE)


TOPOLVM_CONTROLLER = [
    *each((*READ, "create", "update", "patch", "delete"), "logicalvolumes", group=TOPOLVM),
    Access("get", "logicalvolumes", group=TOPOLVM, subresource="status"),
    *each((*READ, "update", "patch"), "nodes"),
    *each((*READ, "delete"), "persistentvolumeclaims", namespace="app"),
    *each(READ, "persistentvolumes"),
    *each(("create", "patch"), "events", namespace="default"),
    *each(("get", "list", "watch", "create", "update", "patch"), "leases", group=LEASES, namespace=NAMESPACE),
]
CSI_PROVISIONER = [
    *each((*READ, "create", "patch", "delete"), "persistentvolumes"),
    *each((*READ, "update"), "persistentvolumeclaims", namespace="app"),
    *each(READ, "storageclasses", group=STORAGE),
    *each(("create", "update", "patch"), "events", namespace="app"),
    *each((*READ, "update"), "volumesnapshots", group=SNAP, namespace="app"),
    *each(("get", "list"), "volumesnapshotcontents", group=SNAP),
    *each(READ, "csinodes", group=STORAGE),
    *each(READ, "nodes"),
    *leader_election(),
    *each((*READ, "create", "update", "patch", "delete"), "csistoragecapacities", group=STORAGE, namespace=NAMESPACE),
    Access("get", "pods", namespace=NAMESPACE),  # --capacity-ownerref-level=2: pod, then ...
    Access("get", "replicasets", group="apps", namespace=NAMESPACE),  # ... its ReplicaSet, then the Deployment
]
CSI_RESIZER = [
    *each((*READ, "patch"), "persistentvolumes"),
    *each(READ, "persistentvolumeclaims", namespace="app"),
    Access("patch", "persistentvolumeclaims", namespace="app", subresource="status"),
    *each(READ, "pods", namespace="app"),
    *each(("create", "update", "patch"), "events", namespace="app"),
    *each(READ, "volumeattributesclasses", group=STORAGE),
    *leader_election(),
]
CSI_SNAPSHOTTER = [
    *each(("create", "update", "patch"), "events", namespace="app"),
    *each(READ, "volumesnapshotclasses", group=SNAP),
    *each((*READ, "update", "patch"), "volumesnapshotcontents", group=SNAP),
    *each(("update", "patch"), "volumesnapshotcontents", group=SNAP, subresource="status"),
    *leader_election(),
]
TOPOLVM_NODE = [
    *each((*READ, "update", "patch"), "logicalvolumes", group=TOPOLVM),
    *each(("get", "update", "patch"), "logicalvolumes", group=TOPOLVM, subresource="status"),
    *each((*READ, "update", "patch"), "nodes"),
    *each(("create", "patch"), "events", namespace="default"),
]
TOPOLVM_SCHEDULER = [*each(READ, "nodes"), *each(READ, "pods"), *each(READ, "persistentvolumeclaims")]
TOPOLVM_WEBHOOK = [
    *each(READ, "persistentvolumeclaims"),
    *each(READ, "storageclasses", group=STORAGE),
    *each(READ, "namespaces"),
]

NEEDS = {
    "topolvm-controller": {
        "topolvm-controller": TOPOLVM_CONTROLLER,
        "csi-provisioner": CSI_PROVISIONER,
        "csi-resizer": CSI_RESIZER,
        "csi-snapshotter": CSI_SNAPSHOTTER,
    },
    "topolvm-node": {"topolvm-node": TOPOLVM_NODE},
    "topolvm-scheduler": {"topolvm-scheduler": TOPOLVM_SCHEDULER},
    "topolvm-webhook": {"topolvm-webhook": TOPOLVM_WEBHOOK},
}

# What each must not do: writes that belong to another component, anything on Secrets, reach outside its
# namespace for namespaced objects it only needs at home.
SECRETS = [Access(verb, "secrets", namespace=ns) for verb in READ for ns in ("", NAMESPACE, "kube-system")]
FORBIDDEN = {
    "topolvm-controller": [
        *SECRETS,
        Access("update", "logicalvolumes", group=TOPOLVM, subresource="status"),  # the node agent's to write
        Access("create", "csistoragecapacities", group=STORAGE, namespace="default"),
        Access("update", "leases", group=LEASES, namespace="kube-system"),
        Access("delete", "nodes"),
        Access("delete", "pods", namespace="app"),
        Access("update", "pods", namespace="app"),
        Access("list", "volumeattachments", group=STORAGE),  # no PUBLISH_UNPUBLISH_VOLUME: not watched
        Access("list", "volumegroupsnapshotcontents", group="groupsnapshot.storage.k8s.io"),
        Access("create", "volumesnapshots", group=SNAP, namespace="app"),  # users' objects
        Access("update", "storageclasses", group=STORAGE),
    ],
    "topolvm-node": [
        *SECRETS,
        Access("create", "logicalvolumes", group=TOPOLVM),
        Access("delete", "logicalvolumes", group=TOPOLVM),
        Access("delete", "nodes"),
        Access("get", "persistentvolumeclaims", namespace="app"),
        Access("delete", "persistentvolumeclaims", namespace="app"),
        Access("list", "pods"),
        Access("create", "persistentvolumes"),
        Access("update", "leases", group=LEASES, namespace=NAMESPACE),
    ],
    "topolvm-scheduler": [
        *SECRETS,
        Access("patch", "nodes"),
        Access("update", "nodes"),
        Access("update", "pods", namespace="app"),
        Access("create", "pods", namespace="app", subresource="binding"),
        Access("delete", "persistentvolumeclaims", namespace="app"),
        Access("list", "logicalvolumes", group=TOPOLVM),
        Access("create", "events", namespace="app"),
    ],
    "topolvm-webhook": [
        *SECRETS,
        Access("patch", "nodes"),
        Access("update", "nodes"),
        Access("patch", "pods", namespace="app"),
        Access("delete", "persistentvolumeclaims", namespace="app"),
        Access("update", "namespaces"),
        Access("list", "logicalvolumes", group=TOPOLVM),
        Access("update", "mutatingwebhookconfigurations", group="admissionregistration.k8s.io"),
    ],
}


def cases(table: dict[str, dict[str, list[Access]]]) -> list[Any]:
    return [
        pytest.param(sa, needs, id=f"{sa}:{container}") for sa, by in table.items() for container, needs in by.items()
    ]


@pytest.mark.parametrize("service_account", deployment.SERVICE_ACCOUNTS)
def test_tokens_are_the_service_accounts(deployed: Deployed, service_account: str) -> None:
    user = deployment.whoami(deployed.plane, deployed.tokens[service_account])
    assert user["username"] == f"system:serviceaccount:{NAMESPACE}:{service_account}"
    assert {"system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated"} <= set(
        user["groups"]
    )
    assert "system:masters" not in user["groups"]


@pytest.mark.parametrize(("service_account", "needs"), cases(NEEDS))
def test_each_container_may_do_what_it_needs(deployed: Deployed, service_account: str, needs: list[Access]) -> None:
    token = deployed.tokens[service_account]
    refused = [str(a) for a in needs if not deployment.allowed(deployed.plane, token, a)]
    assert refused == []


@pytest.mark.parametrize("service_account", deployment.SERVICE_ACCOUNTS)
def test_each_service_account_is_refused_what_it_does_not_need(deployed: Deployed, service_account: str) -> None:
    token = deployed.tokens[service_account]
    granted = [str(a) for a in FORBIDDEN[service_account] if deployment.allowed(deployed.plane, token, a)]
    assert granted == []


def test_a_service_account_without_bindings_gets_none_of_it(deployed: Deployed) -> None:
    """The control for the checks above: an unbound ServiceAccount is refused what the bound ones are allowed,
    so an "allowed" answer comes from deploy/'s bindings, not from a permissive authorizer."""
    code, _ = deployed.plane.request(
        "POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", {"metadata": {"name": "nobody"}}
    )
    assert code in (201, 409)
    token = deployment.service_account_token(deployed.plane, "nobody")
    everything = [a for by in NEEDS.values() for needs in by.values() for a in needs]
    granted = {str(a) for a in everything if deployment.allowed(deployed.plane, token, a)}
    assert granted == set()
