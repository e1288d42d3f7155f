"""topolvm-registrar end to end over real unix sockets: a CSI Identity server (topolvm/csi/identity.py) on one
socket, the registrar serving kubelet's plugin registration API on another, and the test acting as kubelet's
plugin watcher (GetInfo, NotifyRegistrationStatus) and as the container's livenessProbe (GET /healthz)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.support import processes
from topolvm import constants, unix_grpc
from topolvm.csi import identity
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.sidecars import registrar
from topolvm.sidecars.proto import pluginregistration_pb2 as reg
from topolvm.sidecars.proto import pluginregistration_pb2_grpc as reg_grpc

HOST_SOCKET = "/var/lib/kubelet/plugins/topolvm.io/node/csi-topolvm.sock"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to 107 bytes) with registration/ inside."""
    directory = Path(tempfile.mkdtemp(prefix="treg-", dir="/tmp"))
    (directory / "registration").mkdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def serve_identity(path: Path) -> grpc.Server:
    def register(server: grpc.Server) -> None:
        csi_grpc.add_IdentityServicer_to_server(identity.IdentityServicer(controller=False), server)

    return unix_grpc.serve(str(path), register, max_workers=2)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def kubelet(reg_socket: Path) -> reg_grpc.RegistrationStub:
    channel = grpc.insecure_channel(f"unix:{reg_socket}")
    return reg_grpc.RegistrationStub(channel)


def registration_socket(directory: Path) -> Path:
    return directory / "registration" / f"{constants.PLUGIN_NAME}-reg.sock"


class InProcess:
    """The registrar run in a thread (``Registrar.run``), stopped as SIGTERM would stop it."""

    def __init__(self, directory: Path, *, http_endpoint: str = "127.0.0.1:0") -> None:
        self.registrar = registrar.Registrar(
            csi_address=str(directory / "csi.sock"),
            kubelet_registration_path=HOST_SOCKET,
            plugin_registration_path=str(directory / "registration"),
            http_endpoint=http_endpoint,
            timeout=1.0,
            backoff=(0.05, 0.2),
        )
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.code = self.registrar.run()

    def __enter__(self) -> InProcess:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.registrar.stop.set()
        self.thread.join(10)

    @property
    def port(self) -> int:
        assert self.registrar.http_port is not None
        return self.registrar.http_port


def test_kubelet_registers_the_driver_and_healthz_turns_ok(sockets: Path) -> None:
    csi_server = serve_identity(sockets / "csi.sock")
    try:
        with InProcess(sockets) as run:
            reg_socket = registration_socket(sockets)
            wait_until(reg_socket.is_socket, "the registration socket")
            assert reg_socket.stat().st_mode & 0o777 == 0o600
            status, body = healthz(run.port)
            assert status == 500 and "kubelet has not reported" in body

            info = kubelet(reg_socket).GetInfo(reg.InfoRequest(), timeout=5)
            assert info.type == "CSIPlugin"
            assert info.name == constants.PLUGIN_NAME
            assert info.endpoint == HOST_SOCKET
            assert list(info.supported_versions) == ["1.0.0"]

            kubelet(reg_socket).NotifyRegistrationStatus(reg.RegistrationStatus(plugin_registered=True), timeout=5)
            assert healthz(run.port) == (200, "ok")
            assert run.thread.is_alive()

            reg_socket.unlink()  # someone removed it: kubelet deregisters the plugin, so we are not healthy
            status, body = healthz(run.port)
            assert status == 500 and "does not exist" in body
        assert run.code == 0
    finally:
        csi_server.stop(None)


def test_a_stale_socket_is_replaced_and_stop_removes_it(sockets: Path) -> None:
    reg_socket = registration_socket(sockets)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(reg_socket))
    stale.close()
    csi_server = serve_identity(sockets / "csi.sock")
    try:
        with InProcess(sockets) as run:
            wait_until(lambda: run.registrar.socket_path is not None, "the driver's name")
            # the stale socket refuses calls until the registrar replaced it
            info = kubelet(reg_socket).GetInfo(reg.InfoRequest(), timeout=5, wait_for_ready=True)
            assert info.name == constants.PLUGIN_NAME
        assert run.code == 0 and not reg_socket.exists()
    finally:
        csi_server.stop(None)


