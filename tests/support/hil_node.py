"""A one-node Kubernetes cluster inside the HIL VM: containerd, runc, a real kubelet, and the control plane.

Guest-only (``TOPOLVM_HIL_GUEST=1``, the VM booted with the node profile disk of ``harness/node_profile.py``).
``HilNode().start()``:

1. mounts the profile disk (serial ``hil-node``) at /opt/hil-node, read-only;
2. prepares the VM as a node: cgroup v2, ``/`` rshared (Bidirectional mount propagation for the CSI node
   plugin), a dummy interface ``kv0`` with the node's address and a default route (kubelet needs an address),
   a tmpfs for containerd's state (the root image has no room for the images);
3. starts containerd (CRI, runc without systemd cgroups, the bridge CNI on ``hil_node_config.POD_SUBNET``) and
   imports the profile's images in the background while
4. the control plane starts (``Cluster(kubelets=True)``: etcd, kube-apiserver on the node's address with the
   Node authorizer, kube-controller-manager, kube-scheduler with deploy/scheduler-config.yaml), then
5. one iptables rule stands in for kube-proxy: the ``kubernetes`` Service's address (what pods' in-cluster
   config dials) goes to kube-apiserver (webhooks are reached at their pods' addresses: aggregator routing);
6. kubelet, as ``system:node:hil`` (group system:nodes, Node authorizer and NodeRestriction), registers the
   Node; once Ready it is labelled control-plane (topolvm-scheduler's DaemonSet runs beside kube-scheduler).

Logs of every process are in ``workdir`` (containerd.log, kubelet.log and the cluster's).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import node_profile
from tests.support import deployment, hil_node_config
from tests.support.cluster import Cluster, ClusterError
from tests.support.cluster_peers import ClusterBinaries
from tests.support.hil_node_config import CONTAINERD_ROOT, CONTAINERD_SOCKET, NODE_IP
from tests.support.peers import Binaries

PROFILE_SERIAL = node_profile.SERIAL
PROFILE_MOUNT = Path(node_profile.MOUNT_POINT)
WORKLOAD_IMAGE = node_profile.WORKLOAD_IMAGE
NODE_NAME = "hil"
NODE_PREFIX = 24
GATEWAY = "192.168.200.1"  # nothing answers there: a default route kubelet can pick the node address from
SERVICE_IP = "10.0.0.1"  # the first address of controlplane.SERVICE_CLUSTER_IP_RANGE: the kubernetes Service
KUBELET_ROOT = Path("/var/lib/kubelet")
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


class NodeError(RuntimeError):
    pass


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip() or result.stdout}")
    return result


def profile_device() -> str | None:
    for block in sorted(Path("/sys/block").glob("vd*")):
        serial = block / "serial"
        if serial.exists() and serial.read_text().strip() == PROFILE_SERIAL:
            return f"/dev/{block.name}"
    return None


def mount_profile() -> Path:
    """The profile disk, mounted read-only (``noload``: no journal replay on a read-only device)."""
    if (PROFILE_MOUNT / "profile.json").exists():
        return PROFILE_MOUNT
    device = profile_device()
    if device is None:
        raise NodeError(f"no disk with serial {PROFILE_SERIAL}: boot the VM with the node profile (--node)")
    PROFILE_MOUNT.mkdir(parents=True, exist_ok=True)
    run("mount", "-o", "ro,noload", device, str(PROFILE_MOUNT))
    return PROFILE_MOUNT


def prepare_host() -> None:
    """What a node's OS provides before kubelet starts (see the module docstring)."""
    cgroup = Path("/sys/fs/cgroup")
    if not (cgroup / "cgroup.controllers").exists():
        run("mount", "-t", "cgroup2", "none", str(cgroup))
    controllers = (cgroup / "cgroup.controllers").read_text().split()
    (cgroup / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in controllers))
    run("mount", "--make-rshared", "/")
    for module in ("overlay", "bridge", "veth", "br_netfilter"):
        run("modprobe", module, check=False)
    run("ip", "link", "set", "lo", "up")
    if run("ip", "link", "show", "kv0", check=False).returncode != 0:
        run("ip", "link", "add", "kv0", "type", "dummy")
        run("ip", "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", "kv0")
        run("ip", "link", "set", "kv0", "up")
        run("ip", "route", "add", "default", "via", GATEWAY, "dev", "kv0")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    machine_id = Path("/etc/machine-id")
    if not machine_id.exists() or not machine_id.read_text().strip():
        machine_id.write_text(secrets.token_hex(16) + "\n")
    CONTAINERD_ROOT.mkdir(parents=True, exist_ok=True)
    if run("mountpoint", "-q", str(CONTAINERD_ROOT), check=False).returncode != 0:
        run("mount", "-t", "tmpfs", "-o", "mode=0711", "tmpfs", str(CONTAINERD_ROOT))
    KUBELET_ROOT.mkdir(parents=True, exist_ok=True)


