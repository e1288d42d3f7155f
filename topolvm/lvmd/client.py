"""``LvmdClient``: the ``Lvmd`` port over lvmd's gRPC API on a unix socket.

Used by node code when lvmd runs as its own daemon (the embedded alternative is ``LvmdService`` itself). gRPC
status codes come back as the same domain errors the embedded service raises. ``watch`` follows the server's
stream on a thread and reconnects with backoff if lvmd restarts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from topolvm import errors, grpc_status, ports
from topolvm.core import model
from topolvm.lvmd import convert
from topolvm.lvmd.proto import lvmd_pb2 as pb
from topolvm.lvmd.proto import lvmd_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")


class _WatchThread:
    def __init__(self, client: LvmdClient, listener: ports.CapacityListener) -> None:
        self._client = client
        self._listener = listener
        self._closed = threading.Event()
        self._call: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="lvmd-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.2
        while not self._closed.is_set():
            try:
                stream = self._client._vg.Watch(pb.WatchRequest())
                with self._lock:
                    if self._closed.is_set():
                        stream.cancel()
                        return
                    self._call = stream
                for msg in stream:
                    delay = 0.2
                    try:
                        self._listener(convert.capacity_from_pb(msg))
                    except Exception:  # a listener bug must not end the watch (the embedded service agrees)
                        log.exception("lvmd watch listener failed")
            except ValueError:
                return  # the channel was closed under us: the client is gone
            except grpc.RpcError as exc:
                if self._closed.is_set():
                    return
                log.warning("lvmd watch stream broke (%s); reconnecting in %.1fs", grpc_status.to_domain(exc), delay)
            if self._closed.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if self._call is not None:
                self._call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


class LvmdClient:
    def __init__(self, target: str, *, timeout: float = 180.0) -> None:
        """``target``: a socket path or a gRPC target such as ``unix:/run/topolvm/lvmd.sock``."""
        if not target.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
            target = f"unix:{target}"
        self._channel = grpc.insecure_channel(target)
        self._lv = pb_grpc.LVServiceStub(self._channel)
        self._vg = pb_grpc.VGServiceStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., T], request: object) -> T:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise grpc_status.to_domain(exc) from None

    def create_lv(
        self,
        *,
        name: str,
        device_class: str,
        size_bytes: int,
        tags: Sequence[str] = (),
        lvcreate_option_class: str = "",
    ) -> model.LogicalVolume:
        req = pb.CreateLVRequest(
            name=name,
            device_class=device_class,
            size_bytes=size_bytes,
            tags=list(tags),
            lvcreate_option_class=lvcreate_option_class,
        )
        return convert.lv_from_pb(self._call(self._lv.CreateLV, req).volume)

    def remove_lv(self, *, name: str, device_class: str) -> None:
        self._call(self._lv.RemoveLV, pb.RemoveLVRequest(name=name, device_class=device_class))

    def resize_lv(self, *, name: str, device_class: str, size_bytes: int) -> model.LogicalVolume:
        req = pb.ResizeLVRequest(name=name, device_class=device_class, size_bytes=size_bytes)
        return convert.lv_from_pb(self._call(self._lv.ResizeLV, req).volume)

    def create_lv_snapshot(
        self,
        *,
        name: str,
        device_class: str,
        source_volume: str,
        size_bytes: int,
        access_type: model.AccessType = model.AccessType.READ_WRITE,
        tags: Sequence[str] = (),
    ) -> model.LogicalVolume:
        req = pb.CreateLVSnapshotRequest(
            name=name,
            device_class=device_class,
            source_volume=source_volume,
            size_bytes=size_bytes,
            access_type=convert.access_to_pb(access_type),
            tags=list(tags),
        )
        return convert.lv_from_pb(self._call(self._lv.CreateLVSnapshot, req).snapshot)

    def list_lvs(self, *, device_class: str) -> list[model.LogicalVolume]:
        resp = self._call(self._vg.GetLVList, pb.GetLVListRequest(device_class=device_class))
        return [convert.lv_from_pb(v) for v in resp.volumes]

    def free_bytes(self, *, device_class: str) -> int:
        resp: pb.GetFreeBytesResponse = self._call(
            self._vg.GetFreeBytes, pb.GetFreeBytesRequest(device_class=device_class)
        )
        return resp.free_bytes

    def capacity(self) -> model.NodeCapacity:
        try:
            stream = self._vg.Watch(pb.WatchRequest(), timeout=self._timeout)
            first = next(iter(stream))
            stream.cancel()
        except grpc.RpcError as exc:
            raise grpc_status.to_domain(exc) from None
        except StopIteration:
            raise errors.Unavailable("lvmd closed the watch stream before sending capacity") from None
        return convert.capacity_from_pb(first)

    def watch(self, listener: ports.CapacityListener) -> ports.Subscription:
        return _WatchThread(self, listener)
