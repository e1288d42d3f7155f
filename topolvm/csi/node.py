"""CSI Node service over ``topolvm.services.publish``: publish/unpublish (no staging, as upstream), volume
stats, volume health from lv_attr (NodeGetVolumeHealth, CSI v1.13 alpha), online expansion, and node info with
the topology key.

Publish, unpublish and expansion answer by the caller's deadline while their work goes on, one at a time per
volume (``topolvm.csi.volume_work``)."""

from __future__ import annotations

import grpc

from topolvm import constants, errors, grpc_status
from topolvm.csi import controller as csi_controller
from topolvm.csi import volume_work
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.services import publish

_RPC = csi.NodeServiceCapability.RPC
_CAPABILITIES = (_RPC.GET_VOLUME_STATS, _RPC.EXPAND_VOLUME, _RPC.GET_VOLUME_HEALTH)
_Usage = csi.VolumeUsage


@grpc_status.unimplemented_from(csi_grpc.NodeServicer)
class NodeServicer(csi_grpc.NodeServicer):  # type: ignore[misc]
    def __init__(self, service: publish.NodeVolumeService) -> None:
        self._service = service
        self._work = volume_work.VolumeWork()

    @grpc_status.handler
    def NodePublishVolume(
        self, request: csi.NodePublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi.NodePublishVolumeResponse:
        if not request.volume_id:
            raise errors.InvalidArgument("volume ID is required")
        if not request.HasField("volume_capability"):
            raise errors.InvalidArgument("volume capability is required")
        cap = request.volume_capability
        csi_controller.check_capabilities([cap])
        req = publish.PublishRequest(
            volume_id=request.volume_id,
            target_path=request.target_path,
            block=cap.HasField("block"),
            fstype=cap.mount.fs_type if cap.HasField("mount") else "",
            mount_flags=tuple(cap.mount.mount_flags) if cap.HasField("mount") else (),
            read_only=request.readonly,
            volume_context=dict(request.volume_context),
        )
        self._work.run(request.volume_id, lambda: self._service.publish(req), remaining=grpc_status.time_left(context))
        return csi.NodePublishVolumeResponse()

    @grpc_status.handler
    def NodeUnpublishVolume(
        self, request: csi.NodeUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi.NodeUnpublishVolumeResponse:
        self._work.run(
            request.volume_id,
            lambda: self._service.unpublish(request.volume_id, request.target_path),
            remaining=grpc_status.time_left(context),
        )
        return csi.NodeUnpublishVolumeResponse()

    @grpc_status.handler
    def NodeGetVolumeStats(
        self, request: csi.NodeGetVolumeStatsRequest, context: grpc.ServicerContext
    ) -> csi.NodeGetVolumeStatsResponse:
        usage = self._service.stats(request.volume_id, request.volume_path)
        items = [
            _Usage(unit=_Usage.BYTES, total=usage.total_bytes, used=usage.used_bytes, available=usage.available_bytes)
        ]
        if usage.total_inodes is not None:
            items.append(
                _Usage(
                    unit=_Usage.INODES,
                    total=usage.total_inodes,
                    used=usage.used_inodes or 0,
                    available=usage.available_inodes or 0,
                )
            )
        return csi.NodeGetVolumeStatsResponse(usage=items)

    @grpc_status.handler
    def NodeGetVolumeHealth(
        self, request: csi.NodeGetVolumeHealthRequest, context: grpc.ServicerContext
    ) -> csi.NodeGetVolumeHealthResponse:
        entries = [
            csi.VolumeHealth.VolumeHealthEntry(status=p.status.value, reason=p.reason, message=p.message)
            for p in self._service.health(request.volume_id)
        ]
        return csi.NodeGetVolumeHealthResponse(
            volume_health=csi.VolumeHealth(volume_id=request.volume_id, health_statuses=entries)
        )

    @grpc_status.handler
    def NodeExpandVolume(
        self, request: csi.NodeExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi.NodeExpandVolumeResponse:
        block = request.HasField("volume_capability") and request.volume_capability.HasField("block")
        size = self._work.run(
            request.volume_id,
            lambda: self._service.expand(request.volume_id, request.volume_path, block),
            remaining=grpc_status.time_left(context),
        )
        return csi.NodeExpandVolumeResponse(capacity_bytes=size)

    @grpc_status.handler
    def NodeGetCapabilities(
        self, request: csi.NodeGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.NodeGetCapabilitiesResponse:
        return csi.NodeGetCapabilitiesResponse(
            capabilities=[csi.NodeServiceCapability(rpc=_RPC(type=t)) for t in _CAPABILITIES]
        )

    @grpc_status.handler
    def NodeGetInfo(self, request: csi.NodeGetInfoRequest, context: grpc.ServicerContext) -> csi.NodeGetInfoResponse:
        name = self._service.config.node_name
        return csi.NodeGetInfoResponse(
            node_id=name, accessible_topology=csi.Topology(segments={constants.TOPOLOGY_NODE_KEY: name})
        )
