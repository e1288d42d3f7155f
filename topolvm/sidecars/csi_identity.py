"""The CSI Identity calls the sidecars make: the driver's name (GetPluginInfo) and its readiness (Probe).

Each call dials the socket afresh, as upstream's livenessprobe does, so a driver that restarted on a new socket
inode is reached and a socket that is gone fails the call at once (UNAVAILABLE) instead of waiting.
Used by ``topolvm.sidecars.registrar`` and ``topolvm.sidecars.livenessprobe``.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc


class CallFailed(Exception):
    """A CSI call did not answer: the socket is missing, nobody listens, or the deadline passed."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    # Probe's ready field was absent: CSI says the plugin is then ready (csi.proto, ProbeResponse).
    unset: bool


def target(address: str) -> str:
    """The gRPC target of ``--csi-address``: a socket path (``/csi/csi.sock``) or a ``unix:`` URL as upstream
    takes it (``unix:///csi/csi.sock``)."""
    return address if address.startswith("unix:") else f"unix:{address}"


def _call_failed(address: str, method: str, exc: grpc.RpcError) -> CallFailed:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    name = code.name if code is not None else "ERROR"
    return CallFailed(f"{method} on {address}: {name}: {details}")


def driver_name(address: str, *, timeout: float) -> str:
    """The driver's name from GetPluginInfo; ``CallFailed`` when it does not answer within ``timeout`` seconds
    or answers with no name (upstream refuses an empty name too)."""
    with grpc.insecure_channel(target(address)) as channel:
        try:
            info = csi_grpc.IdentityStub(channel).GetPluginInfo(csi.GetPluginInfoRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise _call_failed(address, "GetPluginInfo", exc) from None
    if not info.name:
        raise CallFailed(f"GetPluginInfo on {address}: the driver returned an empty name")
    return str(info.name)


def probe(address: str, *, timeout: float) -> Readiness:
    with grpc.insecure_channel(target(address)) as channel:
        try:
            reply = csi_grpc.IdentityStub(channel).Probe(csi.ProbeRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise _call_failed(address, "Probe", exc) from None
    if not reply.HasField("ready"):
        return Readiness(ready=True, unset=True)
    return Readiness(ready=bool(reply.ready.value), unset=False)
