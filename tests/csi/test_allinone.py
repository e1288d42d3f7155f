"""The all-in-one driver (``python -m topolvm.cmd.allinone``) on in-memory LVM and mounts: one socket serves
Identity, Controller and Node; it refuses a VG holding volumes it cannot know; bad configs exit 2.

The same driver on real lvm2 runs csi-sanity in the HIL VM (tests/hil/guest/test_csi_sanity.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from topolvm import clock, constants, errors, runtime
from topolvm.cmd import allinone
from topolvm.core import model, resources
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.lvm import memory as lvm_memory
from topolvm.mount import memory as mount_memory
from topolvm.services import lvmd

GiB = 1 << 30
Mode = csi.VolumeCapability.AccessMode


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tallin-", dir="/tmp"))  # short: unix socket paths are limited
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make(lvm: lvm_memory.InMemoryLvm, sock_dir: Path) -> allinone.AllInOne:
    config = model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    return allinone.AllInOne(
        lvmd_service=lvmd.LvmdService(lvm=lvm, config=config),
        mounter=mount_memory.InMemoryMounter(),
        node_name="n1",
        socket_path=str(sock_dir / "csi.sock"),
        allowed_target_prefixes=(str(sock_dir) + "/",),
        create_timeout=10,
    )


def test_one_socket_serves_the_whole_volume_lifecycle(sock_dir: Path) -> None:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [4 * GiB])
    driver = make(lvm, sock_dir)
    driver.start()
    try:
        with grpc.insecure_channel(f"unix:{sock_dir / 'csi.sock'}") as channel:
            ident, ctrl, node = (
                csi_grpc.IdentityStub(channel),
                csi_grpc.ControllerStub(channel),
                csi_grpc.NodeStub(channel),
            )
            assert ident.Probe(csi.ProbeRequest(), timeout=5).ready.value
            info = node.NodeGetInfo(csi.NodeGetInfoRequest(), timeout=5)
            assert info.node_id == "n1"
            cap = csi.VolumeCapability(
                access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER), block=csi.VolumeCapability.BlockVolume()
            )
            vol = ctrl.CreateVolume(
                csi.CreateVolumeRequest(
                    name="Vol-1",
                    capacity_range=csi.CapacityRange(required_bytes=GiB),
                    volume_capabilities=[cap],
                    accessibility_requirements=csi.TopologyRequirement(requisite=[info.accessible_topology]),
                ),
                timeout=15,
            ).volume
            assert vol.accessible_topology[0].segments[constants.TOPOLOGY_NODE_KEY] == "n1"
            target = str(sock_dir / "target")
            node.NodePublishVolume(
                csi.NodePublishVolumeRequest(volume_id=vol.volume_id, target_path=target, volume_capability=cap),
                timeout=15,
            )
            assert isinstance(driver.mounter, mount_memory.InMemoryMounter) and target in driver.mounter.mounts
            with pytest.raises(grpc.RpcError) as outside:
                node.NodePublishVolume(
                    csi.NodePublishVolumeRequest(volume_id=vol.volume_id, target_path="/etc/x", volume_capability=cap),
                    timeout=15,
                )
            assert outside.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            node.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=vol.volume_id, target_path=target))
            ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=15)
        waiter = runtime.Waiter(driver.cluster)
        waiter.wait(lambda: not driver.cluster.list_of(resources.LOGICAL_VOLUME) or None, 10, clock.SystemClock().now)
        waiter.close()
        assert lvm.report(vg_names=["vg"]).vgs["vg"].lvs == ()  # the node agent removed the LV
    finally:
        driver.stop(grace=0)


def test_refuses_volumes_it_cannot_know(sock_dir: Path) -> None:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [4 * GiB])
    config = model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    earlier = lvmd.LvmdService(lvm=lvm, config=config)
    earlier.start()
    earlier.create_lv(name="00000002-0000-4000-8000-000000000000", device_class="ssd", size_bytes=GiB)
    driver = make(lvm, sock_dir)
    with pytest.raises(errors.FailedPrecondition, match="vg/00000002"):
        driver.start()
    driver.stop(grace=0)  # safe after a failed start
    assert not (sock_dir / "csi.sock").exists()


def test_cli_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    missing_vg = tmp_path / "lvmd.yaml"
    missing_vg.write_text("device-classes:\n  - {name: ssd, volume-group: no-such-vg-here, default: true}\n")
    for config in (tmp_path / "absent.yaml", missing_vg):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "topolvm.cmd.allinone",
                "--config",
                str(config),
                "--csi-socket",
                str(tmp_path / "csi.sock"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "cannot start" in done.stderr or "invalid configuration" in done.stderr
    assert not (tmp_path / "csi.sock").exists()


def test_help_says_it_is_for_testing() -> None:
    assert "TESTING AND SINGLE-NODE DEMOS ONLY" in " ".join(allinone.build_parser().format_help().split())
