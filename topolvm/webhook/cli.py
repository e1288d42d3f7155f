"""``topolvm-webhook``: serve the pod mutating webhook over HTTPS.

Usage: topolvm-webhook --cert tls.crt --key tls.key [--listen :9443] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from topolvm import errors
from topolvm.webhook import app, kube

log = logging.getLogger("topolvm.webhook")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="topolvm-webhook", description="Pod mutating webhook for TopoLVM.")
    parser.add_argument("--listen", default=":9443", help="HTTPS listen address")
    parser.add_argument("--cert", required=True, help="TLS certificate file (PEM)")
    parser.add_argument("--key", required=True, help="TLS private key file (PEM)")
    parser.add_argument("--kubeconfig", default="", help="kubeconfig (default: in-cluster)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for path in (args.cert, args.key):
        if not os.path.isfile(path):
            log.error("TLS file not found: %s", path)
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
    application = app.App(connection.cluster)
    log.info("topolvm-webhook listening on %s (HTTPS)", args.listen)
    uvicorn.run(
        application,
        host=host or "0.0.0.0",  # noqa: S104 - ":9443" means every interface, as upstream
        port=port,
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        access_log=False,
        log_config=None,
    )
    connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
