"""What every long-running command does the same way: logging, a Kubernetes client, metrics, and running until
SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

import kubernetes
from prometheus_client import start_http_server

log = logging.getLogger("topolvm")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster configuration)")
    p.add_argument("--metrics-address", default="", help="serve Prometheus metrics on HOST:PORT (default: off)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def kube_api(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    if kubeconfig:
        api: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(config_file=kubeconfig)
        return api
    kubernetes.config.load_incluster_config()
    return kubernetes.client.ApiClient()


def serve_metrics(address: str) -> None:
    if not address:
        return
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")  # noqa: S104 (an operator's explicit choice)
    log.info("metrics on %s", address)


def wait_for_signal() -> None:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
