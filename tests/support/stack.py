"""TopoLVM deployed on the end-to-end ``Cluster`` (tests/support/cluster.py): deploy/ applied, our programs and
upstream's CSI sidecar running as the manifests run them, each under its own ServiceAccount's token.

What runs, and how it differs from a real cluster (kwok has no kubelet and no containers, so the containers of
deploy/'s Deployments and DaemonSets run here as processes on this host, with the manifests' commands):

- deploy/manifests applied by server-side apply, except its Deployments and DaemonSets (their containers are the
  processes below); the LogicalVolume CRD, the snapshot CRDs; the webhook's TLS by scripts/webhook_tls.py (as
  docs/deploy.md says without cert-manager), and the MutatingWebhookConfiguration's clientConfig pointed at the
  webhook's loopback URL (nothing routes Service IPs here);
- **topolvm-controller** + **csi-provisioner**, **csi-resizer**, **csi-snapshotter** (built by ``ci/peers/build.sh``)
  on one CSI socket, all as ServiceAccount topolvm-controller, with deploy/controller.yaml's flags;
  ``--capacity-ownerref-level=-1`` instead of 2, because no pod of that Deployment exists to walk up from;
- **topolvm-scheduler** (the extender) with the options of deploy/'s ConfigMap, on the URL the cluster's
  kube-scheduler calls (``Cluster(extender_url=...)``), as ServiceAccount topolvm-scheduler;
- **topolvm-webhook** as ServiceAccount topolvm-webhook;
- per Node (``add_node``): a loop-device VG (real lvm2; on this host with activation disabled, metadata only),
  **topolvm-lvmd** on it and **topolvm-node** (ServiceAccount topolvm-node) talking to it, as deploy/node.yaml
  runs them; then what kubelet does when node-driver-registrar registers the plugin: NodeGetInfo on the node's
  CSI socket, the CSINode object with the driver's node ID and topology keys, and the topology labels on the
  Node (written as the admin here: the cluster's authorizer is RBAC only, there is no Node authorizer);
- the cluster's snapshot-controller, and thin nodes whose lvmd runs over in-memory LVM:
  tests/support/stack_snapshots.py.

Needs root (loop devices), lvm2, openssl and the cluster's peers plus the CSI sidecars and snapshot-controller.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import deployment, loopvg, peers, processes, stack_snapshots
from tests.support.cluster import Cluster, ClusterError
from tests.support.cluster_components import get_ok
from tests.support.stack_pods import CSI_PROVISIONER, REPO, as_host, register_plugin, scheduler_options, sidecar_flags
from topolvm import constants
from topolvm.lvmd import client as lvmd_client

CSI_RESIZER = "csi-resizer"
CSI_SNAPSHOTTER = "csi-snapshotter"
# An HTTP 403 in a log line, as a status: "-> 403" (the extender), "(403)" (the kubernetes client), "HTTP 403",
# "status 403", "code: 403". Not a bare 403: a volume ID "403f0ea2-..." or a timestamp's ",403" milliseconds are not.
_REFUSED = re.compile(r"(?:-> |\(|\bHTTP |\bstatus:? |\bcode:? )403\b|forbidden|access denied", re.IGNORECASE)
SIDECARS = (CSI_PROVISIONER, CSI_RESIZER, CSI_SNAPSHOTTER)  # deploy/controller.yaml's, but livenessprobe
WEBHOOK_TLS = REPO / "scripts" / "webhook_tls.py"
HOOK = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/topolvm-hook"
CONTROLLER_REPLICAS = ("a", "b")  # deploy/controller.yaml: replicas: 2
# The stranded volume sweep (upstream #1104) every 2 s for LogicalVolumes older than 20 s, so a test sees it act
# (tests/e2e's stack; benchmarks and the CLI keep deploy/'s defaults, 600 s and 3600 s).
STRANDED_INTERVAL, STRANDED_GRACE = 2, 20
STRANDED_SWEEP = (
    f"--stranded-volume-sweep-interval={STRANDED_INTERVAL}",
    f"--stranded-volume-grace={STRANDED_GRACE}",
)
PROVISIONER_LEASE = "topolvm-io"  # in topolvm-system: csi-lib-utils names it after the driver
WORKLOAD_KINDS = frozenset({"Deployment", "DaemonSet"})
GiB = 1 << 30
Command = Callable[[int], list[str]]


def _bin(name: str) -> str:
    """A console script of this project, from the same environment as the running interpreter."""
    return str(Path(sys.executable).parent / name)


def missing() -> str | None:
    """Why the stack cannot run here, or None."""
    reasons = [r for r in (loopvg.can_run(),) if r]
    reasons += [found for found in map(peers.find_binary, SIDECARS) if isinstance(found, str)]
    reasons += stack_snapshots.missing()
    crds = deployment.third_party_crd_dirs()
    if isinstance(crds, str):
        reasons.append(crds)
    if subprocess.run(["which", "openssl"], capture_output=True, check=False).returncode != 0:
        reasons.append("openssl is not installed (scripts/install-system-deps.sh installs it)")
    return "; ".join(reasons) or None


def _socket_ready(path: Path) -> bool:
    return path.is_socket()


@dataclass
class StackNode:
    name: str
    vg: loopvg.LoopVg | None  # None: a thin node's in-memory LVM
    csi_socket: Path
    lvmd_socket: Path


class Stack:
    """TopoLVM on a started ``Cluster`` whose kube-scheduler calls ``extender_url``. ``start()`` once; then
    ``add_node``; ``stop()`` stops our processes and removes the VGs (the cluster's own stop ends the rest)."""

    def __init__(self, cluster: Cluster, *, controller_args: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.controller_args = controller_args  # extra topolvm-controller flags (tests: STRANDED_SWEEP)
        self.plane = cluster.plane
        self.work = cluster.workdir / "topolvm"
        self.work.mkdir(exist_ok=True)
        self.kubeconfigs: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.nodes: dict[str, StackNode] = {}
        self._vgs = contextlib.ExitStack()

    # --- lifecycle

    def start(self) -> Stack:
        crds = deployment.third_party_crd_dirs()
        if isinstance(crds, str):
            raise ClusterError(crds)
        self.plane.install_crds()
        for directory in crds:
            self.plane.install_crds(directory)
        applier = deployment.Applier(self.plane)
        for path in deployment.manifest_files():
            if path.parent.name != "manifests" or path.name in self.skipped_manifests:
                continue  # deploy/tls: cert-manager's way; scripts/webhook_tls.py here
            for doc in deployment.documents(path):
                if doc["kind"] not in WORKLOAD_KINDS:
                    applier.apply(doc)
        for account in deployment.SERVICE_ACCOUNTS:
            self.tokens[account] = deployment.service_account_token(self.plane, account)
            self.kubeconfigs[account] = deployment.write_kubeconfig(
                self.plane, self.tokens[account], self.work / f"{account}.kubeconfig"
            )
        self._start_services()
        return self

    skipped_manifests: frozenset[str] = frozenset()

    def _start_services(self) -> None:
        self._webhook()
        for replica in CONTROLLER_REPLICAS:
            self.start_controller(replica)
        self._extender()
        stack_snapshots.start_snapshot_controller(self.cluster, self.work)

    def stop(self) -> None:
        """Stop our processes (the node agents first) and remove every VG; idempotent."""
        ours = [c for c in self.cluster.components if c.name.startswith(("topolvm-", *SIDECARS))]
        for component in reversed(ours):
            proc, component.proc = component.proc, None
            if proc is not None:
                processes.stop_process(proc)
        self._vgs.close()

    def refusals(self) -> list[str]:
        """Log lines of our processes and the sidecar where the API server refused a request (403): each runs
        under its ServiceAccount with deploy/'s RBAC, so any refusal is a missing rule."""
        found = []
        for log in sorted(self.cluster.workdir.glob("*.log")):
            if log.name.startswith(("topolvm-", *SIDECARS)):
                for line in log.read_text(errors="replace").splitlines():
                    if _REFUSED.search(line):
                        found.append(f"{log.name}: {line}")
        return found

    # --- deploy/'s workloads as processes

    def _webhook(self) -> None:
        tls = subprocess.run(
            [sys.executable, str(WEBHOOK_TLS), f"--kubeconfig={self.cluster.kubeconfig}", "--extra-san=IP:127.0.0.1"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if tls.returncode != 0:
            raise ClusterError(f"scripts/webhook_tls.py failed: {tls.stderr}")
        code, secret = self.plane.request(
            "GET", f"/api/v1/namespaces/{deployment.NAMESPACE}/secrets/topolvm-webhook-tls"
        )
        if code != 200:
            raise ClusterError(f"no webhook TLS Secret: HTTP {code}")
        certs = self.work / "webhook-certs"
        certs.mkdir(exist_ok=True)
        for key, value in secret["data"].items():
            (certs / key).write_bytes(base64.b64decode(value))
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        component = self.cluster.run(
            "topolvm-webhook",
            lambda port: [
                _bin("topolvm-webhook"),
                f"--cert={certs / 'tls.crt'}",
                f"--key={certs / 'tls.key'}",
                f"--listen=127.0.0.1:{port}",
                f"--kubeconfig={self.kubeconfigs['topolvm-webhook']}",
            ],
            lambda port: get_ok(f"https://127.0.0.1:{port}/healthz", context),
        )
        patch = [
            {"op": "remove", "path": "/webhooks/0/clientConfig/service"},
            {
                "op": "add",
                "path": "/webhooks/0/clientConfig/url",
                "value": f"https://127.0.0.1:{component.port}/pod/mutate",
            },
        ]
        code, reply = self.plane.request("PATCH", HOOK, patch, content_type="application/json-patch+json")
        if code != 200:
            raise ClusterError(f"pointing the webhook configuration at the webhook: HTTP {code}: {reply}")

    def start_controller(self, replica: str) -> None:
        """One replica of deploy/controller.yaml's pod: topolvm-controller and csi-provisioner on one CSI socket,
        as ServiceAccount topolvm-controller. The sidecar runs in a UTS namespace of its own with the replica's
        name as hostname, as a pod has: its leader-election identity is the hostname."""
        pod = f"topolvm-controller-{replica}"
        socket_path = self.work / f"{pod}.sock"
        socket_path.unlink(missing_ok=True)
        kubeconfig = self.kubeconfigs["topolvm-controller"]
        command, env = self._controller_command(socket_path, kubeconfig)
        self.cluster.run(pod, command, lambda port: _socket_ready(socket_path), env=env)
        env = {**os.environ, "NAMESPACE": deployment.NAMESPACE, "POD_NAME": pod}
        for sidecar in SIDECARS:
            binary = peers.find_binary(sidecar)
            if isinstance(binary, str):
                raise ClusterError(binary)
            self.cluster.run(
                f"{sidecar}-{replica}",
                lambda port, binary=binary, sidecar=sidecar: [
                    *as_host(pod),
                    str(binary),
                    f"--csi-address={socket_path}",
                    f"--kubeconfig={kubeconfig}",
                    *sidecar_flags(sidecar),
                    f"--http-endpoint=127.0.0.1:{port}",
                    "-v=2",
                ],
                lambda port: get_ok(f"http://127.0.0.1:{port}/healthz/leader-election"),
                env=env,
            )

    def _controller_command(self, socket_path: Path, kubeconfig: str) -> tuple[Command, dict[str, str] | None]:
        def argv(port: int) -> list[str]:
            return [
                _bin("topolvm-controller"),
                f"--csi-socket={socket_path}",
                f"--kubeconfig={kubeconfig}",
                f"--metrics-address=127.0.0.1:{port}",
                *self.controller_args,
            ]

        return argv, None

    def kill_controller(self, replica: str) -> None:
        """That replica's pod dies: its processes are killed (SIGKILL)."""
        self._kill(f"topolvm-controller-{replica}", *(f"{sidecar}-{replica}" for sidecar in SIDECARS))

    def _kill(self, *names: str) -> None:
        for component in self.cluster.components:
            if component.name in names and component.proc is not None:
                component.proc.kill()
                component.proc.wait()
                component.proc = None

    def restart_extender(self, **changes: Any) -> None:
        """topolvm-scheduler killed and started again with deploy/'s options changed so (``tie_break="scheduler"``
        sets ``tie-break: scheduler``); no changes: as deploy/ ships it. It learns Nodes and pods anew."""
        self._kill("topolvm-scheduler")
        self._extender({key.replace("_", "-"): value for key, value in changes.items()})

    def _extender(self, changes: dict[str, Any] | None = None) -> None:
        if not self.cluster.extender_url:
            raise ClusterError("the cluster's kube-scheduler must be started with extender_url for the extender")
        port = int(self.cluster.extender_url.rsplit(":", 1)[1])
        options = self.work / "scheduler-options.yaml"
        options.write_text(yaml.safe_dump({**yaml.safe_load(scheduler_options()), **(changes or {})}))
        self.cluster.run(
            "topolvm-scheduler",
            lambda _: [
                _bin("topolvm-scheduler"),
                f"--config={options}",
                f"--listen=127.0.0.1:{port}",
                "--watch-nodes",
                "--watch-pods",
                f"--kubeconfig={self.kubeconfigs['topolvm-scheduler']}",
            ],
            lambda _: get_ok(f"http://127.0.0.1:{port}/status"),
        )

    # --- nodes

    def add_node(
        self,
        name: str,
        vg_sizes: tuple[int, ...] = (4 * GiB,),
        labels: dict[str, str] | None = None,
        *,
        thin_pool: int = 0,
    ) -> StackNode:
        """A kwok Node with a VG of ``vg_sizes`` PVs, its lvmd and node agent, registered as kubelet registers a
        CSI plugin; returns once the Node is Ready with its capacity published and its CSINode written. With
        ``thin_pool`` bytes, the VG also holds a thin pool (device class ``ssd-thin``) and lvmd runs over
        in-memory LVM (tests/support/stack_snapshots.py says why)."""
        home = self.work / name
        home.mkdir()
        self.cluster.add_node(name, labels=labels)
        lvmd_socket, csi_socket = home / "lvmd.sock", home / "csi.sock"
        vg: loopvg.LoopVg | None = None
        if thin_pool:
            (home / "lvmd.yaml").write_text(stack_snapshots.thin_lvmd_yaml(lvmd_socket, f"vg-{name}"))
            command = stack_snapshots.thin_lvmd_command(home / "lvmd.yaml", f"vg-{name}", sum(vg_sizes), thin_pool)
            lvmd, lvmd_env = (lambda _: command), {**os.environ, "PYTHONPATH": str(REPO)}
            agent, agent_env = self._agent_command(name, home, csi_socket)
        else:
            vg = self._vgs.enter_context(loopvg.loop_vg(home, vg_sizes))
            (home / "lvmd.yaml").write_text(
                f"socket-name: {lvmd_socket}\n"
                f"device-classes:\n  - {{name: ssd, volume-group: {vg.name}, default: true, spare-gb: 0}}\n"
                f"lvm-command-prefix: [{shutil.which('lvm') or 'lvm'}]\n" + self._lvmd_yaml_extra()
            )
            (lvmd, lvmd_env), (agent, agent_env) = self._node_commands(name, home, lvmd_socket, csi_socket)
        self.cluster.run(f"topolvm-lvmd-{name}", lvmd, lambda _: _socket_ready(lvmd_socket), env=lvmd_env)
        self.cluster.run(f"topolvm-node-{name}", agent, lambda _: _socket_ready(csi_socket), env=agent_env)
        self.cluster.wait_node_ready(name)
        self.cluster.wait_for(
            lambda: constants.capacity_annotation("ssd") in self._node(name)["metadata"].get("annotations", {}),
            f"topolvm-node to publish {name}'s capacity",
        )
        register_plugin(self.cluster, name, csi_socket)
        node = StackNode(name, vg, csi_socket, lvmd_socket)
        self.nodes[name] = node
        return node

    def _lvmd_yaml_extra(self) -> str:
        config = loopvg.lvm_config()
        return f"lvm-config: '{config}'\n" if config else ""

    def _node_commands(
        self, name: str, home: Path, lvmd_socket: Path, csi_socket: Path
    ) -> tuple[tuple[Command, dict[str, str] | None], tuple[Command, dict[str, str] | None]]:
        """(lvmd, node agent): each an argv function of a free port and its environment (None: ours)."""
        lvmd = (lambda _: [_bin("topolvm-lvmd"), f"--config={home / 'lvmd.yaml'}"], None)
        return lvmd, self._agent_command(name, home, csi_socket)

    def _agent_command(self, name: str, home: Path, csi_socket: Path) -> tuple[Command, dict[str, str] | None]:
        def agent(port: int) -> list[str]:
            return [
                _bin("topolvm-node"),
                f"--csi-socket={csi_socket}",
                f"--lvmd-socket={home / 'lvmd.sock'}",
                f"--node-name={name}",
                f"--kubeconfig={self.kubeconfigs['topolvm-node']}",
                f"--allowed-target-prefix={home}",
                f"--metrics-address=127.0.0.1:{port}",
            ]

        return agent, None

    def kill_node_agent(self, name: str) -> None:
        """The node agent's container dies (SIGKILL); lvmd and the Node go on."""
        self._kill(f"topolvm-node-{name}")

    def restart_node_agent(self, name: str) -> None:
        """The kubelet starts the node agent's container again."""
        self.cluster.restart(f"topolvm-node-{name}")

    def kill_node(self, name: str) -> None:
        """The node's machine dies: its lvmd and node agent are killed (SIGKILL). The Node object stays (and
        kwok keeps its Lease fresh) until the test deletes it, as an operator removes a dead node."""
        self._kill(f"topolvm-node-{name}", f"topolvm-lvmd-{name}")

    def _node(self, name: str) -> dict[str, Any]:
        found = self.cluster.get(f"/api/v1/nodes/{name}")
        if found is None:
            raise AssertionError(f"Node {name} is gone")
        return found

    def vg_free(self, name: str) -> int:
        """Node ``name``'s VG free bytes, from lvm2 itself (from lvmd on a thin node's in-memory LVM)."""
        vg = self.nodes[name].vg
        if vg is None:
            with contextlib.closing(lvmd_client.LvmdClient(str(self.nodes[name].lvmd_socket))) as client:
                return client.free_bytes(device_class="ssd")
        out = vg.runner.run("vgs", ["--noheadings", "--units", "b", "--nosuffix", "-o", "vg_free", "--", vg.name])
        return int(out.stdout.strip())

    def lvs(self, name: str) -> dict[str, int]:
        """The LVs of node ``name``'s VG: name -> size in bytes (from lvm2 itself; from lvmd on a thin node, its
        thin LVs included, the pool not)."""
        vg = self.nodes[name].vg
        if vg is None:
            with contextlib.closing(lvmd_client.LvmdClient(str(self.nodes[name].lvmd_socket))) as client:
                classes = ("ssd", stack_snapshots.THIN_CLASS)
                return {lv.name: lv.size for c in classes for lv in client.list_lvs(device_class=c)}
        out = vg.runner.run(
            "lvs", ["--noheadings", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size", "--", vg.name]
        ).stdout
        return {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.strip()}
