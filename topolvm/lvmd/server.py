"""lvmd's gRPC server: ``LvmdService`` over a unix socket, plus the standard gRPC health service.

Handlers only convert messages; errors are mapped to status codes in one wrapper (``topolvm.grpc_status``).
The socket is created mode 0600 by ``topolvm.unix_grpc``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from topolvm import grpc_status, ports, unix_grpc
from topolvm.lvmd import convert
from topolvm.lvmd.proto import lvmd_pb2 as pb
from topolvm.lvmd.proto import lvmd_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = ("topolvm.lvmd.v1.LVService", "topolvm.lvmd.v1.VGService")


class LvmdServicer(pb_grpc.LVServiceServicer, pb_grpc.VGServiceServicer):  # type: ignore[misc]
    def __init__(self, service: ports.Lvmd, *, max_watches: int = 8) -> None:
        self.service = service
        # Each Watch holds a server thread for its lifetime; cap them so unary calls always find a thread.
        self._watch_slots = threading.BoundedSemaphore(max_watches)

    @grpc_status.handler
    def CreateLV(self, request: pb.CreateLVRequest, context: grpc.ServicerContext) -> pb.CreateLVResponse:
        lv = self.service.create_lv(
            name=request.name,
            device_class=request.device_class,
            size_bytes=request.size_bytes,
            tags=list(request.tags),
            lvcreate_option_class=request.lvcreate_option_class,
        )
        return pb.CreateLVResponse(volume=convert.lv_to_pb(lv))

    @grpc_status.handler
    def RemoveLV(self, request: pb.RemoveLVRequest, context: grpc.ServicerContext) -> pb.RemoveLVResponse:
        self.service.remove_lv(name=request.name, device_class=request.device_class)
        return pb.RemoveLVResponse()

    @grpc_status.handler
    def ResizeLV(self, request: pb.ResizeLVRequest, context: grpc.ServicerContext) -> pb.ResizeLVResponse:
        lv = self.service.resize_lv(name=request.name, device_class=request.device_class, size_bytes=request.size_bytes)
        return pb.ResizeLVResponse(volume=convert.lv_to_pb(lv))

    @grpc_status.handler
    def CreateLVSnapshot(
        self, request: pb.CreateLVSnapshotRequest, context: grpc.ServicerContext
    ) -> pb.CreateLVSnapshotResponse:
        lv = self.service.create_lv_snapshot(
            name=request.name,
            device_class=request.device_class,
            source_volume=request.source_volume,
            size_bytes=request.size_bytes,
            access_type=convert.access_from_pb(request.access_type),
            tags=list(request.tags),
        )
        return pb.CreateLVSnapshotResponse(snapshot=convert.lv_to_pb(lv))

    @grpc_status.handler
    def GetLVList(self, request: pb.GetLVListRequest, context: grpc.ServicerContext) -> pb.GetLVListResponse:
        lvs = self.service.list_lvs(device_class=request.device_class)
        return pb.GetLVListResponse(volumes=[convert.lv_to_pb(lv) for lv in lvs])

    @grpc_status.handler
    def GetFreeBytes(self, request: pb.GetFreeBytesRequest, context: grpc.ServicerContext) -> pb.GetFreeBytesResponse:
        return pb.GetFreeBytesResponse(free_bytes=self.service.free_bytes(device_class=request.device_class))

    def Watch(self, request: pb.WatchRequest, context: grpc.ServicerContext) -> Iterator[pb.WatchResponse]:
        if not self._watch_slots.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many concurrent Watch streams")
        try:
            updates: queue.SimpleQueue[Any] = queue.SimpleQueue()
            context.add_callback(lambda: updates.put(None))  # the RPC ended: client gone or server stopping
            subscription = self.service.watch(updates.put)
            try:
                while (item := updates.get()) is not None:
                    yield convert.capacity_to_pb(item)
            finally:
                subscription.close()
        finally:
            self._watch_slots.release()


def serve(service: ports.Lvmd, socket_path: str, *, max_workers: int = 32) -> grpc.Server:
    """Start serving ``service`` on ``unix:socket_path`` (a stale socket file is replaced)."""
    servicer = LvmdServicer(service, max_watches=max(1, max_workers // 4))

    def register(server: grpc.Server) -> None:
        pb_grpc.add_LVServiceServicer_to_server(servicer, server)
        pb_grpc.add_VGServiceServicer_to_server(servicer, server)

    return unix_grpc.serve(
        socket_path, register, service_names=SERVICE_NAMES, max_workers=max_workers, thread_name="lvmd-grpc"
    )
