"""topolvm-livenessprobe over real unix sockets: GET /healthz against a CSI Identity server that is ready, not
ready, silent about readiness, or gone; its flags as upstream's livenessprobe takes them; and the console entry
point as a process, stopped by SIGTERM."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from topolvm import constants, unix_grpc
from topolvm.csi import identity
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.sidecars import flags, healthz, livenessprobe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def csi_socket() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tlive-", dir="/tmp"))
    yield directory / "csi.sock"
    shutil.rmtree(directory, ignore_errors=True)


class SilentProbe(csi_grpc.IdentityServicer):  # type: ignore[misc]
    """A driver whose Probe reply leaves ``ready`` unset."""

    def GetPluginInfo(
        self, request: csi.GetPluginInfoRequest, context: grpc.ServicerContext
    ) -> csi.GetPluginInfoResponse:
        return csi.GetPluginInfoResponse(name="silent.example.com", vendor_version="1")

    def Probe(self, request: csi.ProbeRequest, context: grpc.ServicerContext) -> csi.ProbeResponse:
        return csi.ProbeResponse()


def serve(path: Path, servicer: csi_grpc.IdentityServicer) -> grpc.Server:
    return unix_grpc.serve(str(path), lambda s: csi_grpc.add_IdentityServicer_to_server(servicer, s), max_workers=2)


def get(port: int, path: str = "/healthz") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def probe_server(csi_socket: Path) -> Iterator[tuple[livenessprobe.LivenessProbe, int]]:
    probe = livenessprobe.LivenessProbe(str(csi_socket), probe_timeout=2.0)
    server = healthz.HealthServer("127.0.0.1", 0, probe.check).start()
    yield probe, server.port
    server.close()


def test_a_ready_driver_is_healthy(csi_socket: Path, probe_server: tuple[livenessprobe.LivenessProbe, int]) -> None:
    probe, port = probe_server
    server = serve(csi_socket, identity.IdentityServicer(controller=False))
    try:
        assert get(port) == (200, "ok")
        assert probe.driver() == constants.PLUGIN_NAME
        status, _ = get(port, "/metrics")
        assert status == 404
    finally:
        server.stop(None)


def test_probe_without_ready_counts_as_ready(
    csi_socket: Path, probe_server: tuple[livenessprobe.LivenessProbe, int]
) -> None:
    probe, port = probe_server
    server = serve(csi_socket, SilentProbe())
    try:
        assert get(port) == (200, "ok")
        assert probe.driver() == "silent.example.com"
    finally:
        server.stop(None)


def test_a_driver_that_is_not_ready_fails(
    csi_socket: Path, probe_server: tuple[livenessprobe.LivenessProbe, int]
) -> None:
    _, port = probe_server
    server = serve(csi_socket, identity.IdentityServicer(controller=False, ready=lambda: False))
    try:
        status, body = get(port)
        assert status == 500 and "not ready" in body
    finally:
        server.stop(None)


def test_a_gone_socket_fails_and_a_new_driver_heals(
    csi_socket: Path, probe_server: tuple[livenessprobe.LivenessProbe, int]
) -> None:
    _, port = probe_server
    status, body = get(port)  # never there
    assert status == 500 and "Probe" in body and "UNAVAILABLE" in body
    server = serve(csi_socket, identity.IdentityServicer(controller=False))
    assert get(port) == (200, "ok")
    server.stop(None)
    csi_socket.unlink(missing_ok=True)  # gRPC removes it on stop; a killed driver would leave it
    status, body = get(port)
    assert status == 500 and "UNAVAILABLE" in body
    server = serve(csi_socket, identity.IdentityServicer(controller=False))  # the driver's container restarted
    try:
        assert get(port) == (200, "ok")
    finally:
        server.stop(None)


def test_upstream_flags_and_defaults() -> None:
    defaults = livenessprobe.parse_args([])
    assert (defaults.csi_address, defaults.http_endpoint, defaults.probe_timeout) == ("/run/csi/socket", ":9808", 3.0)
    args = livenessprobe.parse_args(["-csi-address=/csi/csi.sock", "--probe-timeout=500ms", "--v=5"])
    assert (args.csi_address, args.probe_timeout, args.verbosity) == ("/csi/csi.sock", 0.5, 5)
    assert livenessprobe.parse_args(["--health-port=9999"]).http_endpoint == ":9999"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--http-endpoint=:9808", "--health-port=9808"], "only one of", id="two-endpoints"),
        pytest.param(["--probe-timeout=3"], "invalid duration", id="timeout-without-unit"),
        pytest.param(["--probe-timeout=0s"], "must be positive", id="zero-timeout"),
        pytest.param(["--metrics-address=:8080"], "unrecognized", id="metrics-not-served"),
    ],
)
def test_bad_flags_exit_2_with_the_reason(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        livenessprobe.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0, *, fail: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if fail:
                pytest.fail(f"timed out waiting for {what}")
            return False
        time.sleep(0.05)
    return True


def test_the_process_serves_healthz_and_stops_on_sigterm(csi_socket: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = serve(csi_socket, identity.IdentityServicer(controller=False))
    argv = [sys.executable, "-m", "topolvm.sidecars.livenessprobe", f"--csi-address={csi_socket}"]
    argv.append(f"--http-endpoint=127.0.0.1:{port}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:

        def answers() -> bool:
            try:
                return get(port)[0] == 200
            except OSError:
                return process.poll() is not None

        if not wait_until(answers, "the livenessprobe's /healthz", fail=False):
            process.kill()
            pytest.fail(f"no 200 from /healthz; the livenessprobe said:\n{process.communicate()[0]}")
        assert get(port) == (200, "ok")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert f"driver={constants.PLUGIN_NAME}" in output
    finally:
        process.kill()
        process.communicate()
        server.stop(None)


def test_an_endpoint_without_host_listens_on_every_interface() -> None:
    """The chart passes Go's ``:9808``: kubelet's probe comes to the pod's IP, IPv4 or IPv6."""
    server = healthz.HealthServer(*flags.http_address(":0"), lambda: (False, "not yet")).start()
    try:
        assert get(server.port) == (500, "not yet")
        if socket.has_ipv6:
            with urllib.request.urlopen(f"http://[::1]:{server.port}/nothing", timeout=10) as reply:
                pytest.fail(f"answered {reply.status} for an unknown path")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    finally:
        server.close()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3s", 3.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5h", 5400.0), ("0", 0.0), ("250us", 0.00025)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert flags.go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3", "s", "3 s", "3sec", "1s2"])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        flags.go_duration(text)
