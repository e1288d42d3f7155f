"""lvmd's gRPC server: ``LvmdService`` over a unix socket, plus the standard gRPC health service.

Handlers only convert messages; errors are mapped to status codes in one wrapper (``topolvm.grpc_status``).
The socket is created mode 0600: whoever can talk to lvmd can create and delete volumes.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from topolvm import errors, grpc_status, ports
from topolvm.lvmd import convert
from topolvm.lvmd.proto import lvmd_pb2 as pb
from topolvm.lvmd.proto import lvmd_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
SERVICE_NAMES = ("topolvm.lvmd.v1.LVService", "topolvm.lvmd.v1.VGService")


def _mapped(
    fn: Callable[[Any, Req, grpc.ServicerContext], Resp],
) -> Callable[[Any, Req, grpc.ServicerContext], Resp]:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            return fn(self, request, context)
        except errors.TopoLVMError as exc:
            code = grpc_status.code_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.error("%s failed: %s", fn.__name__, exc)
            context.abort(code, str(exc))
        except Exception:
            log.exception("%s failed unexpectedly", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{fn.__name__}: internal error, see the lvmd log")

    return wrapper


class LvmdServicer(pb_grpc.LVServiceServicer, pb_grpc.VGServiceServicer):  # type: ignore[misc]
    def __init__(self, service: ports.Lvmd) -> None:
        self.service = service

    @_mapped
    def CreateLV(self, request: pb.CreateLVRequest, context: grpc.ServicerContext) -> pb.CreateLVResponse:
        lv = self.service.create_lv(
            name=request.name,
            device_class=request.device_class,
            size_bytes=request.size_bytes,
            tags=list(request.tags),
            lvcreate_option_class=request.lvcreate_option_class,
        )
        return pb.CreateLVResponse(volume=convert.lv_to_pb(lv))

    @_mapped
    def RemoveLV(self, request: pb.RemoveLVRequest, context: grpc.ServicerContext) -> pb.RemoveLVResponse:
        self.service.remove_lv(name=request.name, device_class=request.device_class)
        return pb.RemoveLVResponse()

    @_mapped
    def ResizeLV(self, request: pb.ResizeLVRequest, context: grpc.ServicerContext) -> pb.ResizeLVResponse:
        lv = self.service.resize_lv(name=request.name, device_class=request.device_class, size_bytes=request.size_bytes)
        return pb.ResizeLVResponse(volume=convert.lv_to_pb(lv))

    @_mapped
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

    @_mapped
    def GetLVList(self, request: pb.GetLVListRequest, context: grpc.ServicerContext) -> pb.GetLVListResponse:
        lvs = self.service.list_lvs(device_class=request.device_class)
        return pb.GetLVListResponse(volumes=[convert.lv_to_pb(lv) for lv in lvs])

    @_mapped
    def GetFreeBytes(self, request: pb.GetFreeBytesRequest, context: grpc.ServicerContext) -> pb.GetFreeBytesResponse:
        return pb.GetFreeBytesResponse(free_bytes=self.service.free_bytes(device_class=request.device_class))

    def Watch(self, request: pb.WatchRequest, context: grpc.ServicerContext) -> Iterator[pb.WatchResponse]:
        updates: queue.SimpleQueue[Any] = queue.SimpleQueue()
        context.add_callback(lambda: updates.put(None))  # the RPC ended: client gone or server stopping
        subscription = self.service.watch(updates.put)
        try:
            while (item := updates.get()) is not None:
                yield convert.capacity_to_pb(item)
        finally:
            subscription.close()


def serve(service: ports.Lvmd, socket_path: str, *, max_workers: int = 32) -> grpc.Server:
    """Start serving ``service`` on ``unix:socket_path`` (a stale socket file is replaced)."""
    path = Path(socket_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        path.unlink()
    elif path.exists():
        raise errors.ConfigError(f"socket-name: {path} exists and is not a socket")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lvmd-grpc"))
    servicer = LvmdServicer(service)
    pb_grpc.add_LVServiceServicer_to_server(servicer, server)
    pb_grpc.add_VGServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"unix:{path}")
    old_umask = os.umask(0o177)  # the socket is born 0600, with no window where others could connect
    try:
        server.start()
    finally:
        os.umask(old_umask)
    path.chmod(0o600)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("lvmd serving on unix:%s", path)
    return server
