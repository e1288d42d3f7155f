"""CSI Controller service over ``topolvm.services.controller``.

CreateVolume records a LogicalVolume and then waits for the node agent's answer by watching it
(``runtime.Waiter``), not by polling. Access modes: single-node ones only (RWOP maps to SINGLE_NODE_WRITER, as
upstream); anything multi-node is INVALID_ARGUMENT before anything is created.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence

import grpc

from topolvm import constants, errors, grpc_status, ports, runtime
from topolvm.csi import locks
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.services import controller

Mode = csi.VolumeCapability.AccessMode
_SINGLE_NODE = {
    Mode.SINGLE_NODE_WRITER,
    Mode.SINGLE_NODE_READER_ONLY,
    Mode.SINGLE_NODE_SINGLE_WRITER,
    Mode.SINGLE_NODE_MULTI_WRITER,
}
_FSTYPES = {"", "ext4", "xfs", "btrfs"}
_RPC = csi.ControllerServiceCapability.RPC
_CAPABILITIES = (
    _RPC.CREATE_DELETE_VOLUME,
    _RPC.GET_CAPACITY,
    _RPC.EXPAND_VOLUME,
    _RPC.CREATE_DELETE_SNAPSHOT,  # thin classes; a thick class answers INVALID_ARGUMENT
    _RPC.CLONE_VOLUME,
)


def check_capabilities(caps: Sequence[csi.VolumeCapability]) -> str:
    """Validate volume capabilities; the filesystem type they ask for ("block" for raw block)."""
    if not caps:
        raise errors.InvalidArgument("volume capabilities are required")
    fstype = ""
    for cap in caps:
        if cap.access_mode.mode not in _SINGLE_NODE:
            name = Mode.Mode.Name(cap.access_mode.mode)
            raise errors.InvalidArgument(f"access mode {name} is not supported: TopoLVM volumes are node-local")
        if cap.HasField("block"):
            fstype = "block"
        elif cap.HasField("mount"):
            if cap.mount.fs_type not in _FSTYPES:
                raise errors.InvalidArgument(f"filesystem type {cap.mount.fs_type!r} is not supported")
            fstype = cap.mount.fs_type or fstype
        else:
            raise errors.InvalidArgument("a volume capability must be block or mount")
    return fstype or "ext4"


def _nodes(topologies: Iterable[csi.Topology]) -> list[str]:
    return [t.segments[constants.TOPOLOGY_NODE_KEY] for t in topologies if constants.TOPOLOGY_NODE_KEY in t.segments]


def _volume(ready: controller.Ready, request: csi.CreateVolumeRequest) -> csi.Volume:
    vol = csi.Volume(
        volume_id=ready.volume_id,
        capacity_bytes=ready.size,
        accessible_topology=[csi.Topology(segments={constants.TOPOLOGY_NODE_KEY: ready.node_name})],
    )
    if request.HasField("volume_content_source"):
        vol.content_source.CopyFrom(request.volume_content_source)
    return vol


class ControllerServicer(csi_grpc.ControllerServicer):  # type: ignore[misc]
    def __init__(
        self,
        service: controller.ControllerService,
        waiter: runtime.Waiter,
        clock: ports.Clock,
        *,
        timeout: float = 60.0,
    ) -> None:
        self._service = service
        self._waiter = waiter
        self._clock = clock
        self._timeout = timeout
        self._locks = locks.KeyedLock()

    def _until_ready(
        self,
        first: controller.Ready | controller.Pending,
        check: Callable[[], controller.Ready | controller.Pending],
        context: grpc.ServicerContext | None = None,
    ) -> controller.Ready:
        if isinstance(first, controller.Ready):
            return first

        def ready_or_none() -> controller.Ready | None:
            state = check()
            return state if isinstance(state, controller.Ready) else None

        # Never wait past the caller's deadline: a gone caller's retry would queue behind this thread's lock.
        remaining = context.time_remaining() if context is not None else None
        timeout = self._timeout if remaining is None else max(0.0, min(self._timeout, remaining - 0.5))
        return self._waiter.wait(ready_or_none, timeout, self._clock.now)

    @grpc_status.handler
    def CreateVolume(self, request: csi.CreateVolumeRequest, context: grpc.ServicerContext) -> csi.CreateVolumeResponse:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        # The name becomes a LogicalVolume's name, which Kubernetes wants in lower case; like upstream, fold it
        # (external-provisioner's "pvc-<uuid>" already is; csi-sanity's names are not).
        name = request.name.lower()
        fstype = check_capabilities(request.volume_capabilities)
        params = request.parameters
        fstype = "block" if fstype == "block" else params.get(constants.FSTYPE_PARAMETER, fstype) or "ext4"
        source_id = ""
        if request.HasField("volume_content_source"):
            src = request.volume_content_source
            source_id = src.snapshot.snapshot_id if src.HasField("snapshot") else src.volume.volume_id
        topology = request.accessibility_requirements
        preferred, requisite = _nodes(topology.preferred), _nodes(topology.requisite)
        if (topology.preferred or topology.requisite) and not (preferred or requisite):
            # Constraints we cannot read (allowedTopologies on another key, say) are not ignored: as upstream.
            raise errors.InvalidArgument(
                f"accessibility requirements name no {constants.TOPOLOGY_NODE_KEY}, the only topology key of "
                f"{constants.PLUGIN_NAME}"
            )
        req = controller.VolumeRequest(
            name=name,
            required_bytes=request.capacity_range.required_bytes,
            limit_bytes=request.capacity_range.limit_bytes,
            device_class=params.get(constants.DEVICE_CLASS_PARAMETER, ""),
            lvcreate_option_class=params.get(constants.LVCREATE_OPTION_CLASS_PARAMETER, ""),
            fstype=fstype,
            preferred_nodes=preferred,
            requisite_nodes=requisite,
            source_volume_id=source_id,
        )
        with self._locks.hold(name):
            first = self._service.create_volume(req)
            ready = self._until_ready(first, lambda: self._service.creation_state(name), context)
        return csi.CreateVolumeResponse(volume=_volume(ready, request))

    @grpc_status.handler
    def DeleteVolume(self, request: csi.DeleteVolumeRequest, context: grpc.ServicerContext) -> csi.DeleteVolumeResponse:
        self._delete(request.volume_id, snapshot=False)
        return csi.DeleteVolumeResponse()

    def _delete(self, volume_id: str, *, snapshot: bool) -> None:
        """Delete and wait until the node agent has removed the LV: once the CO hears OK the volume is gone and
        its name can be used again (csi-sanity reuses names at once)."""
        with self._locks.hold(volume_id):
            self._service.delete_volume(volume_id, snapshot=snapshot)
        self._waiter.wait(
            lambda: True if self._service.find_by_volume_id(volume_id) is None else None, self._timeout, self._clock.now
        )

    @grpc_status.handler
    def CreateSnapshot(
        self, request: csi.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> csi.CreateSnapshotResponse:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        name = request.name.lower()  # LogicalVolume names are lower case; CSI names need not be
        with self._locks.hold(name):
            first = self._service.create_snapshot(name=name, source_volume_id=request.source_volume_id)
            ready = self._until_ready(first, lambda: self._service.creation_state(name), context)
        snapshot = csi.Snapshot(
            snapshot_id=ready.volume_id,
            source_volume_id=request.source_volume_id,
            size_bytes=ready.size,
            ready_to_use=True,
        )
        if ready.created_at:
            snapshot.creation_time.FromDatetime(datetime.datetime.fromisoformat(ready.created_at))
        else:
            snapshot.creation_time.GetCurrentTime()
        return csi.CreateSnapshotResponse(snapshot=snapshot)

    @grpc_status.handler
    def DeleteSnapshot(
        self, request: csi.DeleteSnapshotRequest, context: grpc.ServicerContext
    ) -> csi.DeleteSnapshotResponse:
        if not request.snapshot_id:
            raise errors.InvalidArgument("snapshot ID is required")
        self._delete(request.snapshot_id, snapshot=True)  # a snapshot is a LogicalVolume too
        return csi.DeleteSnapshotResponse()

    @grpc_status.handler
    def ControllerExpandVolume(
        self, request: csi.ControllerExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi.ControllerExpandVolumeResponse:
        if not request.volume_id:
            raise errors.InvalidArgument("volume ID is required")
        if not request.HasField("capacity_range"):
            # Required by the spec; without this check "no range" read as "1 GiB" and grew small volumes.
            raise errors.InvalidArgument("capacity range is required")
        fstype = "block" if request.volume_capability.HasField("block") else "ext4"
        rng = request.capacity_range
        with self._locks.hold(request.volume_id):
            first = self._service.expand_volume(request.volume_id, rng.required_bytes, rng.limit_bytes, fstype)
            lv = self._service.find_by_volume_id(request.volume_id)
            if lv is None:
                raise errors.NotFound(f"volume {request.volume_id!r} disappeared while being expanded")
            size = lv.spec.size
            stamp = first.request if isinstance(first, controller.Pending) else ""
            ready = self._until_ready(first, lambda: self._service.expansion_state(lv.name, size, stamp), context)
        return csi.ControllerExpandVolumeResponse(capacity_bytes=ready.size, node_expansion_required=fstype != "block")

    @grpc_status.handler
    def GetCapacity(self, request: csi.GetCapacityRequest, context: grpc.ServicerContext) -> csi.GetCapacityResponse:
        if request.volume_capabilities:
            check_capabilities(request.volume_capabilities)
        device_class = request.parameters.get(constants.DEVICE_CLASS_PARAMETER, "")
        node_name = (
            request.accessible_topology.segments.get(constants.TOPOLOGY_NODE_KEY)
            if request.HasField("accessible_topology")
            else None
        )
        return csi.GetCapacityResponse(available_capacity=self._service.get_capacity(device_class, node_name))

    @grpc_status.handler
    def ValidateVolumeCapabilities(
        self, request: csi.ValidateVolumeCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.ValidateVolumeCapabilitiesResponse:
        if not request.volume_id:
            raise errors.InvalidArgument("volume ID is required")
        if self._service.find_by_volume_id(request.volume_id) is None:
            raise errors.NotFound(f"volume {request.volume_id!r} not found")
        try:
            check_capabilities(request.volume_capabilities)
        except errors.InvalidArgument as exc:
            if not request.volume_capabilities:
                raise
            return csi.ValidateVolumeCapabilitiesResponse(message=str(exc))
        confirmed = csi.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=request.volume_context,
            volume_capabilities=request.volume_capabilities,
            parameters=request.parameters,
        )
        return csi.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    @grpc_status.handler
    def ControllerGetCapabilities(
        self, request: csi.ControllerGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.ControllerGetCapabilitiesResponse:
        caps = [csi.ControllerServiceCapability(rpc=_RPC(type=t)) for t in _CAPABILITIES]
        return csi.ControllerGetCapabilitiesResponse(capabilities=caps)
