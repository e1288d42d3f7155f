"""Node calls answer by their caller's deadline while their work goes on (topolvm.csi.volume_work).

A publish whose mkfs takes longer than kubelet's deadline answers DEADLINE_EXCEEDED (our answer, not the
client's timeout) and is not cut short; calls about that volume meanwhile answer ABORTED at once; the call after
the work finished is answered from it. Codes are asserted, never durations.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from topolvm import grpc_status, unix_grpc
from topolvm.core import model
from topolvm.csi import node
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.lvm import memory as lvm_memory
from topolvm.mount import memory as mount_memory
from topolvm.services import lvmd, publish

GiB = 1 << 30
Mode = csi.VolumeCapability.AccessMode
TARGET = "/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/v/mount"


class SlowMounter(mount_memory.InMemoryMounter):
    """An mkfs that runs until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()
        self.formats = 0

    def mount_filesystem(
        self, *, device: str, target: str, fstype: str, options: Sequence[str] = (), read_only: bool = False
    ) -> None:
        if device not in self.filesystems:
            self.formats += 1
            self.started.set()
            assert self.release.wait(30), "the test never let mkfs finish"
        super().mount_filesystem(device=device, target=target, fstype=fstype, options=options, read_only=read_only)


@dataclass
class NodeWorld:
    stub: csi_grpc.NodeStub
    mounter: SlowMounter
    servicer: node.NodeServicer
    volume_id: str


@pytest.fixture
def world() -> Iterator[NodeWorld]:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [4 * GiB])
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True),)))
    svc.start()
    volume = svc.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB, tags=["topolvm.io/owner=pvc-1"])
    mounter = SlowMounter()
    servicer = node.NodeServicer(
        publish.NodeVolumeService(config=publish.NodeConfig(node_name="n1"), lvmd=svc, mounter=mounter)
    )
    sock_dir = Path(tempfile.mkdtemp(prefix="tnode-", dir="/tmp"))
    server = unix_grpc.serve(
        str(sock_dir / "csi.sock"), lambda s: csi_grpc.add_NodeServicer_to_server(servicer, s), max_workers=4
    )
    channel = grpc.insecure_channel(f"unix:{sock_dir / 'csi.sock'}")
    try:
        yield NodeWorld(csi_grpc.NodeStub(channel), mounter, servicer, volume.name)
    finally:
        mounter.release.set()
        channel.close()
        server.stop(None).wait()
        shutil.rmtree(sock_dir, ignore_errors=True)


def publish_request(volume_id: str) -> csi.NodePublishVolumeRequest:
    capability = csi.VolumeCapability(
        access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER), mount=csi.VolumeCapability.MountVolume(fs_type="ext4")
    )
    return csi.NodePublishVolumeRequest(volume_id=volume_id, target_path=TARGET, volume_capability=capability)


def test_a_publish_past_the_deadline_answers_in_time_and_its_mkfs_finishes(world: NodeWorld) -> None:
    request = publish_request(world.volume_id)
    with pytest.raises(grpc.RpcError) as info:
        world.stub.NodePublishVolume(request, timeout=1.5)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "the work goes on" in (info.value.details() or "")  # our answer, not the client giving up
    assert world.mounter.started.is_set() and TARGET not in world.mounter.mounts

    # kubelet calls again while mkfs runs: refused at once, no second mkfs, no thread parked behind the first
    for call in (
        lambda: world.stub.NodePublishVolume(request, timeout=10),
        lambda: world.stub.NodeUnpublishVolume(
            csi.NodeUnpublishVolumeRequest(volume_id=world.volume_id, target_path=TARGET), timeout=10
        ),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() is grpc.StatusCode.ABORTED

    world.mounter.release.set()  # mkfs ends: the work that outlived its call mounts the volume
    for _ in range(400):
        if world.servicer._work.busy() == 0:
            break
        threading.Event().wait(0.025)
    assert TARGET in world.mounter.mounts
    world.stub.NodePublishVolume(request, timeout=10)  # the retry: already published
    assert world.mounter.formats == 1


def test_a_call_with_no_time_left_starts_nothing(world: NodeWorld) -> None:
    with pytest.raises(grpc.RpcError) as info:
        world.stub.NodePublishVolume(publish_request(world.volume_id), timeout=0.3)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "nothing done" in (info.value.details() or "")
    assert not world.mounter.started.is_set() and world.mounter.formats == 0


def test_calls_within_their_deadline_are_answered_as_before(world: NodeWorld) -> None:
    world.mounter.release.set()
    request = publish_request(world.volume_id)
    world.stub.NodePublishVolume(request, timeout=10)
    world.stub.NodePublishVolume(request)  # no deadline at all
    with pytest.raises(grpc.RpcError) as info:
        world.stub.NodePublishVolume(publish_request("no-such-volume"), timeout=10)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND  # errors of the work reach the caller as before
    world.stub.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id=world.volume_id, target_path=TARGET))
    assert TARGET not in world.mounter.mounts and world.servicer._work.busy() == 0


class _Context:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


@pytest.mark.parametrize(
    ("remaining", "left"),
    [(None, None), (9.2e9, None), (3e8, None), (120.0, 120.0), (0.2, 0.2), (-1.0, 0.0)],
)
def test_time_left_reads_grpcs_infinite_future_as_no_deadline(remaining: float | None, left: float | None) -> None:
    # Debian's grpcio (the VM's) reports a call without a deadline as one ~292 years away: waiting on that
    # overflowed threading's timeout and failed every such call with INTERNAL.
    assert grpc_status.time_left(_Context(remaining)) == left  # type: ignore[arg-type]
    assert grpc_status.time_left(None) is None
