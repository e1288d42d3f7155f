"""Crash safety with real processes: kill -9 at the worst moments, restart, and the request completes with
exactly one LV — no duplicate, nothing leaked (issue 4, item 10).

Real pieces: etcd + kube-apiserver (``kube_api``), ``topolvm-controller`` and ``topolvm-node`` processes, lvmd
embedded in the node agent or as its own ``topolvm-lvmd`` daemon, lvm2 on a loop-device VG (metadata only on
this host). Kill points are injected by ``tests.support.crashing``, which SIGKILLs a process right after a
chosen call returns.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import kubernetes
import pytest

from tests.support import loopvg
from topolvm import constants
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc

pytestmark = pytest.mark.root
GiB = 1 << 30
Mode = csi.VolumeCapability.AccessMode


class Env:
    def __init__(self, plane: Any, vg: loopvg.LoopVg, work: Path) -> None:
        self.plane, self.vg, self.work = plane, vg, work
        self.node = f"node-{uuid.uuid4().hex[:6]}"
        self.procs: list[subprocess.Popen[bytes]] = []
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

    def start(
        self, module: str, *args: str, crash_after: str | None = None, wait_for: Path | None = None
    ) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", module, *args]
        if crash_after:
            argv = [sys.executable, "-m", "tests.support.crashing", module, crash_after, "--", *args]
        proc = subprocess.Popen(argv, stderr=(self.work / f"{module.rsplit('.', 1)[-1]}.log").open("ab"))
        self.procs.append(proc)
        if wait_for is not None:
            deadline = time.monotonic() + 30
            while not wait_for.is_socket():
                assert proc.poll() is None and time.monotonic() < deadline, f"{module} did not start"
                time.sleep(0.05)
        return proc

    def controller(self, crash_after: str | None = None) -> subprocess.Popen[bytes]:
        sock = self.work / "ctl.sock"
        sock.unlink(missing_ok=True)
        return self.start(
            "topolvm.cmd.controller", f"--csi-socket={sock}", f"--kubeconfig={self.plane.kubeconfig}",
            "--create-timeout=5", crash_after=crash_after, wait_for=sock,
        )  # fmt: skip

    def node_agent(self, *lvmd_args: str, crash_after: str | None = None) -> subprocess.Popen[bytes]:
        sock = self.work / "node.sock"
        sock.unlink(missing_ok=True)
        return self.start(
            "topolvm.cmd.node", f"--csi-socket={sock}", f"--node-name={self.node}",
            f"--kubeconfig={self.plane.kubeconfig}", f"--allowed-target-prefix={self.work}", *lvmd_args,
            crash_after=crash_after, wait_for=None if crash_after else sock,
        )  # fmt: skip

    def lvmd(self, crash_after: str | None = None) -> subprocess.Popen[bytes]:
        sock = self.work / "lvmd.sock"
        sock.unlink(missing_ok=True)
        return self.start(
            "topolvm.lvmd.cli", f"--config={self.lvmd_yaml}", "--refresh-interval=0",
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

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def env(kube_api: Any, tmp_path: Path) -> Iterator[Env]:
    kube_api.install_crds()
    work = Path(tempfile.mkdtemp(prefix="tlvm-crash-", dir="/tmp"))
    with loopvg.loop_vg(tmp_path, (4 * GiB,)) as vg:
        e = Env(kube_api, vg, work)
        try:
            yield e
        finally:
            e.stop_all()
            for log in sorted(work.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")
            subprocess.run(["rm", "-rf", "--", str(work)], check=False)


def test_node_agent_killed_after_lvcreate_adopts_its_lv(env: Env) -> None:
    env.controller()
    dying = env.node_agent(f"--lvmd-config={env.lvmd_yaml}", crash_after="topolvm.services.lvmd:LvmdService.create_lv")
    env.wait_for_capacity()
    with pytest.raises(grpc.RpcError):  # the agent dies before it can report; CreateVolume times out
        env.create_volume("pvc-crash-node", timeout=8)
    assert dying.wait(timeout=30) == -9
    made = env.lvs()
    assert len(made) == 1  # lvcreate did happen
    env.node_agent(f"--lvmd-config={env.lvmd_yaml}")
    vol = env.create_volume("pvc-crash-node")
    assert vol.volume_id == made[0] and env.lvs() == made  # adopted, not duplicated


def test_lvmd_killed_after_lvcreate(env: Env) -> None:
    env.controller()
    dying = env.lvmd(crash_after="topolvm.lvm.cli:LvmCli.create_lv")
    env.node_agent(f"--lvmd-socket={env.work / 'lvmd.sock'}")
    env.wait_for_capacity()
    with pytest.raises(grpc.RpcError):
        env.create_volume("pvc-crash-lvmd", timeout=8)
    assert dying.wait(timeout=30) == -9
    made = env.lvs()
    assert len(made) == 1
    env.lvmd()  # systemd restarts it; the agent's retry finds the LV already there
    vol = env.create_volume("pvc-crash-lvmd")
    assert vol.volume_id == made[0] and env.lvs() == made


def test_controller_killed_mid_create_volume(env: Env) -> None:
    dying = env.controller(crash_after="topolvm.kube.client:KubeCluster.create")
    env.node_agent(f"--lvmd-config={env.lvmd_yaml}")
    env.wait_for_capacity()
    with pytest.raises(grpc.RpcError):
        env.create_volume("pvc-crash-ctl", timeout=5)
    assert dying.wait(timeout=30) == -9
    env.controller()  # the provisioner retries CreateVolume with the same name
    vol = env.create_volume("pvc-crash-ctl")
    assert env.lvs() == [vol.volume_id]


def test_orphan_gc_reports_then_deletes_lvs_whose_logical_volume_is_gone(env: Env) -> None:
    # An LV made for a LogicalVolume that no longer exists (upstream #1104/#1213), and one TopoLVM never made.
    tags = ["--addtag", constants.MANAGED_TAG, "--addtag", constants.OWNER_TAG_PREFIX + "pvc-deleted"]
    env.vg.runner.run("lvcreate", ["-n", "0f0f0f0f-dead-4000-8000-000000000000", "-L", "8m", *tags, "-y", env.vg.name])
    env.vg.runner.run("lvcreate", ["-n", "not-topolvm", "-L", "8m", "-y", env.vg.name])
    reporter = env.node_agent(f"--lvmd-config={env.lvmd_yaml}", "--orphan-gc=report", "--orphan-gc-interval=0.2")
    env.wait_for_capacity()
    deadline = time.monotonic() + 30
    while "orphan (dry run): LV 0f0f0f0f" not in (env.work / "node.log").read_text():
        assert time.monotonic() < deadline, "no orphan report"
        time.sleep(0.1)
    assert env.lvs() == ["0f0f0f0f-dead-4000-8000-000000000000", "not-topolvm"]  # reporting removes nothing
    reporter.terminate()
    reporter.wait(timeout=15)
    env.node_agent(f"--lvmd-config={env.lvmd_yaml}", "--orphan-gc=delete", "--orphan-gc-interval=0.2")
    removed = "removed orphan LV 0f0f0f0f-dead-4000-8000-000000000000 of deleted LogicalVolume pvc-deleted"
    deadline = time.monotonic() + 30
    while removed not in (env.work / "node.log").read_text():  # logged right after the LV is gone
        assert time.monotonic() < deadline, f"orphan not collected: {env.lvs()}"
        time.sleep(0.2)
    assert env.lvs() == ["not-topolvm"]
