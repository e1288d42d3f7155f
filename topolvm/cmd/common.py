"""What the Kubernetes-facing commands share: common flags, metrics, and running until
SIGTERM/SIGINT (``topolvm.process``)."""

from __future__ import annotations

import argparse
import logging

from prometheus_client import start_http_server

from topolvm import process

log = logging.getLogger("topolvm")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster configuration)")
    p.add_argument("--metrics-address", default="", help="serve Prometheus metrics on HOST:PORT (default: off)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def serve_metrics(address: str) -> None:
    if not address:
        return
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")  # noqa: S104 (an operator's explicit choice)
    log.info("metrics on %s", address)


def wait_for_signal() -> None:
    process.stop_on_signals().wait()
