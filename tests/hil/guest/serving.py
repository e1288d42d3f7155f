"""Waiting for a CSI driver process in the VM to serve (its gRPC health service says SERVING)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc


def wait_serving(socket_path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the driver exited with {process.returncode}:\n{log.read_text()[-4000:]}", pytrace=False)
        if socket_path.is_socket():
            with grpc.insecure_channel(f"unix:{socket_path}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service="csi.v1.Node"), timeout=5)
                except grpc.RpcError:
                    reply = None
            if reply is not None and reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        time.sleep(0.5)
    pytest.fail(f"the driver did not serve within {timeout:.0f}s:\n{log.read_text()[-4000:]}", pytrace=False)
