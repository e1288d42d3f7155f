"""Serving gRPC on a unix socket the same way everywhere (lvmd, CSI): stale sockets replaced, mode 0600
from birth, the standard health service registered and SERVING."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from topolvm import errors

log = logging.getLogger(__name__)


def serve(
    socket_path: str,
    register: Callable[[grpc.Server], None],
    *,
    service_names: Sequence[str] = (),
    max_workers: int = 32,
    thread_name: str = "grpc",
) -> grpc.Server:
    path = Path(socket_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        path.unlink()
    elif path.exists():
        raise errors.ConfigError(f"socket {path} exists and is not a socket")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name))
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # The socket is born 0600 (whoever can connect can create and delete volumes): gRPC binds it in
    # add_insecure_port already, so the umask covers that call and the start.
    old_umask = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix:{path}")
        server.start()
    finally:
        os.umask(old_umask)
    path.chmod(0o600)
    for name in ("", *service_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on unix:%s", ", ".join(service_names) or "gRPC", path)
    return server