class HilNode:
    """The node; ``start()``/``stop()`` or a context manager. ``cluster`` is the ``Cluster`` (admin requests,
    ``plane.url``...), ``profile`` the profile.json of the mounted disk."""

    def __init__(self, workdir: Path, start_timeout: float = 300.0, images: set[str] | None = None) -> None:
        """``images``: the references pods will run (``normalized``); the profile's others are not imported (each
        costs seconds of emulated CPU). None imports all."""
        self.images = images
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        self.profile_dir = mount_profile()
        self.profile: dict[str, Any] = json.loads((self.profile_dir / "profile.json").read_text())
        missing = (images or set()) - {normalized(entry["reference"]) for entry in self.profile["images"]}
        if missing:  # kubelet could only try to pull them, and the VM has no network: say so now
            raise NodeError(
                f"images not on the node profile disk: {', '.join(sorted(missing))} (harness/node_profile.py "
                "puts the chart's image.csi sidecars, topolvm-py, pause and the workload image there)"
            )
        bins = self.profile_dir / "bin"
        binaries = ClusterBinaries(
            Binaries(etcd=bins / "etcd", kube_apiserver=bins / "kube-apiserver"),
            bins / "kube-controller-manager",
            bins / "kube-scheduler",
            kwok=None,
            kwok_files=None,
        )
        self.cluster = Cluster(
            binaries, workdir, address=NODE_IP, kubelets=True, start_timeout=start_timeout, verbosity=1
        )
        self._kubelet_token = secrets.token_hex(16)
        self.cluster.plane.add_token(self._kubelet_token, f"system:node:{NODE_NAME}", ("system:nodes",))
        self._containerd: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}

    def __enter__(self) -> HilNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- lifecycle

    def start(self) -> HilNode:
        started = time.monotonic()
        try:
            prepare_host()
            self._start_containerd()
            imported: list[BaseException] = []
            importer = threading.Thread(target=self._import_images, args=(imported,), name="image-import")
            importer.start()
            self.cluster.start()
            self.timings["control_plane_s"] = time.monotonic() - started
            self._route_service()
            importer.join()
            if imported:
                raise imported[0]
            self.timings["images_s"] = self._images_s
            self._start_kubelet()
            self._wait_node_ready()
            self.timings["node_ready_s"] = time.monotonic() - started
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop kubelet and the control plane (the cluster's processes), then containerd. Pods' containers die
        with the VM."""
        self.cluster.stop()
        if self._containerd is not None and self._containerd.poll() is None:
            self._containerd.terminate()
            try:
                self._containerd.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._containerd.kill()

    def _start_containerd(self) -> None:
        config = self.workdir / "containerd.toml"
        config.write_text(hil_node_config.containerd_config(str(self.profile["pause_image"])))
        net = Path("/etc/cni/net.d")
        net.mkdir(parents=True, exist_ok=True)
        (net / "10-hil.conflist").write_text(hil_node_config.cni_config())
        with (self.workdir / "containerd.log").open("ab") as log:
            self._containerd = subprocess.Popen(
                ["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._wait(
            lambda: run("ctr", "--address", CONTAINERD_SOCKET, "version", check=False).returncode == 0, "containerd"
        )

    def _import_images(self, errors: list[BaseException]) -> None:
        started = time.monotonic()
        try:
            always = {self.profile["pause_image"], self.profile["workload_image"]}
            for entry in self.profile["images"]:
                if self.images is not None and normalized(entry["reference"]) not in self.images | always:
                    continue
                self.import_image(entry)
        except BaseException as error:  # reported by start()
            errors.append(error)
        self._images_s = time.monotonic() - started

    def import_image(self, entry: dict[str, Any]) -> None:
        """One image of the profile (an entry of profile.json's "images") into containerd, timed."""
        begin = time.monotonic()
        run("ctr", "--address", CONTAINERD_SOCKET, "-n", "k8s.io", "image", "import",
            str(self.profile_dir / entry["archive"]))  # fmt: skip
        self.timings[f"import {entry['reference']}"] = time.monotonic() - begin

    def _route_service(self) -> None:
        """kube-proxy's one rule this node needs: the kubernetes Service to kube-apiserver, for pods (PREROUTING)
        and host-network pods (OUTPUT)."""
        target = f"{NODE_IP}:{self.cluster.plane.port}"
        for chain in ("PREROUTING", "OUTPUT"):
            run(
                "iptables",
                "-t",
                "nat",
                "-A",
                chain,
                "-d",
                f"{SERVICE_IP}/32",
                "-p",
                "tcp",
                "--dport",
                "443",
                "-j",
                "DNAT",
                "--to-destination",
                target,
            )

    def _start_kubelet(self) -> None:
        kubeconfig = deployment.write_kubeconfig(
            self.cluster.plane, self._kubelet_token, self.workdir / "kubelet.kubeconfig"
        )
        config = self.workdir / "kubelet.yaml"

        def argv(port: int) -> list[str]:
            config.write_text(json.dumps(hil_node_config.kubelet_config(port), indent=2))
            return [
                str(self.profile_dir / "bin" / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
                f"--root-dir={KUBELET_ROOT}",
                "-v=2",
            ]

        def ready(port: int) -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        self.cluster.run("kubelet", argv, ready)

    def _wait_node_ready(self) -> None:
        def ready() -> bool:
            node = self.cluster.get(f"/api/v1/nodes/{NODE_NAME}")
            if node is None:
                return False
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            return conditions.get("Ready") == "True"

        self._wait(ready, f"Node {NODE_NAME} Ready")
        patch = {"metadata": {"labels": {CONTROL_PLANE_LABEL: ""}}}
        code, reply = self.cluster.request(
            "PATCH", f"/api/v1/nodes/{NODE_NAME}", patch, content_type="application/merge-patch+json"
        )
        if code != 200:
            raise NodeError(f"labelling Node {NODE_NAME}: HTTP {code}: {reply.get('message')}")

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            problems = self.cluster.problems()
            if self._containerd is not None and self._containerd.poll() is not None:
                problems.append(f"containerd exited with {self._containerd.returncode}")
            if problems:
                raise NodeError(f"waiting for {what}: {'; '.join(problems)}\n{self.cluster.log_tails(2000)}")
            if ready():
                return
            time.sleep(0.5)
        raise ClusterError(
            f"timed out after {self.start_timeout:.0f}s waiting for {what}\n{self.cluster.log_tails(2000)}"
        )

    def log_tails(self, chars: int = 3000) -> str:
        return self.cluster.log_tails(chars)


def normalized(reference: str) -> str:
    """An image reference as containerd names it: ``topolvm-py:0.1.0`` is ``docker.io/library/topolvm-py:0.1.0``."""
    first, _, rest = reference.partition("/")
    if not rest:
        return f"docker.io/library/{reference}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{reference}"
    return reference


def images_of(docs: list[dict[str, Any]]) -> set[str]:
    """The (normalized) images of every container and init container of the workloads in ``docs``."""
    found = set()
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
            found.add(normalized(container["image"]))
    return found


def env_files() -> Path:
    """$TOPOLVM_HIL_FILES: host files shipped with the job (the rendered chart)."""
    return Path(os.environ.get("TOPOLVM_HIL_FILES", "/job/files"))
