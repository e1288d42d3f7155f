"""``topolvm-registrar``: node-driver-registrar's job with its flags, for the chart's csi-registrar container when
``image.csi.builtinSidecars`` is true.

At start it asks the CSI driver for its name (Identity.GetPluginInfo on ``--csi-address``, retried with backoff
until the driver answers), then serves kubelet's plugin registration API (pluginregistration.Registration) on
``<--plugin-registration-path>/<driver>-reg.sock``. kubelet's plugin watcher finds that socket, calls GetInfo
(a CSI plugin whose socket on the host is ``--kubelet-registration-path``) and reports the outcome with
NotifyRegistrationStatus. A refused registration ends the process with exit code 1, as upstream does, so the
container restarts and registers again. ``GET /healthz`` on ``--http-endpoint`` is 200 once kubelet reported the
plugin registered and the registration socket is still there, else 500 with the reason. SIGTERM removes the
socket (kubelet then deregisters the driver) and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from topolvm import __version__, errors, process, unix_grpc
from topolvm.sidecars import csi_identity, flags, healthz
from topolvm.sidecars.proto import pluginregistration_pb2 as reg
from topolvm.sidecars.proto import pluginregistration_pb2_grpc as reg_grpc

log = logging.getLogger("topolvm.registrar")

CSI_PLUGIN = "CSIPlugin"
# The versions of kubelet's CSI plugin protocol a registrar announces (kubelet accepts 1.0.0 and up).
SUPPORTED_VERSIONS = ("1.0.0",)
SERVICE_NAME = "pluginregistration.Registration"
KUBELET_REGISTRATION_PROBE = "kubelet-registration-probe"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="topolvm-registrar", description=__doc__.split("\n\n")[0])
    p.add_argument("--csi-address", default="/run/csi/socket", help="the CSI driver's socket (default: %(default)s)")
    p.add_argument(
        "--kubelet-registration-path",
        default="",
        help="the CSI driver's socket as a path on the host, which kubelet dials (required)",
    )
    p.add_argument(
        "--plugin-registration-path",
        default="/registration",
        help="kubelet's plugin registration directory, as mounted here (default: %(default)s)",
    )
    p.add_argument("--http-endpoint", default="", help="serve GET /healthz on HOST:PORT, e.g. :9809 (default: off)")
    p.add_argument("--health-port", type=int, default=0, help="(deprecated) same as --http-endpoint=:PORT")
    p.add_argument(
        "--timeout",
        type=flags.go_duration,
        default=1.0,
        metavar="DURATION",
        help="deadline of each call to the CSI driver (default: 1s)",
    )
    p.add_argument("--connection-timeout", type=flags.go_duration, metavar="DURATION", help="(deprecated, ignored)")
    p.add_argument(
        "--mode",
        default="",
        help=f"(deprecated) {KUBELET_REGISTRATION_PROBE}: exit 0 at once, as upstream does; otherwise register",
    )
    flags.add_bool(p, "--version", "print the version and exit")
    flags.add_verbosity(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = flags.parse(parser, argv)
    if args.version:
        return args
    if not args.kubelet_registration_path:
        parser.error("--kubelet-registration-path is required (the CSI driver's socket as a path on the host)")
    if args.health_port and args.http_endpoint:
        parser.error("only one of --health-port and --http-endpoint can be set")
    if args.health_port:
        args.http_endpoint = f":{args.health_port}"
    if args.http_endpoint:
        try:
            flags.http_address(args.http_endpoint)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"--http-endpoint: {exc}")
    return args


class RegistrationServicer(reg_grpc.RegistrationServicer):  # type: ignore[misc]
    """kubelet's side of the conversation: what we are, and kubelet's verdict handed to ``on_status``."""

    def __init__(self, info: reg.PluginInfo, on_status: Callable[[reg.RegistrationStatus], None]) -> None:
        self._info = info
        self._on_status = on_status

    def GetInfo(self, request: reg.InfoRequest, context: grpc.ServicerContext) -> reg.PluginInfo:
        log.debug("GetInfo driver=%s", self._info.name)
        return self._info

    def NotifyRegistrationStatus(
        self, request: reg.RegistrationStatus, context: grpc.ServicerContext
    ) -> reg.RegistrationStatusResponse:
        self._on_status(request)
        return reg.RegistrationStatusResponse()


class Registrar:
    """One registration, from waiting for the driver to removing the socket. ``run`` returns the exit code:
    0 when ``stop`` is set, 1 when kubelet refused the plugin (which sets ``stop`` too) or the socket cannot be
    served."""

    def __init__(
        self,
        *,
        csi_address: str,
        kubelet_registration_path: str,
        plugin_registration_path: str,
        http_endpoint: str = "",
        timeout: float = 1.0,
        stop: threading.Event | None = None,
        backoff: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self.csi_address = csi_address
        self.endpoint = kubelet_registration_path
        self.directory = Path(plugin_registration_path)
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self._backoff = backoff
        self._lock = threading.Lock()
        self._driver: str | None = None
        self._waiting_for: str = "the CSI driver has not been asked yet"
        self._status: reg.RegistrationStatus | None = None
        self._health: healthz.HealthServer | None = None
        if http_endpoint:
            self._health = healthz.HealthServer(*flags.http_address(http_endpoint), self.health)

    @property
    def http_port(self) -> int | None:
        return self._health.port if self._health else None

    @property
    def socket_path(self) -> Path | None:
        return self.directory / f"{self._driver}-reg.sock" if self._driver else None

    def health(self) -> tuple[bool, str]:
        with self._lock:
            driver, socket_path, status = self._driver, self.socket_path, self._status
            waiting_for = self._waiting_for
        if driver is None or socket_path is None:
            return False, f"waiting for the CSI driver at {self.csi_address}: {waiting_for}"
        if status is None:
            return False, f"kubelet has not reported the registration of {driver} ({socket_path}) yet"
        if not status.plugin_registered:
            return False, f"kubelet refused {driver}: {status.error}"
        if not socket_path.is_socket():
            return False, f"registration socket {socket_path} does not exist"
        return True, "ok"

    def _on_status(self, status: reg.RegistrationStatus) -> None:
        with self._lock:
            self._status = status
        if status.plugin_registered:
            log.info("kubelet registered the plugin driver=%s endpoint=%s", self._driver, self.endpoint)
            return
        # Upstream exits here so the container restarts and the registration starts over.
        log.error("kubelet refused the plugin driver=%s error=%r; exiting", self._driver, status.error)
        self.stop.set()

    def _wait_for_driver(self) -> str | None:
        delay, longest = self._backoff
        while not self.stop.is_set():
            try:
                return csi_identity.driver_name(self.csi_address, timeout=self.timeout)
            except csi_identity.CallFailed as exc:
                with self._lock:
                    self._waiting_for = str(exc)
                log.info("waiting for the CSI driver address=%s retry_in=%.1fs error=%s", self.csi_address, delay, exc)
            process.wait(self.stop, delay)
            delay = min(delay * 2, longest)
        return None

    def run(self) -> int:
        if self._health is not None:
            self._health.start()
        try:
            return self._run()
        finally:
            if self._health is not None:
                self._health.close()

    def _run(self) -> int:
        driver = self._wait_for_driver()
        if driver is None:
            return 0
        with self._lock:
            self._driver = driver
        socket_path = self.socket_path
        assert socket_path is not None
        log.info("CSI driver driver=%s address=%s", driver, self.csi_address)
        info = reg.PluginInfo(
            type=CSI_PLUGIN, name=driver, endpoint=self.endpoint, supported_versions=list(SUPPORTED_VERSIONS)
        )
        servicer = RegistrationServicer(info, self._on_status)
        try:
            server = unix_grpc.serve(
                str(socket_path),
                lambda s: reg_grpc.add_RegistrationServicer_to_server(servicer, s),
                service_names=(SERVICE_NAME,),
                max_workers=4,
                thread_name="registration",
            )
        except (errors.TopoLVMError, OSError, RuntimeError) as exc:
            log.error("cannot serve the registration socket driver=%s socket=%s: %s", driver, socket_path, exc)
            return 1
        log.info("registration socket ready driver=%s socket=%s endpoint=%s", driver, socket_path, self.endpoint)
        process.wait(self.stop)
        # kubelet still gets its answer to NotifyRegistrationStatus. gRPC unlinks the socket path as the server
        # goes, whoever bound it last: during a surge update (two pods on the node) the old pod takes the new
        # one's socket with it and kubelet deregisters the driver until the new registrar restarts (its liveness
        # probe fails); upstream's preStop rm does the same. The chart's DaemonSet rolls without surge.
        server.stop(1).wait()
        socket_path.unlink(missing_ok=True)
        log.info("registration socket removed driver=%s socket=%s", driver, socket_path)
        with self._lock:
            refused = self._status is not None and not self._status.plugin_registered
        return 1 if refused else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(f"topolvm-registrar {__version__}")
        return 0
    flags.setup_logging(args.verbosity)
    if args.mode == KUBELET_REGISTRATION_PROBE:
        # Upstream keeps this mode as a no-op for old manifests (node-driver-registrar issue #309).
        log.info("--mode=%s is a no-op; exiting", KUBELET_REGISTRATION_PROBE)
        return 0
    if args.connection_timeout is not None:
        log.info("--connection-timeout is deprecated and has no effect")
    try:
        registrar = Registrar(
            csi_address=args.csi_address,
            kubelet_registration_path=args.kubelet_registration_path,
            plugin_registration_path=args.plugin_registration_path,
            http_endpoint=args.http_endpoint,
            timeout=args.timeout,
            stop=process.stop_on_signals(),
        )
    except OSError as exc:
        log.error("cannot serve /healthz on %s: %s", args.http_endpoint, exc)
        return 1
    return registrar.run()


if __name__ == "__main__":
    sys.exit(main())
