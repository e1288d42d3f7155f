"""Per-volume IO limits on the VM's real kernel: the all-in-one driver (real lvm2 on NVMe, cgroup v2) creates a
volume with IO limit parameters, publishes it for a pod whose cgroup is laid out as kubelet makes it, and a
process in that pod is held to the limits while one outside it is not.

Tolerance: a limited process may run at most 25 % over its limit (blk-throttle lets a slice's worth through at
once); an unlimited one must run at least 3 times the limit (the emulated NVMe does far more, even under TCG).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.hil.guest.serving import wait_serving
from tests.support import cgroups
from topolvm.core import iolimits
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.mount.cgroup import device_numbers

pytestmark = [pytest.mark.root, pytest.mark.dm]

MiB = 1 << 20
GiB = 1 << 30
POD = "3c9d2a41-7b6e-4f10-9d2c-5a8e1f0b7c64"
OTHER_POD = "8e1f0b7c-3c9d-4a41-8b6e-9d2c5a4f1070"
WRITE_LIMIT = MiB  # bytes per second
READ_IOPS_PER_GIB = 40  # a 1 GiB volume: 40 read IOPS
TOLERANCE = 1.25
UNLIMITED_FACTOR = 3.0
Mode = csi.VolumeCapability.AccessMode


@dataclass
class Node:
    ctrl: csi_grpc.ControllerStub
    node: csi_grpc.NodeStub
    root: Path
    work: Path
    vg: str


@pytest.fixture
def driver(vg: str, tmp_path: Path) -> Iterator[Node]:
    with cgroups.io_hierarchy() as root:
        assert root is not None, "the HIL VM's kernel must offer cgroup v2 with the io controller"
        config = tmp_path / "lvmd.yaml"
        config.write_text(
            f"device-classes:\n  - {{name: ssd, volume-group: {vg}, default: true, spare-gb: 0}}\n"
            "lvm-command-prefix: []\n"
        )
        sock, log = tmp_path / "csi.sock", tmp_path / "driver.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "topolvm.cmd.allinone", f"--csi-socket={sock}", f"--config={config}",
                    "--node-name=hil-node", f"--allowed-target-prefix={tmp_path}", f"--cgroup-root={root}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_serving(sock, proc, log)
            with grpc.insecure_channel(f"unix:{sock}") as channel:
                yield Node(csi_grpc.ControllerStub(channel), csi_grpc.NodeStub(channel), root, tmp_path, vg)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            for top in ("kubepods.slice", "kubepods"):
                cgroups.remove_tree(root / top)


def _run_in(cgroup: Path, *argv: str) -> float:
    """Run ``argv`` as a process of ``cgroup``; its wall time in seconds."""
    start = time.monotonic()
    subprocess.run(
        ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cgroup), *argv],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - start


def _io_stat(cgroup: Path, device: str) -> dict[str, int]:
    major, minor = device_numbers(device)
    for line in (cgroup / "io.stat").read_text().splitlines():
        dev, _, rest = line.partition(" ")
        if dev == f"{major}:{minor}":
            return {k: int(v) for k, v in (f.split("=") for f in rest.split())}
    return {}


def test_a_pod_is_held_to_its_volume_limits(driver: Node) -> None:
    params = {
        "topolvm.io/device-class": "ssd",
        "topolvm.io/write-bytes-per-second": "1Mi",
        "topolvm.io/read-iops-per-gib": str(READ_IOPS_PER_GIB),
    }
    vol = driver.ctrl.CreateVolume(
        csi.CreateVolumeRequest(
            name="pvc-io",
            capacity_range=csi.CapacityRange(required_bytes=GiB),
            volume_capabilities=[
                csi.VolumeCapability(
                    access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER),
                    mount=csi.VolumeCapability.MountVolume(fs_type="ext4"),
                )
            ],
            parameters=params,
        ),
        timeout=120,
    ).volume
    assert iolimits.parse(vol.volume_context) == iolimits.parse(params)
    pod = cgroups.pod_cgroup(driver.root, POD)
    container = pod / "container"  # kubelet runs a pod's processes in container cgroups below the pod's
    container.mkdir()
    target = driver.work / "pods" / POD / "volumes" / "kubernetes.io~csi" / "pvc-io" / "mount"
    cap = csi.VolumeCapability(
        access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER), mount=csi.VolumeCapability.MountVolume(fs_type="ext4")
    )
    context = {**vol.volume_context, "csi.storage.k8s.io/pod.uid": POD}
    driver.node.NodePublishVolume(
        csi.NodePublishVolumeRequest(
            volume_id=vol.volume_id, target_path=str(target), volume_capability=cap, volume_context=context
        ),
        timeout=120,
    )
    device = f"/dev/{driver.vg}/{vol.volume_id}"
    major, minor = device_numbers(device)
    assert (
        f"{major}:{minor} rbps=max wbps={WRITE_LIMIT} riops={READ_IOPS_PER_GIB} wiops=max"
        in (pod / "io.max").read_text()
    )

    # Writes: 4 MiB at 1 MiB/s from the pod; the same from outside it, unlimited (8 MiB/s on a loaded machine
    # under TCG, 2026-12-06).
    size = 4 * MiB
    write = ("dd", "if=/dev/zero", "bs=256k", f"count={size // (256 << 10)}", "oflag=direct", "status=none")
    limited = size / _run_in(container, *write, f"of={target / 'limited'}")
    assert limited <= WRITE_LIMIT * TOLERANCE, f"the pod wrote at {limited / MiB:.2f} MiB/s, limit 1 MiB/s"
    assert _io_stat(container.parent, device).get("wbytes", 0) >= size  # charged to the pod, on this device
    other = cgroups.pod_cgroup(driver.root, OTHER_POD)
    free = size / _run_in(other, *write, f"of={target / 'free'}")
    assert free >= WRITE_LIMIT * UNLIMITED_FACTOR, f"an unlimited writer managed only {free / MiB:.2f} MiB/s"

    # Reads: 120 direct 4 KiB reads at 40 IOPS from the pod.
    reads = 120
    read = ("dd", f"if={target / 'limited'}", "of=/dev/null", "bs=4k", f"count={reads}", "iflag=direct")
    iops = reads / _run_in(container, *read, "status=none")
    assert iops <= READ_IOPS_PER_GIB * TOLERANCE, f"the pod read at {iops:.0f} IOPS, limit {READ_IOPS_PER_GIB}"
    free_iops = reads / _run_in(other, *read, "status=none")
    assert free_iops >= READ_IOPS_PER_GIB * UNLIMITED_FACTOR, f"an unlimited reader managed only {free_iops:.0f}"

    figures = {"limited_write_MiBps": limited / MiB, "unlimited_write_MiBps": free / MiB}
    figures |= {"limited_read_iops": iops, "unlimited_read_iops": free_iops}
    out = Path(os.environ.get("TOPOLVM_HIL_OUT", "/tmp/hil-out"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "io-limits.json").write_text(json.dumps(figures, indent=1) + "\n")  # for docs/iolimits.md

    # Unpublish clears the pod's limits on the device; the volume is then deleted.
    driver.node.NodeUnpublishVolume(
        csi.NodeUnpublishVolumeRequest(volume_id=vol.volume_id, target_path=str(target)), timeout=120
    )
    assert f"{major}:{minor}" not in (pod / "io.max").read_text()
    driver.ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=120)
    shutil.rmtree(driver.work / "pods", ignore_errors=True)
