"""Certificates for the webhook's TLS tests: key pairs made with openssl, a Secret volume laid out and updated
the way kubelet does it, and the certificate a server presents in a TLS handshake."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pair:
    cert: bytes  # PEM
    key: bytes  # PEM

    @property
    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert.decode())


def openssl_or_skip() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (scripts/install-system-deps.sh installs it)")


def make_pair(directory: Path, name: str, days: int = 30) -> Pair:
    """A self-signed EC certificate for 127.0.0.1 and the webhook's Service name, valid ``days`` days."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", str(days), "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:topolvm-webhook.topolvm-system.svc",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Pair(cert.read_bytes(), key.read_bytes())


def openssl_enddate(pem: bytes) -> str:
    done = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate"], input=pem, check=True, capture_output=True, timeout=60
    )
    return done.stdout.decode().strip().removeprefix("notAfter=")


class SecretVolume:
    """A directory laid out as kubelet lays out a Secret volume: ``tls.crt -> ..data/tls.crt``, ``..data`` a
    symlink to a timestamped directory; ``update`` writes a new directory and swaps ``..data`` atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._generation = itertools.count(1)

    @property
    def cert(self) -> str:
        return str(self.root / "tls.crt")

    @property
    def key(self) -> str:
        return str(self.root / "tls.key")

    def update(self, cert: bytes, key: bytes) -> None:
        generation = self.root / f"..2026_01_01_00_00_0{next(self._generation)}"
        generation.mkdir()
        (generation / "tls.crt").write_bytes(cert)
        (generation / "tls.key").write_bytes(key)
        staged = self.root / "..data_tmp"
        staged.symlink_to(generation.name)
        os.replace(staged, self.root / "..data")
        for name in ("tls.crt", "tls.key"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")


def presented(port: int, server_name: str | None = None) -> bytes:
    """The DER certificate the server on 127.0.0.1:``port`` presents in a new handshake (not verified)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der
