"""deploy/'s RBAC, checked by the real authorizer: each ServiceAccount, acting with its own bound token, may do
everything its containers do, and is refused a sample of what none of them needs; and the roles of our own
components grant exactly what their code calls, nothing more.

The needs below are written out here, not read from the manifests, so that a manifest missing a rule fails.
Each names where it comes from: for our components the code path that makes the call (every read of an informed
kind is a list and a watch, never a get; every write is a PUT, never a patch), for the CSI sidecars their
upstream deploy/kubernetes/rbac.yaml (external-provisioner v6 with --enable-capacity and
--capacity-ownerref-level=2, external-resizer v2, external-snapshotter v8 without group snapshots).
livenessprobe and csi-node-driver-registrar make no API calls.
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


# topolvm-controller (topolvm.cmd.controller)
TOPOLVM_CONTROLLER = [
    # kube.cache.CachedCluster informs LogicalVolumes: CreateVolume's waits, find_by_volume_id, NodeCleanup
    *each(("list", "watch"), "logicalvolumes", group=TOPOLVM),
    Access("create", "logicalvolumes", group=TOPOLVM),  # services.controller: CreateVolume, CreateSnapshot
    # services.controller: ControllerExpandVolume (size, resize-requested-at); services.cleanup: a dead node's
    # volume loses its finalizer
    Access("update", "logicalvolumes", group=TOPOLVM),
    # services.controller: DeleteVolume, DeleteSnapshot, a failed create; services.cleanup: a dead node's volumes,
    # StrandedVolumeSweeper's stranded ones
    Access("delete", "logicalvolumes", group=TOPOLVM),
    *each(("list", "watch"), "nodes"),  # CachedCluster informs Nodes: placement, GetCapacity, NodeCleanup's trigger
    Access("update", "nodes"),  # services.cleanup.NodeCleanup: removes the topolvm.io/node finalizer
    Access("list", "storageclasses", group=STORAGE),  # NodeCleanup: which classes are TopoLVM's
    # NodeCleanup: the claims whose selected-node is the dead node; StrandedVolumeSweeper: which claims exist
    Access("list", "persistentvolumeclaims"),
    Access("list", "persistentvolumes"),  # StrandedVolumeSweeper: which volumes PVs name
    Access("delete", "persistentvolumeclaims", namespace="app"),  # NodeCleanup: deletes them
]
# external-provisioner's deploy/kubernetes/rbac.yaml, with --enable-capacity and --capacity-ownerref-level=2
CSI_PROVISIONER = [
    *each((*READ, "create", "patch", "delete"), "persistentvolumes"),  # a PV per volume, deleted after DeleteVolume
    *each((*READ, "update"), "persistentvolumeclaims", namespace="app"),  # the claims it provisions for
    *each(READ, "storageclasses", group=STORAGE),  # each claim's class: parameters, binding mode
    *each(("create", "update", "patch"), "events", namespace="app"),  # events on the claims
    *each((*READ, "update"), "volumesnapshots", group=SNAP, namespace="app"),  # restore sources (their finalizer)
    *each(("get", "list"), "volumesnapshotcontents", group=SNAP),  # a restore source's snapshot handle
    *each(READ, "csinodes", group=STORAGE),  # topology: the driver's node IDs and keys
    *each(READ, "nodes"),  # topology: the nodes' labels
    *leader_election(),  # --leader-election
    # --enable-capacity: CSIStorageCapacity objects from GetCapacity, in its own namespace
    *each((*READ, "create", "update", "patch", "delete"), "csistoragecapacities", group=STORAGE, namespace=NAMESPACE),
    Access("get", "pods", namespace=NAMESPACE),  # --capacity-ownerref-level=2: pod, then ...
    Access("get", "replicasets", group="apps", namespace=NAMESPACE),  # ... its ReplicaSet, then the Deployment
]
# external-resizer's deploy/kubernetes/rbac.yaml
CSI_RESIZER = [
    *each((*READ, "patch"), "persistentvolumes"),  # the PV's new size
    *each(READ, "persistentvolumeclaims", namespace="app"),  # claims whose request grew
    Access("patch", "persistentvolumeclaims", namespace="app", subresource="status"),  # their size and conditions
    *each(READ, "pods", namespace="app"),  # whether a claim is in use (online expansion)
    *each(("create", "update", "patch"), "events", namespace="app"),  # events on the claims
    *each(READ, "volumeattributesclasses", group=STORAGE),  # claims' VolumeAttributesClass (modify-volume)
    *leader_election(),  # --leader-election
]
# external-snapshotter's deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml, without group snapshots
CSI_SNAPSHOTTER = [
    *each(("create", "update", "patch"), "events", namespace="app"),  # events on the snapshots
    *each(READ, "volumesnapshotclasses", group=SNAP),  # each content's class: parameters
    *each((*READ, "update", "patch"), "volumesnapshotcontents", group=SNAP),  # the contents it serves (finalizers)
    *each(("update", "patch"), "volumesnapshotcontents", group=SNAP, subresource="status"),  # handle, readiness
    *leader_election(),  # --leader-election
]
# topolvm-node (topolvm.cmd.node)
TOPOLVM_NODE = [
    # CachedCluster informs its node's LogicalVolumes (spec.nodeName field selector): LogicalVolumeReconciler,
    # the orphan collector
    *each(("list", "watch"), "logicalvolumes", group=TOPOLVM),
    Access("update", "logicalvolumes", group=TOPOLVM),  # services.node.LogicalVolumeReconciler: its finalizer
    Access("update", "logicalvolumes", group=TOPOLVM, subresource="status"),  # the reconciler: volumeID, code, size
    Access("get", "nodes"),  # services.cleanup.register_node, services.node.CapacityPublisher (Node not informed)
    Access("update", "nodes"),  # register_node: the topolvm.io/node finalizer; CapacityPublisher: annotations
    Access("create", "events", namespace="default"),  # services.events.VolumeHealthEvents: on LogicalVolumes
]
# topolvm-scheduler (topolvm.extender.kube: KubeCluster.watch lists, then watches)
TOPOLVM_SCHEDULER = [
    *each(("list", "watch"), "nodes"),  # watch_nodes (--watch-nodes): capacity annotations
    *each(("list", "watch"), "pods"),  # watch_pods (--watch-pods): pending pods, status.phase field selector
    *each(("list", "watch"), "persistentvolumeclaims"),  # watch_pods: claims' selected-node
]
# topolvm-webhook (topolvm.webhook.kube.ReadThroughCache: informers, one get on a miss)
TOPOLVM_WEBHOOK = [
    *each(READ, "persistentvolumeclaims"),  # services.admission: the pod's claims
    *each(READ, "storageclasses", group=STORAGE),  # services.admission: their classes (device class, provisioner)
    *each(READ, "namespaces"),  # services.admission: the topolvm.io/webhook=ignore label
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
        Access("patch", "nodes"),  # its writes are PUTs
        Access("patch", "logicalvolumes", group=TOPOLVM),
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
        Access("list", "nodes"),  # it reads its own Node only
        Access("patch", "logicalvolumes", group=TOPOLVM),  # its writes are PUTs
        Access("create", "events", namespace="app"),  # its events are about LogicalVolumes: "default" only
        Access("update", "events", namespace="default"),
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


# The roles of each of our own containers; the sidecars' roles are upstream's, checked by NEEDS above.
OWN_ROLES = {
    ("topolvm-controller", "topolvm-controller"): ("topolvm-system:controller",),
    ("topolvm-node", "topolvm-node"): ("topolvm-system:node", "topolvm-system:node-events"),
    ("topolvm-scheduler", "topolvm-scheduler"): ("topolvm-system:scheduler",),
    ("topolvm-webhook", "topolvm-webhook"): ("topolvm-system:webhook",),
}


def granted_by(role: str) -> set[tuple[str, str, str]]:
    """(verb, group, resource[/subresource]) of every rule of ``role`` in deploy/."""
    rules = [
        rule
        for path in deployment.manifest_files()
        for doc in deployment.documents(path)
        if doc["kind"] in ("ClusterRole", "Role") and doc["metadata"]["name"] == role
        for rule in doc.get("rules", [])
    ]
    assert rules, f"no role {role} in deploy/"
    return {(v, g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.mark.parametrize(("service_account", "container"), list(OWN_ROLES), ids=[c for _, c in OWN_ROLES])
def test_our_roles_grant_exactly_what_our_code_calls(service_account: str, container: str) -> None:
    needed = {
        (a.verb, a.group, f"{a.resource}/{a.subresource}" if a.subresource else a.resource)
        for a in NEEDS[service_account][container]
    }
    granted = set().union(*(granted_by(role) for role in OWN_ROLES[service_account, container]))
    assert sorted(granted - needed) == []  # granted, but nothing calls it
    assert sorted(needed - granted) == []


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
