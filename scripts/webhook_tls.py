#!/usr/bin/env python3
"""TLS for topolvm-webhook without cert-manager: make a CA and a serving certificate with openssl, store them as
the Secret the webhook mounts, and put the CA into the MutatingWebhookConfiguration's caBundle.

    python3 scripts/webhook_tls.py [--kubeconfig PATH] [--renew] [--days 365] [--extra-san IP:10.0.0.9]

Idempotent: a Secret that already holds a certificate valid for 30 more days is kept (only the caBundle is
written again), so running it again after `kubectl apply -f deploy/manifests/` is safe; --renew makes a new CA
and certificate. Needs openssl and the `kubernetes` Python package (a dependency of topolvm-py). With
cert-manager, use deploy/tls/cert-manager.yaml instead. Every command is an argv list, and every name is
checked before it reaches openssl or the API.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RENEW_BEFORE_SECONDS = 30 * 24 * 3600


def _label(value: str) -> str:
    if not DNS_LABEL.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a DNS-1123 label")
    return value


def _san(value: str) -> str:
    kind, _, name = value.partition(":")
    if kind == "IP":
        return f"IP:{ipaddress.ip_address(name)}"
    if kind == "DNS" and DNS_NAME.match(name):
        return f"DNS:{name}"
    raise argparse.ArgumentTypeError(f"{value!r}: expected DNS:<name> or IP:<address>")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG or ~/.kube/config, else in-cluster)")
    p.add_argument("--namespace", type=_label, default="topolvm-system")
    p.add_argument("--service", type=_label, default="topolvm-webhook", help="the webhook's Service")
    p.add_argument("--secret", type=_label, default="topolvm-webhook-tls")
    p.add_argument("--webhook-config", type=_label, default="topolvm-hook", help="MutatingWebhookConfiguration")
    p.add_argument("--days", type=int, default=365, help="serving certificate lifetime (the CA gets ten times it)")
    p.add_argument("--extra-san", type=_san, action="append", default=[], metavar="DNS:NAME|IP:ADDR")
    p.add_argument("--renew", action="store_true", help="make a new CA and certificate even if the Secret is valid")
    args = p.parse_args(argv)
    if not 1 <= args.days <= 3650:
        p.error("--days must be between 1 and 3650")
    return args


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("openssl")
    if binary is None:
        raise SystemExit("webhook_tls: openssl is not installed")
    return subprocess.run([binary, *args], check=check, capture_output=True)


def make_certificates(service: str, namespace: str, days: int, extra_sans: list[str]) -> dict[str, bytes]:
    """A fresh CA and a serving certificate it signs for the Service's DNS names: tls.crt, tls.key, ca.crt."""
    names = [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]
    sans = ",".join([*(f"DNS:{n}" for n in names), *extra_sans])
    with tempfile.TemporaryDirectory(prefix="topolvm-webhook-tls-") as tmp:
        d = Path(tmp)
        ca_key, ca_crt, key, csr, crt, ext = (d / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt", "x"))
        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
            "-days", str(days * 10), "-subj", "/CN=topolvm-webhook-ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={names[2]}"
        )
        ext.write_text(
            f"subjectAltName={sans}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(crt), "-days", str(days), "-extfile", str(ext),
        )  # fmt: skip
        return {"tls.crt": crt.read_bytes(), "tls.key": key.read_bytes(), "ca.crt": ca_crt.read_bytes()}


def still_valid(certificate: bytes) -> bool:
    with tempfile.NamedTemporaryFile(suffix=".crt") as f:
        f.write(certificate)
        f.flush()
        done = openssl("x509", "-checkend", str(RENEW_BEFORE_SECONDS), "-noout", "-in", f.name, check=False)
    return done.returncode == 0


def api_client(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig)
    except config.ConfigException:
        if kubeconfig:
            raise
        config.load_incluster_config()
    return client


def existing_secret(core: Any, args: argparse.Namespace) -> dict[str, bytes] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        secret = core.read_namespaced_secret(args.secret, args.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    return data if {"tls.crt", "tls.key", "ca.crt"} <= data.keys() else None


def store_secret(k8s: Any, core: Any, args: argparse.Namespace, data: dict[str, bytes]) -> None:
    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=args.secret, namespace=args.namespace),
        type="kubernetes.io/tls",
        data={k: base64.b64encode(v).decode() for k, v in data.items()},
    )
    from kubernetes.client.exceptions import ApiException

    try:
        core.create_namespaced_secret(args.namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_secret(args.secret, args.namespace, body)


def inject_ca_bundle(k8s: Any, args: argparse.Namespace, ca: bytes) -> bool:
    """Set caBundle on every webhook of the configuration; False if the configuration does not exist yet."""
    from kubernetes.client.exceptions import ApiException

    admission = k8s.AdmissionregistrationV1Api()
    try:
        current = admission.read_mutating_webhook_configuration(args.webhook_config)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    bundle = base64.b64encode(ca).decode()
    patch = [
        {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}
        for i in range(len(current.webhooks or []))
    ]
    admission.patch_mutating_webhook_configuration(args.webhook_config, patch)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    k8s = api_client(args.kubeconfig)
    core = k8s.CoreV1Api()
    data = None if args.renew else existing_secret(core, args)
    if data is not None and still_valid(data["tls.crt"]):
        print(f"webhook_tls: Secret {args.namespace}/{args.secret} is valid, kept (--renew replaces it)")
    else:
        data = make_certificates(args.service, args.namespace, args.days, args.extra_san)
        store_secret(k8s, core, args, data)
        print(f"webhook_tls: Secret {args.namespace}/{args.secret} written")
    if inject_ca_bundle(k8s, args, data["ca.crt"]):
        print(f"webhook_tls: caBundle of MutatingWebhookConfiguration {args.webhook_config} set")
    else:
        print(
            f"webhook_tls: MutatingWebhookConfiguration {args.webhook_config} not found; apply "
            "deploy/manifests/webhook.yaml and run this again to set its caBundle",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
