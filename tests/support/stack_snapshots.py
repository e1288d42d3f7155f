"""What the end-to-end stack needs for CSI snapshots beyond deploy/: the cluster's snapshot-controller (one per
cluster, an add-on operators install beside any CSI driver, as upstream TopoLVM expects), run as its own
ServiceAccount with the RBAC external-snapshotter ships (copied out of its module by
``ci/peers/build.sh snapshot-controller``), and thin-pool nodes.

Thin pools need device-mapper, which this host's kernel lacks (lvm2 refuses to create one with activation
disabled), so a node with a thin pool runs lvmd's real gRPC service over in-memory LVM
(``python -m tests.support.memory_lvmd``) from the same lvmd.yaml; the node agent, the controller and the sidecars
are the real programs. Real thin LVs on real device-mapper are the HIL VM's (tests/hil).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support import deployment, peers
from tests.support.cluster import Cluster, ClusterError
from tests.support.cluster_components import get_ok

SNAPSHOT_CONTROLLER = "snapshot-controller"
SNAPSHOT_CONTROLLER_NAMESPACE = "kube-system"  # where external-snapshotter's manifests put it
THIN_CLASS = "ssd-thin"  # deploy/'s topolvm-provisioner-thin StorageClass asks for this device class
THIN_POOL = "pool0"


def rbac_file() -> Path | str:
    """external-snapshotter's rbac-snapshot-controller.yaml, or why it is missing."""
    path = peers.peers_bin_dir().parent / "snapshot-controller-files" / "rbac-snapshot-controller.yaml"
    return path if path.is_file() else f"no {path}; fetch it with: ci/peers/build.sh snapshot-controller"


def missing() -> list[str]:
    reasons = [found for found in (peers.find_binary(SNAPSHOT_CONTROLLER),) if isinstance(found, str)]
    rbac = rbac_file()
    return [*reasons, rbac] if isinstance(rbac, str) else reasons


def start_snapshot_controller(
    cluster: Cluster, work: Path, binary: Path | str | None = None, rbac: Path | str | None = None
) -> None:
    """Apply its RBAC (ServiceAccount, ClusterRole, leader-election Role and their bindings) and run it with
    that ServiceAccount's token and leader election, as external-snapshotter's Deployment does. ``binary`` and
    ``rbac`` default to the peers' (the HIL node passes its profile disk's)."""
    rbac = rbac or rbac_file()
    binary = binary or peers.find_binary(SNAPSHOT_CONTROLLER)
    if isinstance(rbac, str) or isinstance(binary, str):
        raise ClusterError("; ".join(missing()))
    applier = deployment.Applier(cluster.plane)
    for doc in deployment.documents(rbac):
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            doc["metadata"].setdefault("namespace", SNAPSHOT_CONTROLLER_NAMESPACE)
        applier.apply(doc)
    token = deployment.service_account_token(cluster.plane, SNAPSHOT_CONTROLLER, SNAPSHOT_CONTROLLER_NAMESPACE)
    kubeconfig = deployment.write_kubeconfig(cluster.plane, token, work / f"{SNAPSHOT_CONTROLLER}.kubeconfig")
    cluster.run(
        SNAPSHOT_CONTROLLER,
        lambda port: [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            "--leader-election=true",
            f"--leader-election-namespace={SNAPSHOT_CONTROLLER_NAMESPACE}",
            f"--http-endpoint=127.0.0.1:{port}",
            "-v=2",
        ],
        lambda port: get_ok(f"http://127.0.0.1:{port}/healthz/leader-election"),
    )


def thin_lvmd_command(lvmd_yaml: Path, vg: str, vg_bytes: int, pool_bytes: int) -> list[str]:
    """lvmd over in-memory LVM: VG ``vg`` of ``vg_bytes`` with thin pool ``THIN_POOL`` of ``pool_bytes``."""
    return [
        sys.executable,
        "-m",
        "tests.support.memory_lvmd",
        f"--config={lvmd_yaml}",
        f"--vg={vg}={vg_bytes}",
        f"--thin-pool={vg}/{THIN_POOL}={pool_bytes}",
    ]


def thin_lvmd_yaml(socket: Path, vg: str) -> str:
    """lvmd.yaml of a thin node: the default thick class ``ssd`` and the thin class ``THIN_CLASS`` (5x
    overprovisioning, upstream's example ratio), both on ``vg``."""
    return (
        f"socket-name: {socket}\n"
        "device-classes:\n"
        f"  - {{name: ssd, volume-group: {vg}, default: true, spare-gb: 0}}\n"
        f"  - name: {THIN_CLASS}\n"
        f"    volume-group: {vg}\n"
        "    type: thin\n"
        f"    thin-pool: {{name: {THIN_POOL}, overprovision-ratio: 5.0}}\n"
    )
