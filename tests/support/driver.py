"""Real topolvm-controller, topolvm-node and topolvm-lvmd processes for integration tests, started from their
CLIs against a real kube-apiserver and a loop-device VG, with logs under one work directory.

Used by tests/integration/test_crash_safety.py (kill points via ``tests.support.crashing``) and
tests/integration/test_deploy_processes.py (each process under its own ServiceAccount's kubeconfig).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import kubernetes

from tests.support import loopvg
from topolvm import constants
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc

GiB = 1 << 30
Mode = csi.VolumeCapability.AccessMode


class Processes:
    """Python modules run as processes (``python -m MODULE ARGS``), each logging to WORK/<log>.log; stopped
    together by ``stop_all`` (SIGTERM, then SIGKILL after 15 s)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        module: str,
        *args: str,
        crash_after: str | None = None,
        wait_for: Path | None = None,
        log: str | None = None,
    ) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", module, *args]
        if crash_after:
            argv = [sys.executable, "-m", "tests.support.crashing", module, crash_after, "--", *args]
        log_path = self.work / f"{log or module.rsplit('.', 1)[-1]}.log"
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log_path.open("ab"))
        self.procs.append(proc)
        if wait_for is not None:
            deadline = time.monotonic() + 30
            while not wait_for.is_socket():
                assert proc.poll() is None and time.monotonic() < deadline, f"{module} did not start"
                time.sleep(0.05)
        return proc

    def logs(self) -> list[Path]:
        return sorted(self.work.glob("*.log"))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            if proc.poll() is None:
                proc.kill()


class Env(Processes):
    """The processes of one test. They authenticate with ``controller_kubeconfig`` / ``node_kubeconfig``
    (default: the plane's admin); the Node object is made with the admin's, as kubelet would make it."""

    def __init__(
        self,
        plane: Any,
        vg: loopvg.LoopVg,
        work: Path,
        *,
        controller_kubeconfig: str | None = None,
        node_kubeconfig: str | None = None,
    ) -> None:
        super().__init__(work)
        self.plane, self.vg = plane, vg
        self.controller_kubeconfig = controller_kubeconfig or plane.kubeconfig
        self.node_kubeconfig = node_kubeconfig or plane.kubeconfig
        self.node = f"node-{uuid.uuid4().hex[:6]}"
        self.lvmd_yaml = work / "lvmd.yaml"
        config = loopvg.lvm_config()
        self.lvmd_yaml.write_text(
            f"socket-name: {work / 'lvmd.sock'}\n"
            f"device-classes:\n  - {{name: ssd, volume-group: {vg.name}, default: true, spare-gb: 0}}\n"
            "lvm-command-prefix: []\n" + (f"lvm-config: '{config}'\n" if config else "")
        )
        api = kubernetes.config.new_client_from_config(config_file=plane.kubeconfig)
        kubernetes.client.CoreV1Api(api).create_node({"metadata": {"name": self.node}})
        api.close()

    def controller(self, crash_after: str | None = None) -> subprocess.Popen[bytes]:
        sock = self.work / "ctl.sock"
        sock.unlink(missing_ok=True)
        return self.start(
            "topolvm.cmd.controller", f"--csi-socket={sock}", f"--kubeconfig={self.controller_kubeconfig}",
            "--create-timeout=5", crash_after=crash_after, wait_for=sock,
        )  # fmt: skip

    def node_agent(self, *lvmd_args: str, crash_after: str | None = None) -> subprocess.Popen[bytes]:
        sock = self.work / "node.sock"
        sock.unlink(missing_ok=True)
        return self.start(
            "topolvm.cmd.node", f"--csi-socket={sock}", f"--node-name={self.node}",
            f"--kubeconfig={self.node_kubeconfig}", f"--allowed-target-prefix={self.work}", *lvmd_args,
            crash_after=crash_after, wait_for=None if crash_after else sock,
        )  # fmt: skip

    def lvmd(self, *args: str, crash_after: str | None = None) -> subprocess.Popen[bytes]:
        sock = self.work / "lvmd.sock"
        sock.unlink(missing_ok=True)
        return self.start(
            "topolvm.lvmd.cli", f"--config={self.lvmd_yaml}", "--refresh-interval=0", *args,
            crash_after=crash_after, wait_for=sock,
        )  # fmt: skip

    def wait_for_capacity(self) -> None:
        """Until the node agent has published this node's capacity (placement needs it)."""
        api = kubernetes.config.new_client_from_config(config_file=self.plane.kubeconfig)
        try:
            deadline = time.monotonic() + 30
            while constants.capacity_annotation("ssd") not in (
                kubernetes.client.CoreV1Api(api).read_node(self.node).metadata.annotations or {}
            ):
                assert time.monotonic() < deadline, "the node agent never published capacity"
                time.sleep(0.1)
        finally:
            api.close()

    def create_volume(self, name: str, timeout: float = 60) -> csi.Volume:
        """CreateVolume as external-provisioner does: retry on UNAVAILABLE/DEADLINE until it succeeds."""
        req = csi.CreateVolumeRequest(
            name=name,
            capacity_range=csi.CapacityRange(required_bytes=GiB),
            volume_capabilities=[
                csi.VolumeCapability(
                    access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER), mount=csi.VolumeCapability.MountVolume()
                )
            ],
            parameters={constants.DEVICE_CLASS_PARAMETER: "ssd"},
            accessibility_requirements=csi.TopologyRequirement(
                requisite=[csi.Topology(segments={constants.TOPOLOGY_NODE_KEY: self.node})]
            ),
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with grpc.insecure_channel(f"unix:{self.work / 'ctl.sock'}") as channel:
                    return csi_grpc.ControllerStub(channel).CreateVolume(req, timeout=10).volume
            except grpc.RpcError as exc:
                if (
                    exc.code()
                    not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                    )
                    or time.monotonic() > deadline
                ):
                    raise
                time.sleep(0.5)

    def lvs(self) -> list[str]:
        out = self.vg.runner.run("lvs", ["--noheadings", "-o", "lv_name", "--", self.vg.name]).stdout
        return sorted(line.strip() for line in out.splitlines() if line.strip())
