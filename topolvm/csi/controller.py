"""CSI Controller service over ``topolvm.services.controller``.

CreateVolume records a LogicalVolume and then waits for the node agent's answer by watching it
(``runtime.Waiter``), not by polling. Access modes: single-node ones only (RWOP maps to SINGLE_NODE_WRITER, as
upstream); anything multi-node is INVALID_ARGUMENT before anything is created.

Waiting. CreateVolume, DeleteVolume, ControllerExpandVolume, CreateSnapshot and DeleteSnapshot first do their
non-blocking part (record, delete or stamp the LogicalVolume), then wait for the node agent. No call outlives
its caller: a wait lasts at most ``timeout`` seconds and ends ``deadline_margin`` seconds before the gRPC
deadline (``context.time_remaining()``). Running out of the caller's deadline answers DEADLINE_EXCEEDED, out of
our own timeout UNAVAILABLE; external-provisioner reads both as "still in progress" and calls again, and the
retry finds the work where it was (every call here is idempotent).

Threads. Every waiting call holds one of the server's threads, so ``runtime.Waiter`` admits only so many
waits per node (the node named by the LogicalVolume) and in all — by default 8 and 24 of the server's 32
threads; a wait beyond a cap answers UNAVAILABLE at once. The volumes of a node that never answers (NotReady,
its agent gone) therefore hold a bounded number of threads, and CreateVolume for other nodes keeps its own. A
second call about a volume that is already being worked on answers ABORTED at once (the CSI spec's "operation
pending") instead of parking a thread behind the first.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import grpc

from topolvm import constants, errors, grpc_status, ports, runtime
from topolvm.core import iolimits
from topolvm.csi import locks
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.services import controller

T = TypeVar("T")
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
    _RPC.CREATE_DELETE_SNAPSHOT,  # thin: thin snapshots; thick: full copies (services/thick_copy.py)
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


def _volume(
    ready: controller.Ready, request: csi.CreateVolumeRequest, limits: iolimits.IoLimits | None = None
) -> csi.Volume:
    vol = csi.Volume(
        volume_id=ready.volume_id,
        capacity_bytes=ready.size,
        accessible_topology=[csi.Topology(segments={constants.TOPOLOGY_NODE_KEY: ready.node_name})],
        # IO limits travel to NodePublish in the PV's volumeAttributes.
        volume_context=limits.parameters() if limits else {},
    )
    if request.HasField("volume_content_source"):
        vol.content_source.CopyFrom(request.volume_content_source)
    return vol


@grpc_status.unimplemented_from(csi_grpc.ControllerServicer)
class ControllerServicer(csi_grpc.ControllerServicer):  # type: ignore[misc]
    def __init__(
        self,
        service: controller.ControllerService,
        waiter: runtime.Waiter,
        clock: ports.Clock,
        *,
        timeout: float = 60.0,
        deadline_margin: float = 0.5,
    ) -> None:
        self._service = service
        self._waiter = waiter
        self._clock = clock
        self._timeout = timeout
        self._margin = deadline_margin  # time to send the answer before the caller stops listening
        self._locks = locks.KeyedLock()

    def _wait(self, check: Callable[[], T | None], context: grpc.ServicerContext | None, *, node: str, what: str) -> T:
        """``waiter.wait`` for at most our timeout and never past the caller's deadline (see the module doc)."""
        remaining = grpc_status.time_left(context)
        by_deadline = remaining is not None and remaining - self._margin < self._timeout
        budget = max(0.0, remaining - self._margin) if remaining is not None and by_deadline else self._timeout
        try:
            return self._waiter.wait(check, budget, self._clock.now, key=node, what=what)
        except runtime.WaitTimedOut as exc:
            if by_deadline:
                raise errors.DeadlineExceeded(f"{what}: not done before the caller's deadline; retry") from exc
            raise

    def _until_ready(
        self,
        first: controller.Ready | controller.Pending,
        check: Callable[[], controller.Ready | controller.Pending],
        context: grpc.ServicerContext | None,
        what: str,
    ) -> controller.Ready:
        if isinstance(first, controller.Ready):
            return first

        def ready_or_none() -> controller.Ready | None:
            state = check()
            return state if isinstance(state, controller.Ready) else None

        return self._wait(ready_or_none, context, node=first.node_name, what=what)

    @grpc_status.handler
    def CreateVolume(self, request: csi.CreateVolumeRequest, context: grpc.ServicerContext) -> csi.CreateVolumeResponse:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        # The name becomes a LogicalVolume's name, which Kubernetes wants in lower case; like upstream, fold it
        # (external-provisioner's "pvc-<uuid>" already is; csi-sanity's names are not).
        name = request.name.lower()
        fstype = check_capabilities(request.volume_capabilities)
        params = request.parameters
        limits = iolimits.parse(params)  # INVALID_ARGUMENT before anything is made
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
        with self._locks.hold(name, blocking=False):
            first = self._service.create_volume(req)
            ready = self._until_ready(
                first, lambda: self._service.creation_state(name), context, f"CreateVolume {name}"
            )
            self._service.answered(ready.cr_name)
        return csi.CreateVolumeResponse(volume=_volume(ready, request, limits))

    @grpc_status.handler
    def DeleteVolume(self, request: csi.DeleteVolumeRequest, context: grpc.ServicerContext) -> csi.DeleteVolumeResponse:
        self._delete(request.volume_id, context, snapshot=False)
        return csi.DeleteVolumeResponse()

    def _delete(self, volume_id: str, context: grpc.ServicerContext | None, *, snapshot: bool) -> None:
        """Delete and wait until the node agent has removed the LV: once the CO hears OK the volume is gone and
        its name can be used again (csi-sanity reuses names at once)."""
        with self._locks.hold(volume_id, blocking=False):
            lv = self._service.delete_volume(volume_id, snapshot=snapshot)
        if lv is None:
            return
        self._wait(
            lambda: True if self._service.deletion_finished(lv) else None,
            context,
            node=lv.spec.node_name,
            what=f"{'DeleteSnapshot' if snapshot else 'DeleteVolume'} {volume_id}",
        )

    @grpc_status.handler
    def CreateSnapshot(
        self, request: csi.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> csi.CreateSnapshotResponse:
        if not request.name:
            raise errors.InvalidArgument("name is required")
        name = request.name.lower()  # LogicalVolume names are lower case; CSI names need not be
        with self._locks.hold(name, blocking=False):
            first = self._service.create_snapshot(name=name, source_volume_id=request.source_volume_id)
            ready = self._until_ready(
                first, lambda: self._service.creation_state(name), context, f"CreateSnapshot {name}"
            )
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
        self._delete(request.snapshot_id, context, snapshot=True)  # a snapshot is a LogicalVolume too
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
        with self._locks.hold(request.volume_id, blocking=False):
            first = self._service.expand_volume(request.volume_id, rng.required_bytes, rng.limit_bytes, fstype)
            lv = self._service.find_by_volume_id(request.volume_id)
            if lv is None:
                raise errors.NotFound(f"volume {request.volume_id!r} disappeared while being expanded")
            size = lv.spec.size
            stamp = first.request if isinstance(first, controller.Pending) else ""
            ready = self._until_ready(
                first,
                lambda: self._service.expansion_state(lv.name, size, stamp),
                context,
                f"ControllerExpandVolume {request.volume_id}",
            )
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
