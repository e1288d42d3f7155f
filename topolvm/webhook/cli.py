"""``topolvm-webhook``: serve the pod mutating webhook over HTTPS.

Usage: topolvm-webhook --cert tls.crt --key tls.key [--listen :9443] [--kubeconfig PATH]

The certificate and key are read again whenever their files change (``topolvm.webhook.tls``): a renewed
certificate is served without a restart.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from topolvm import errors
from topolvm.webhook import app, kube, tls

log = logging.getLogger("topolvm.webhook")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="topolvm-webhook", description="Pod mutating webhook for TopoLVM.")
    parser.add_argument("--listen", default=":9443", help="HTTPS listen address")
    parser.add_argument("--cert", required=True, help="TLS certificate file (PEM)")
    parser.add_argument("--key", required=True, help="TLS private key file (PEM)")
    parser.add_argument(
        "--cert-reload-interval",
        type=float,
        default=tls.DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="how often the certificate and key files are checked for a change (default: %(default)s)",
    )
    parser.add_argument("--kubeconfig", default="", help="kubeconfig (default: in-cluster)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.cert_reload_interval <= 0:
        log.error("--cert-reload-interval: must be positive, got %s", args.cert_reload_interval)
        return 2
    metrics = app.Metrics()
    try:
        certificate = tls.ServingCertificate(args.cert, args.key, metrics=metrics)
    except tls.CertificateError as exc:
        log.error("cannot serve TLS: %s", exc)
        return 2
    host, _, port_text = args.listen.rpartition(":")
    if not port_text.isdigit():
        log.error("--listen: must be host:port, got %r", args.listen)
        return 2
    host, port = host.strip("[]"), int(port_text)
    try:
        connection = kube.Connection(args.kubeconfig or None)  # one LIST and one WATCH per kind, then no request
    except errors.TopoLVMError as exc:
        log.error("cannot read the Kubernetes API: %s", exc)
        return 2
    application = app.App(connection.cluster, metrics)
    config = uvicorn.Config(
        application,
        host=host or "0.0.0.0",  # noqa: S104 - ":9443" means every interface, as upstream
        port=port,
        ssl_context_factory=lambda _config, _default: certificate.context,  # ours: it follows the files
        access_log=False,
        log_config=None,
    )
    log.info("topolvm-webhook listening on %s (HTTPS, %s)", args.listen, certificate.current.summary)
    certificate.start(args.cert_reload_interval)
    try:
        uvicorn.Server(config).run()
    finally:
        certificate.stop()
        connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
