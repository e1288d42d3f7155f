"""CSI Identity service: plugin name, capabilities (as upstream advertises), readiness."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf import wrappers_pb2

from topolvm import __version__, constants, grpc_status
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc

_Service = csi.PluginCapability.Service
_Expansion = csi.PluginCapability.VolumeExpansion


@grpc_status.unimplemented_from(csi_grpc.IdentityServicer)
class IdentityServicer(csi_grpc.IdentityServicer):  # type: ignore[misc]
    def __init__(self, *, controller: bool, ready: Callable[[], bool] = lambda: True) -> None:
        self._controller = controller
        self._ready = ready

    @grpc_status.handler
    def GetPluginInfo(
        self, request: csi.GetPluginInfoRequest, context: grpc.ServicerContext
    ) -> csi.GetPluginInfoResponse:
        return csi.GetPluginInfoResponse(name=constants.PLUGIN_NAME, vendor_version=__version__)

    @grpc_status.handler
    def GetPluginCapabilities(
        self, request: csi.GetPluginCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi.GetPluginCapabilitiesResponse:
        caps = [
            csi.PluginCapability(volume_expansion=_Expansion(type=_Expansion.ONLINE)),
            csi.PluginCapability(volume_expansion=_Expansion(type=_Expansion.OFFLINE)),
        ]
        if self._controller:
            caps += [
                csi.PluginCapability(service=_Service(type=_Service.CONTROLLER_SERVICE)),
                csi.PluginCapability(service=_Service(type=_Service.VOLUME_ACCESSIBILITY_CONSTRAINTS)),
            ]
        return csi.GetPluginCapabilitiesResponse(capabilities=caps)

    @grpc_status.handler
    def Probe(self, request: csi.ProbeRequest, context: grpc.ServicerContext) -> csi.ProbeResponse:
        return csi.ProbeResponse(ready=wrappers_pb2.BoolValue(value=self._ready()))
