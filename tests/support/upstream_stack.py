"""Upstream TopoLVM (hypertopolvm, built by ``ci/peers/build.sh hypertopolvm``) on the end-to-end ``Cluster``, as
the baseline of bench/e2e_bind_bench.py: the same Nodes, VGs, sidecar and manifests as ``Stack`` (ours), with
upstream's programs in place of ours.

Upstream's default mode, Storage Capacity Tracking: its topolvm-controller with ``--enable-webhooks=false``
(no pod webhook, no extender), csi-provisioner with deploy/'s arguments, per Node its lvmd and topolvm-node.
deploy/'s manifests keep upstream's names and formats (docs/compat.md), so the CRD, CSIDriver and StorageClasses
are the ones applied; the webhook configuration is not (there is no webhook). Upstream runs as the cluster's
admin here: the baseline is about latency, and upstream's own RBAC is in its Helm chart, not in deploy/.
Upstream's lvm calls see activation disabled through ``LVM_SYSTEM_DIR`` (an lvm.conf with ``activation = 0``),
as ours do through ``--config``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import loopvg, peers
from tests.support.cluster import ClusterError
from tests.support.stack import CONTROLLER_REPLICAS, Command, Stack

HYPERTOPOLVM = "hypertopolvm"


def _hypertopolvm() -> str:
    found = peers.find_binary(HYPERTOPOLVM)
    if isinstance(found, str):
        raise ClusterError(found)
    return str(found)


class UpstreamStack(Stack):
    skipped_manifests = frozenset({"webhook.yaml", "scheduler.yaml"})

    def _start_services(self) -> None:
        lvm_dir = self.work / "lvm"
        lvm_dir.mkdir(exist_ok=True)
        (lvm_dir / "lvm.conf").write_text((loopvg.lvm_config() or "") + "\n")
        self._lvm_env = {**os.environ, "LVM_SYSTEM_DIR": str(lvm_dir)}
        for replica in CONTROLLER_REPLICAS[:1]:  # controller-runtime's leader election would idle the second
            self.start_controller(replica)

    def _controller_command(self, socket_path: Path, kubeconfig: str) -> tuple[Command, dict[str, str] | None]:
        binary = _hypertopolvm()

        def argv(port: int) -> list[str]:
            return [
                binary,
                "topolvm-controller",
                f"--csi-socket={socket_path}",
                f"--metrics-bind-address=127.0.0.1:{port}",
                "--health-probe-bind-address=0",
                "--enable-webhooks=false",
                "--leader-election=false",
            ]

        return argv, {**os.environ, "KUBECONFIG": self.cluster.kubeconfig}

    def _lvmd_yaml_extra(self) -> str:
        return ""  # activation is set through LVM_SYSTEM_DIR

    def _node_commands(
        self, name: str, home: Path, lvmd_socket: Path, csi_socket: Path
    ) -> tuple[tuple[Command, dict[str, str] | None], tuple[Command, dict[str, str] | None]]:
        binary = _hypertopolvm()

        def lvmd(port: int) -> list[str]:
            return [binary, "lvmd", f"--config={home / 'lvmd.yaml'}", f"--metrics-bind-address=127.0.0.1:{port}"]

        def agent(port: int) -> list[str]:
            return [
                binary,
                "topolvm-node",
                f"--csi-socket={csi_socket}",
                f"--lvmd-socket={lvmd_socket}",
                f"--nodename={name}",
                f"--metrics-bind-address=127.0.0.1:{port}",
            ]

        env = {**os.environ, "KUBECONFIG": self.cluster.kubeconfig, "NODE_NAME": name}
        return (lvmd, self._lvm_env), (agent, env)
