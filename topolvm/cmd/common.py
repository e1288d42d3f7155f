"""What the Kubernetes-facing commands share: common flags, metrics, and running until
SIGTERM/SIGINT (``topolvm.process``)."""

from __future__ import annotations

import argparse
import logging

from prometheus_client import start_http_server

from topolvm import errors, ports, process
from topolvm.mount import cgroup

log = logging.getLogger("topolvm")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster configuration)")
    p.add_argument("--metrics-address", default="", help="serve Prometheus metrics on HOST:PORT (default: off)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def add_cgroup_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cgroup-root",
        default="/sys/fs/cgroup",
        metavar="PATH",
        help="the host's cgroup v2 hierarchy, where kubelet makes pod cgroups; volumes with IO limits are "
        "published only when it offers the io controller; empty: off (default: %(default)s)",
    )
    p.add_argument(
        "--kubelet-cgroup-root",
        default="/",
        metavar="PATH",
        help="kubelet's cgroupRoot setting, below which it makes the kubepods hierarchy (kind: /kubelet) "
        "(default: %(default)s)",
    )


def io_limiter(root: str, kubelet_cgroup_root: str = "/") -> ports.IoLimiter | None:
    """The cgroup v2 IO limiter at ``root``, or None (logged) when volumes with IO limits cannot be published."""
    if not root:
        log.info("IO limits: off (--cgroup-root is empty); volumes with IO limits will not be published")
        return None
    if cgroup.CgroupIoLimiter.available(root):
        log.info("IO limits: pod cgroups under %s (cgroup v2, io controller)", root)
        try:
            return cgroup.CgroupIoLimiter(root, kubelet_cgroup_root)
        except errors.ConfigError as exc:
            raise SystemExit(f"--kubelet-cgroup-root: {exc}") from None
    log.info("IO limits: unavailable (%s is not a cgroup v2 hierarchy with the io controller)", root)
    return None


def serve_metrics(address: str) -> None:
    if not address:
        return
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")  # noqa: S104 (an operator's explicit choice)
    log.info("metrics on %s", address)


def wait_for_signal() -> None:
    process.wait(process.stop_on_signals())