def test_waits_for_the_csi_socket_then_registers(sockets: Path) -> None:
    with InProcess(sockets) as run:
        time.sleep(0.5)  # a few retries with nothing listening
        assert run.thread.is_alive() and not any((sockets / "registration").iterdir())
        status, body = healthz(run.port)
        assert status == 500 and "waiting for the CSI driver" in body and "GetPluginInfo" in body
        csi_server = serve_identity(sockets / "csi.sock")
        try:
            reg_socket = registration_socket(sockets)
            wait_until(reg_socket.is_socket, "the registration socket once the driver answers")
            assert kubelet(reg_socket).GetInfo(reg.InfoRequest(), timeout=5).name == constants.PLUGIN_NAME
        finally:
            csi_server.stop(None)


def start_process(sockets: Path, port: int) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "topolvm.sidecars.registrar",
        f"--csi-address={sockets / 'csi.sock'}",
        f"--kubelet-registration-path={HOST_SOCKET}",
        f"--plugin-registration-path={sockets / 'registration'}",
        f"--http-endpoint=127.0.0.1:{port}",
        "-v=5",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the registrar did not exit:\n{output}")
    return process.returncode, output


def test_a_refused_registration_exits_non_zero(sockets: Path) -> None:
    csi_server = serve_identity(sockets / "csi.sock")
    process = start_process(sockets, processes.free_port())
    try:
        reg_socket = registration_socket(sockets)
        wait_until(lambda: reg_socket.is_socket() or process.poll() is not None, "the registration socket")
        refused = reg.RegistrationStatus(plugin_registered=False, error="no CSI plugin for you")
        kubelet(reg_socket).NotifyRegistrationStatus(refused, timeout=5)
        code, output = finish(process)
        assert code != 0, output
        assert "no CSI plugin for you" in output
    finally:
        process.kill()
        process.communicate()
        csi_server.stop(None)


def test_sigterm_removes_the_socket_and_exits_zero(sockets: Path) -> None:
    csi_server = serve_identity(sockets / "csi.sock")
    port = processes.free_port()
    process = start_process(sockets, port)
    try:
        reg_socket = registration_socket(sockets)
        wait_until(lambda: reg_socket.is_socket() or process.poll() is not None, "the registration socket")
        kubelet(reg_socket).NotifyRegistrationStatus(reg.RegistrationStatus(plugin_registered=True), timeout=5)
        assert healthz(port) == (200, "ok")
        process.send_signal(signal.SIGTERM)
        code, output = finish(process)
        assert code == 0, output
        assert not reg_socket.exists()
    finally:
        process.kill()
        process.communicate()
        csi_server.stop(None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--csi-address=/csi.sock"], "--kubelet-registration-path is required", id="no-host-path"),
        pytest.param([f"--kubelet-registration-path={HOST_SOCKET}", "--timeout=soon"], "invalid", id="timeout"),
        pytest.param(
            [f"--kubelet-registration-path={HOST_SOCKET}", "--http-endpoint=:9809", "--health-port=9809"],
            "only one of",
            id="two-endpoints",
        ),
        pytest.param([f"--kubelet-registration-path={HOST_SOCKET}", "--http-endpoint=9809"], "HOST:PORT", id="addr"),
        pytest.param([f"--kubelet-registration-path={HOST_SOCKET}", "--no-such-flag"], "unrecognized", id="unknown"),
    ],
)
def test_bad_flags_exit_2_with_the_reason(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        registrar.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_go_style_flags_are_understood() -> None:
    args = registrar.parse_args(
        ["-csi-address=/csi/csi.sock", "-kubelet-registration-path", HOST_SOCKET, "--timeout=1m30s", "-v=5"]
    )
    assert (args.csi_address, args.kubelet_registration_path) == ("/csi/csi.sock", HOST_SOCKET)
    assert (args.timeout, args.verbosity, args.plugin_registration_path) == (90.0, 5, "/registration")
    assert registrar.parse_args([f"--kubelet-registration-path={HOST_SOCKET}", "--health-port=9809"]).http_endpoint == (
        ":9809"
    )


def test_kubelet_registration_probe_mode_is_a_no_op(sockets: Path) -> None:
    argv = [f"--kubelet-registration-path={HOST_SOCKET}", "--mode=kubelet-registration-probe"]
    assert registrar.main([*argv, f"--plugin-registration-path={sockets}"]) == 0
    assert list(sockets.iterdir()) == [sockets / "registration"]
