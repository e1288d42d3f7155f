"""CSI Identity and Controller over gRPC on a unix socket, with a node agent running on threads.

The node side is real code on in-memory adapters: LvmdService over InMemoryLvm, the LogicalVolume reconciler
driven by ``runtime.Reconciler`` and the capacity publisher. CreateVolume waits on the watch, not a timer.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from topolvm import clock, constants, runtime, unix_grpc
from topolvm.core import model, resources
from topolvm.csi import controller as csi_controller
from topolvm.csi import identity
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.kube import memory as kube_memory
from topolvm.lvm import memory as lvm_memory
from topolvm.services import controller, lvmd, node

GiB = 1 << 30
Mode = csi.VolumeCapability.AccessMode


@dataclass
class Env:
    ctrl: csi_grpc.ControllerStub
    ident: csi_grpc.IdentityStub
    cluster: kube_memory.InMemoryCluster
    lvm: lvm_memory.InMemoryLvm


@pytest.fixture
def env() -> Iterator[Env]:
    cluster = kube_memory.InMemoryCluster()
    cluster.add_node("n1")
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [20 * GiB])
    svc = lvmd.LvmdService(
        lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    )
    svc.start()
    sub = svc.watch(node.CapacityPublisher(node_name="n1", cluster=cluster))
    agent = runtime.Reconciler(
        cluster, node.LogicalVolumeReconciler(node_name="n1", cluster=cluster, lvmd=svc).reconcile
    )
    agent.start()
    waiter = runtime.Waiter(cluster)
    service = controller.ControllerService(cluster=cluster, clock=clock.SystemClock())
    sock_dir = Path(tempfile.mkdtemp(prefix="tcsi-", dir="/tmp"))

    def register(server: grpc.Server) -> None:
        csi_grpc.add_IdentityServicer_to_server(identity.IdentityServicer(controller=True), server)
        csi_grpc.add_ControllerServicer_to_server(
            csi_controller.ControllerServicer(service, waiter, clock.SystemClock(), timeout=10), server
        )

    server = unix_grpc.serve(str(sock_dir / "csi.sock"), register)
    channel = grpc.insecure_channel(f"unix:{sock_dir / 'csi.sock'}")
    try:
        yield Env(csi_grpc.ControllerStub(channel), csi_grpc.IdentityStub(channel), cluster, lvm)
    finally:
        channel.close()
        server.stop(None).wait()
        agent.stop()
        waiter.close()
        sub.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def mount_cap(mode: int = Mode.SINGLE_NODE_WRITER, fs: str = "xfs") -> csi.VolumeCapability:
    return csi.VolumeCapability(access_mode=Mode(mode=mode), mount=csi.VolumeCapability.MountVolume(fs_type=fs))


def create(env: Env, name: str, size: int, **kw: object) -> csi.CreateVolumeResponse:
    req = csi.CreateVolumeRequest(
        name=name,
        capacity_range=csi.CapacityRange(required_bytes=size),
        volume_capabilities=kw.pop("caps", [mount_cap()]),  # type: ignore[arg-type]
        parameters=kw.pop("parameters", {constants.DEVICE_CLASS_PARAMETER: "ssd"}),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return env.ctrl.CreateVolume(req, timeout=15)


def test_identity(env: Env) -> None:
    info = env.ident.GetPluginInfo(csi.GetPluginInfoRequest())
    assert info.name == "topolvm.io"
    caps = env.ident.GetPluginCapabilities(csi.GetPluginCapabilitiesRequest()).capabilities
    services = {c.service.type for c in caps if c.HasField("service")}
    assert services == {
        csi.PluginCapability.Service.CONTROLLER_SERVICE,
        csi.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS,
    }
    assert env.ident.Probe(csi.ProbeRequest()).ready.value


def test_create_expand_delete_over_grpc(env: Env) -> None:
    vol = create(env, "pvc-1", 3 * GiB).volume
    assert vol.capacity_bytes == 3 * GiB
    lv = env.cluster.get(resources.LOGICAL_VOLUME, "pvc-1")
    assert lv is not None and constants.UNANSWERED_ANNOTATION not in lv.meta.annotations  # answered: never swept
    assert vol.accessible_topology[0].segments[constants.TOPOLOGY_NODE_KEY] == "n1"
    assert create(env, "pvc-1", 3 * GiB).volume == vol  # idempotent
    cap = env.ctrl.GetCapacity(csi.GetCapacityRequest(parameters={constants.DEVICE_CLASS_PARAMETER: "ssd"}))
    assert cap.available_capacity == 17 * GiB
    grown = env.ctrl.ControllerExpandVolume(
        csi.ControllerExpandVolumeRequest(
            volume_id=vol.volume_id, capacity_range=csi.CapacityRange(required_bytes=5 * GiB)
        ),
        timeout=15,
    )
    assert grown.capacity_bytes == 5 * GiB and grown.node_expansion_required
    env.ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vol.volume_id))
    env.ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vol.volume_id))  # idempotent
    waiter = runtime.Waiter(env.cluster)
    gone = waiter.wait(
        lambda: env.cluster.get(resources.LOGICAL_VOLUME, "pvc-1") is None or None, 10, clock.SystemClock().now
    )
    waiter.close()
    assert gone and env.lvm.report(vg_names=["vg"]).vgs["vg"].lvs == ()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        pytest.param(
            {"caps": [mount_cap(Mode.MULTI_NODE_MULTI_WRITER)]}, grpc.StatusCode.INVALID_ARGUMENT, id="multi-node"
        ),
        pytest.param({"caps": [mount_cap(fs="ntfs")]}, grpc.StatusCode.INVALID_ARGUMENT, id="fstype"),
        pytest.param({"caps": []}, grpc.StatusCode.INVALID_ARGUMENT, id="no-caps"),
        pytest.param(
            {"parameters": {constants.DEVICE_CLASS_PARAMETER: "nvme"}}, grpc.StatusCode.INVALID_ARGUMENT, id="class"
        ),
        pytest.param({"size": 100 * GiB}, grpc.StatusCode.RESOURCE_EXHAUSTED, id="too-big"),
        pytest.param({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, id="no-name"),
    ],
)
def test_bad_create_requests(env: Env, kwargs: dict[str, object], code: grpc.StatusCode) -> None:
    name = str(kwargs.pop("name", "pvc-bad"))
    size = int(kwargs.pop("size", GiB))  # type: ignore[call-overload]
    with pytest.raises(grpc.RpcError) as info:
        create(env, name, size, **kwargs)
    assert info.value.code() is code
    assert env.cluster.list_of(resources.LOGICAL_VOLUME) == []
    assert env.lvm.report(vg_names=["vg"]).vgs["vg"].lvs == ()


def test_limit_below_minimum_is_out_of_range(env: Env) -> None:
    req = csi.CreateVolumeRequest(
        name="pvc-x",
        capacity_range=csi.CapacityRange(limit_bytes=100 << 20),
        volume_capabilities=[mount_cap(fs="xfs")],
    )
    with pytest.raises(grpc.RpcError) as info:
        env.ctrl.CreateVolume(req, timeout=15)
    assert info.value.code() is grpc.StatusCode.OUT_OF_RANGE


def test_validate_volume_capabilities(env: Env) -> None:
    vol = create(env, "pvc-v", GiB).volume
    ok = env.ctrl.ValidateVolumeCapabilities(
        csi.ValidateVolumeCapabilitiesRequest(volume_id=vol.volume_id, volume_capabilities=[mount_cap()])
    )
    assert ok.HasField("confirmed")
    bad = env.ctrl.ValidateVolumeCapabilities(
        csi.ValidateVolumeCapabilitiesRequest(
            volume_id=vol.volume_id, volume_capabilities=[mount_cap(Mode.MULTI_NODE_READER_ONLY)]
        )
    )
    assert not bad.HasField("confirmed") and bad.message
    with pytest.raises(grpc.RpcError) as info:
        env.ctrl.ValidateVolumeCapabilities(
            csi.ValidateVolumeCapabilitiesRequest(volume_id="nope", volume_capabilities=[mount_cap()])
        )
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_names_are_folded_to_lower_case(env: Env) -> None:
    """Like upstream: the CSI name names a LogicalVolume, which must be lower case (csi-sanity's names are not)."""
    vol = create(env, "Sanity-Create-0A1B2C3D", GiB).volume
    assert create(env, "sanity-create-0a1b2c3d", GiB).volume.volume_id == vol.volume_id
    lv = env.cluster.get(resources.LOGICAL_VOLUME, "sanity-create-0a1b2c3d")
    assert lv is not None and lv.meta.uid == vol.volume_id


def test_expand_without_capacity_range_is_invalid_and_changes_nothing(env: Env) -> None:
    vol = create(env, "pvc-small", 400 << 20).volume
    with pytest.raises(grpc.RpcError) as info:
        env.ctrl.ControllerExpandVolume(csi.ControllerExpandVolumeRequest(volume_id=vol.volume_id), timeout=15)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    lv = env.cluster.get(resources.LOGICAL_VOLUME, "pvc-small")
    assert lv is not None and lv.spec.size == 400 << 20


def test_snapshot_rpcs(env: Env) -> None:
    caps = env.ctrl.ControllerGetCapabilities(csi.ControllerGetCapabilitiesRequest()).capabilities
    rpcs = {c.rpc.type for c in caps}
    assert {
        csi.ControllerServiceCapability.RPC.CREATE_DELETE_SNAPSHOT,
        csi.ControllerServiceCapability.RPC.CLONE_VOLUME,
    } <= rpcs
    vol = create(env, "pvc-snapsrc", GiB).volume
    # This env's class is thick: the snapshot is a full, read-only copy beside its source (thick_copy).
    snap = env.ctrl.CreateSnapshot(
        csi.CreateSnapshotRequest(name="Snap-1", source_volume_id=vol.volume_id), timeout=15
    ).snapshot
    assert snap.ready_to_use and snap.size_bytes == GiB and snap.source_volume_id == vol.volume_id
    assert env.lvm.copied_from("vg", snap.snapshot_id) == vol.volume_id
    source = csi.VolumeContentSource(snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=snap.snapshot_id))
    restored = create(env, "pvc-restored", 2 * GiB, volume_content_source=source).volume
    assert env.lvm.copied_from("vg", restored.volume_id) == snap.snapshot_id
    env.ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=15)  # the copies stay
    env.ctrl.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id), timeout=15)
    left = {lv.name for lv in env.lvm.report(vg_names=["vg"]).vgs["vg"].lvs}
    assert left == {restored.volume_id}
    with pytest.raises(grpc.RpcError) as info:
        env.ctrl.CreateSnapshot(csi.CreateSnapshotRequest(name="snap-2", source_volume_id="nope"), timeout=15)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    env.ctrl.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id="never-existed"))  # idempotent
    with pytest.raises(grpc.RpcError) as info:
        env.ctrl.DeleteSnapshot(csi.DeleteSnapshotRequest(snapshot_id=""))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
