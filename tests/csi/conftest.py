"""A small cluster behind the CSI Controller over gRPC: live nodes run the real node agent on in-memory LVM,
dead nodes (NotReady: their agent is gone) only keep the capacity annotations they last published.

Used by the topology and deadline suites; each test sets the server's thread pool, the waiter's caps and the
controller's timeout it needs.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from topolvm import clock, constants, runtime, unix_grpc
from topolvm.core import model, resources
from topolvm.csi import controller as csi_controller
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.kube import memory as kube_memory
from topolvm.lvm import memory as lvm_memory
from topolvm.services import controller, lvmd, node

GiB = 1 << 30
Mode = csi.VolumeCapability.AccessMode
KEY = constants.TOPOLOGY_NODE_KEY


@dataclass
class CsiCluster:
    ctrl: csi_grpc.ControllerStub
    cluster: kube_memory.InMemoryCluster
    waiter: runtime.Waiter
    lvms: dict[str, lvm_memory.InMemoryLvm] = field(default_factory=dict)

    def lv_nodes(self) -> dict[str, str]:
        """LogicalVolume name -> node it was placed on."""
        return {lv.name: lv.spec.node_name for lv in self.cluster.list_of(resources.LOGICAL_VOLUME)}

    def stranded_volume(self, name: str, node_name: str) -> str:
        """A ready volume on ``node_name`` as its (now gone) agent left it: finalizer set, volume ID recorded."""
        meta = resources.Meta(name=name, finalizers=(constants.LOGICAL_VOLUME_FINALIZER,))
        spec = resources.LogicalVolumeSpec(name=name, node_name=node_name, size=GiB, device_class="ssd")
        lv = self.cluster.create(resources.LogicalVolume(meta, spec))
        status = resources.LogicalVolumeStatus(volume_id=lv.meta.uid, current_size=GiB)
        self.cluster.update_status(replace(lv, status=status))
        return lv.meta.uid


def _annotations(free: int) -> dict[str, str]:
    return {constants.capacity_annotation("ssd"): str(free), constants.capacity_annotation(""): str(free)}


@contextlib.contextmanager
def csi_cluster(
    live: Mapping[str, int],
    dead: Mapping[str, int] | None = None,
    *,
    workers: int = 32,
    max_waiters: int = 24,
    max_waiters_per_node: int = 8,
    timeout: float = 10.0,
) -> Iterator[CsiCluster]:
    """``live``/``dead``: node name -> VG size (live) or advertised free bytes (dead)."""
    cluster = kube_memory.InMemoryCluster()
    with contextlib.ExitStack() as stack:
        world_lvms: dict[str, lvm_memory.InMemoryLvm] = {}
        for name, size in live.items():
            cluster.add_node(name)
            lvm = lvm_memory.InMemoryLvm()
            lvm.add_vg("vg", [size])
            cfg = model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
            svc = lvmd.LvmdService(lvm=lvm, config=cfg)
            svc.start()
            sub = svc.watch(node.CapacityPublisher(node_name=name, cluster=cluster))
            stack.callback(sub.close)
            agent = runtime.Reconciler(
                cluster, node.LogicalVolumeReconciler(node_name=name, cluster=cluster, lvmd=svc).reconcile
            )
            agent.start()
            stack.callback(agent.stop)
            world_lvms[name] = lvm
        for name, free in (dead or {}).items():
            cluster.add_node(name, annotations=_annotations(free))
        waiter = runtime.Waiter(cluster, max_waiters=max_waiters, max_waiters_per_key=max_waiters_per_node)
        stack.callback(waiter.close)
        service = controller.ControllerService(cluster=cluster, clock=clock.SystemClock())
        sock_dir = Path(tempfile.mkdtemp(prefix="tcsi-", dir="/tmp"))
        stack.callback(shutil.rmtree, sock_dir, ignore_errors=True)

        def register(server: grpc.Server) -> None:
            csi_grpc.add_ControllerServicer_to_server(
                csi_controller.ControllerServicer(service, waiter, clock.SystemClock(), timeout=timeout), server
            )

        server = unix_grpc.serve(str(sock_dir / "csi.sock"), register, max_workers=workers)
        stack.callback(lambda: server.stop(None).wait())
        channel = grpc.insecure_channel(f"unix:{sock_dir / 'csi.sock'}")
        stack.callback(channel.close)
        yield CsiCluster(csi_grpc.ControllerStub(channel), cluster, waiter, world_lvms)


def topology(*nodes: str) -> list[csi.Topology]:
    return [csi.Topology(segments={KEY: n}) for n in nodes]


def create_request(
    name: str, size: int, *, preferred: list[str] | None = None, requisite: list[str] | None = None
) -> csi.CreateVolumeRequest:
    """A CreateVolumeRequest as external-provisioner sends it for a TopoLVM StorageClass."""
    req = csi.CreateVolumeRequest(
        name=name,
        capacity_range=csi.CapacityRange(required_bytes=size),
        volume_capabilities=[
            csi.VolumeCapability(
                access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER), mount=csi.VolumeCapability.MountVolume(fs_type="xfs")
            )
        ],
        parameters={constants.DEVICE_CLASS_PARAMETER: "ssd", constants.FSTYPE_PARAMETER: "xfs"},
    )
    if preferred is not None or requisite is not None:
        req.accessibility_requirements.CopyFrom(
            csi.TopologyRequirement(preferred=topology(*(preferred or [])), requisite=topology(*(requisite or [])))
        )
    return req
