"""What the end-to-end ``Cluster`` (tests/support/cluster.py) runs besides the control plane, and how: finding
kube-controller-manager, kube-scheduler, kwok and kwok's files (built by ci/peers/build.sh), the controllers
kube-controller-manager runs, and kube-scheduler's configuration (deploy/scheduler-config.yaml as shipped)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import peers
from tests.support.peers import Binaries

KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
KUBE_SCHEDULER = "kube-scheduler"
KWOK = "kwok"
KWOK_FILES_HINT = "copy them with: ci/peers/build.sh kwok"
SCHEDULER_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "scheduler-config.yaml"

# kube-controller-manager's controllers for the storage flow (kwok Nodes), as Cluster runs it.
CONTROLLERS = (
    "persistentvolume-binder-controller",
    "persistentvolume-expander-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "node-lifecycle-controller",  # removes the not-ready taint of a Ready Node; marks silent Nodes unreachable
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    "replicaset-controller",
    "deployment-controller",
    "statefulset-controller",
)
# What a cluster of real kubelets and pods needs on top (tests/support/hil_node.py): DaemonSets, the
# kube-root-ca.crt ConfigMap every pod's projected token volume mounts, Endpoints/EndpointSlices (kube-apiserver
# reaches the webhook through them), attach/detach bookkeeping, and the PVCs of generic ephemeral volumes.
KUBELET_CONTROLLERS = (
    "daemonset-controller",
    "root-ca-certificate-publisher-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "persistentvolume-attach-detach-controller",
    "ephemeral-volume-controller",
)

# The apiserver has no client CA nor request-header CA, so it publishes no extension-apiserver-authentication
# ConfigMap: without this the controllers' delegated authentication logs its absence again and again. Bearer
# tokens still work on their secure ports (TokenReview, then SubjectAccessReview).
SKIP_LOOKUP = "--authentication-skip-lookup=true"


def kwok_files_dir() -> Path:
    """kwok's Stages (``stages/*.yaml``) and ClusterRole (``rbac/role.yaml``), copied by ``ci/peers/build.sh kwok``."""
    return peers.peers_bin_dir().parent / "kwok-files"


@dataclass(frozen=True)
class ClusterBinaries:
    control_plane: Binaries
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path | None  # None: a cluster of real kubelets (tests/support/hil_node.py) runs no kwok
    kwok_files: Path | None


def find_cluster_binaries() -> ClusterBinaries | str:
    """Every binary and kwok file the cluster needs, or the reasons the missing ones cannot be found."""
    plane = peers.find_binaries()
    found = {name: peers.find_binary(name) for name in (KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KWOK)}
    files = kwok_files_dir()
    problems = [reason for reason in (plane, *found.values()) if isinstance(reason, str)]
    if not any((files / "stages").glob("*.yaml")) or not (files / "rbac" / "role.yaml").is_file():
        problems.append(f"no kwok Stages in {files}/stages or no {files}/rbac/role.yaml; {KWOK_FILES_HINT}")
    if problems:
        return "; ".join(problems)
    assert isinstance(plane, Binaries)
    paths = {name: path for name, path in found.items() if isinstance(path, Path)}
    return ClusterBinaries(plane, paths[KUBE_CONTROLLER_MANAGER], paths[KUBE_SCHEDULER], paths[KWOK], files)


def scheduler_configuration(
    kubeconfig: str, extender_url: str | None = None, changes: Mapping[str, Any] | None = None
) -> str:
    """deploy/scheduler-config.yaml as shipped, with the scheduler's kubeconfig, no leader election (one
    instance), when given another ``urlPrefix`` for its extender, and top-level fields set by ``changes``
    (``{"parallelism": 1}``: one filter goroutine, docs/fidelity.md)."""
    (config,) = [doc for doc in yaml.safe_load_all(SCHEDULER_CONFIG.read_text()) if doc]
    config.update(changes or {})
    if extender_url is not None:
        (extender,) = config["extenders"]
        extender["urlPrefix"] = extender_url
    config["clientConnection"] = {"kubeconfig": kubeconfig}
    config["leaderElection"] = {"leaderElect": False}
    return yaml.safe_dump(config)
