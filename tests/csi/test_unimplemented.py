"""RPCs the driver does not offer answer UNIMPLEMENTED with one WARNING line, never an ERROR traceback.

The generated servicer defaults raise NotImplementedError, which gRPC logs at ERROR with a traceback; a CO
probing an RPC that is not advertised (csi-sanity, a sidecar's feature check) would fill the log with them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from topolvm import clock, runtime, unix_grpc
from topolvm.core import model
from topolvm.csi import controller as csi_controller
from topolvm.csi import identity, node
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.kube import memory as kube_memory
from topolvm.lvm import memory as lvm_memory
from topolvm.mount import memory as mount_memory
from topolvm.services import controller, lvmd, publish


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    cluster = kube_memory.InMemoryCluster()
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [1 << 30])
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True),)))
    waiter = runtime.Waiter(cluster)
    ctrl = controller.ControllerService(cluster=cluster, clock=clock.SystemClock())
    node_service = publish.NodeVolumeService(
        config=publish.NodeConfig(node_name="n1"), lvmd=svc, mounter=mount_memory.InMemoryMounter()
    )

    def register(server: grpc.Server) -> None:
        csi_grpc.add_IdentityServicer_to_server(identity.IdentityServicer(controller=True), server)
        csi_grpc.add_ControllerServicer_to_server(
            csi_controller.ControllerServicer(ctrl, waiter, clock.SystemClock()), server
        )
        csi_grpc.add_NodeServicer_to_server(node.NodeServicer(node_service), server)

    sock_dir = Path(tempfile.mkdtemp(prefix="tcsi-", dir="/tmp"))
    server = unix_grpc.serve(str(sock_dir / "csi.sock"), register)
    chan = grpc.insecure_channel(f"unix:{sock_dir / 'csi.sock'}")
    try:
        yield chan
    finally:
        chan.close()
        server.stop(None).wait()
        waiter.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


CALLS: list[tuple[str, Callable[[grpc.Channel], object]]] = [
    ("ListVolumes", lambda ch: csi_grpc.ControllerStub(ch).ListVolumes(csi.ListVolumesRequest(), timeout=10)),
    (
        "ControllerPublishVolume",
        lambda ch: csi_grpc.ControllerStub(ch).ControllerPublishVolume(
            csi.ControllerPublishVolumeRequest(volume_id="v", node_id="n1"), timeout=10
        ),
    ),
    ("ListSnapshots", lambda ch: csi_grpc.ControllerStub(ch).ListSnapshots(csi.ListSnapshotsRequest(), timeout=10)),
    (
        "NodeStageVolume",
        lambda ch: csi_grpc.NodeStub(ch).NodeStageVolume(
            csi.NodeStageVolumeRequest(volume_id="v", staging_target_path="/var/lib/kubelet/x"), timeout=10
        ),
    ),
]


@pytest.mark.parametrize(("rpc", "call"), [pytest.param(r, c, id=r) for r, c in CALLS])
def test_unimplemented_rpc_is_one_warning(
    channel: grpc.Channel, rpc: str, call: Callable[[grpc.Channel], object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(grpc.RpcError) as info:
        call(channel)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert rpc in (info.value.details() or "")
    ours = [r for r in caplog.records if rpc in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in ours] == [(logging.WARNING, None)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_implemented_rpcs_are_left_alone() -> None:
    assert csi_controller.ControllerServicer.CreateVolume.__qualname__ == "ControllerServicer.CreateVolume"
    assert node.NodeServicer.NodeStageVolume.__name__ == "NodeStageVolume"
    assert node.NodeServicer.NodeStageVolume is not csi_grpc.NodeServicer.NodeStageVolume
