"""``topolvm-livenessprobe``: livenessprobe's job with its flags, for the chart's liveness-probe containers when
``image.csi.builtinSidecars`` is true.

``GET /healthz`` on ``--http-endpoint`` (default ``:9808``) dials the CSI driver on ``--csi-address`` and calls
Identity.Probe within ``--probe-timeout``: 200 ``ok`` when the driver is ready (a Probe reply without ``ready``
counts as ready, as the CSI spec says), 500 with the reason when it is not ready or does not answer. The driver's
name (GetPluginInfo, asked until it answers once) names the driver in the log. The container's own livenessProbe
points at this endpoint, so kubelet restarts the driver's container when its CSI service stops answering.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence

from topolvm import __version__, process
from topolvm.sidecars import csi_identity, flags, healthz

log = logging.getLogger("topolvm.livenessprobe")

DEFAULT_HEALTH_PORT = 9808
# Upstream's default since livenessprobe v2.17 (it was 1s before); the chart runs v2.19.0.
DEFAULT_PROBE_TIMEOUT = 3.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="topolvm-livenessprobe", description=__doc__.split("\n\n")[0])
    p.add_argument("--csi-address", default="/run/csi/socket", help="the CSI driver's socket (default: %(default)s)")
    p.add_argument(
        "--http-endpoint",
        default="",
        help=f"serve GET /healthz on HOST:PORT (default: :{DEFAULT_HEALTH_PORT}, or :--health-port)",
    )
    p.add_argument(
        "--health-port",
        type=int,
        default=None,
        help=f"(deprecated) serve on :PORT; not together with --http-endpoint (default: {DEFAULT_HEALTH_PORT})",
    )
    p.add_argument(
        "--probe-timeout",
        type=flags.go_duration,
        default=DEFAULT_PROBE_TIMEOUT,
        metavar="DURATION",
        help="deadline of each Probe call (default: 3s)",
    )
    flags.add_bool(p, "--version", "print the version and exit")
    flags.add_verbosity(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = flags.parse(parser, argv)
    if args.health_port is not None and args.http_endpoint:
        parser.error("only one of --health-port and --http-endpoint can be set")
    if not args.http_endpoint:
        args.http_endpoint = f":{args.health_port if args.health_port is not None else DEFAULT_HEALTH_PORT}"
    try:
        flags.http_address(args.http_endpoint)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--http-endpoint: {exc}")
    if args.probe_timeout <= 0:
        parser.error("--probe-timeout must be positive")
    return args


class LivenessProbe:
    """The health check behind ``/healthz``: one Probe call per request, on a fresh connection."""

    def __init__(self, csi_address: str, *, probe_timeout: float) -> None:
        self.csi_address = csi_address
        self.probe_timeout = probe_timeout
        self._lock = threading.Lock()
        self._driver: str | None = None

    def driver(self) -> str:
        """The driver's name once it answered GetPluginInfo, or its address until then."""
        with self._lock:
            known = self._driver
        if known is not None:
            return known
        try:
            name = csi_identity.driver_name(self.csi_address, timeout=self.probe_timeout)
        except csi_identity.CallFailed as exc:
            log.debug("driver name unknown yet address=%s: %s", self.csi_address, exc)
            return self.csi_address
        with self._lock:
            self._driver = name
        log.info("CSI driver driver=%s address=%s", name, self.csi_address)
        return name

    def check(self) -> tuple[bool, str]:
        driver = self.driver()
        try:
            readiness = csi_identity.probe(self.csi_address, timeout=self.probe_timeout)
        except csi_identity.CallFailed as exc:
            log.error("health check failed driver=%s: %s", driver, exc)
            return False, str(exc)
        if not readiness.ready:
            log.error("health check failed driver=%s: the driver answered Probe but is not ready", driver)
            return False, "driver responded but is not ready"
        log.debug("health check succeeded driver=%s ready_unset=%s", driver, readiness.unset)
        return True, "ok"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(f"topolvm-livenessprobe {__version__}")
        return 0
    flags.setup_logging(args.verbosity)
    probe = LivenessProbe(args.csi_address, probe_timeout=args.probe_timeout)
    try:
        server = healthz.HealthServer(*flags.http_address(args.http_endpoint), probe.check)
    except OSError as exc:
        log.error("cannot serve /healthz on %s: %s", args.http_endpoint, exc)
        return 1
    stop = process.stop_on_signals()
    server.start()
    probe.driver()  # the name in the log at start, when the driver is up already
    process.wait(stop)
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
