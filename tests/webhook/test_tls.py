"""The webhook's serving certificate (topolvm.webhook.tls): its notAfter read as openssl reads it, and reloads
that follow the files of a Secret volume — a renewed pair is presented by the next handshake, a bad one is
reported and the previous pair keeps serving."""

from __future__ import annotations

import calendar
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest

from tests.webhook import certs
from tests.webhook.certs import SecretVolume
from topolvm.webhook import app, tls


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, certs.Pair]:
    certs.openssl_or_skip()
    directory = tmp_path_factory.mktemp("pairs")
    return {name: certs.make_pair(directory, name, days) for name, days in (("old", 10), ("new", 90), ("other", 5))}


@pytest.mark.parametrize("days", [1, 365, 10000], ids=["utc-time", "a-year", "generalized-time-after-2049"])
def test_not_after_is_what_openssl_reads(tmp_path: Path, days: int) -> None:
    certs.openssl_or_skip()
    pair = certs.make_pair(tmp_path, "c", days)
    expected = calendar.timegm(time.strptime(certs.openssl_enddate(pair.cert), "%b %d %H:%M:%S %Y GMT"))
    assert tls.not_after(pair.cert.decode()) == expected
    assert tls.not_after(pair.cert.decode() + pair.cert.decode()) == expected  # a chain: the first one counts


@pytest.mark.parametrize(
    "pem", ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]
)
def test_not_after_refuses_what_is_not_a_certificate(pem: str) -> None:
    with pytest.raises(ValueError):
        tls.not_after(pem)


@contextlib.contextmanager
def serving(context: ssl.SSLContext) -> Iterator[int]:
    """A TLS server on a free loopback port that completes each handshake with ``context``, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True):
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not)
        listener.close()
        thread.join(timeout=5)


def sample(metrics: app.Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_renewed_pair_is_served_by_the_next_handshake_and_a_bad_one_never(
    tmp_path: Path, pairs: dict[str, certs.Pair], caplog: pytest.LogCaptureFixture
) -> None:
    volume = SecretVolume(tmp_path)
    volume.update(pairs["old"].cert, pairs["old"].key)
    metrics = app.Metrics()
    certificate = tls.ServingCertificate(volume.cert, volume.key, metrics=metrics)
    expiry = "topolvm_webhook_certificate_expiry_timestamp_seconds"
    reloads = "topolvm_webhook_certificate_reloads_total"
    with serving(certificate.context) as port:
        assert certs.presented(port) == pairs["old"].der
        assert certificate.check() is False  # nothing changed
        assert sample(metrics, expiry) == tls.not_after(pairs["old"].cert.decode())

        volume.update(pairs["new"].cert, pairs["new"].key)  # kubelet's symlink swap
        assert certificate.check() is True
        for server_name in (None, "topolvm-webhook.topolvm-system.svc"):  # probes by IP send no SNI
            assert certs.presented(port, server_name) == pairs["new"].der
        assert sample(metrics, expiry) == tls.not_after(pairs["new"].cert.decode())
        assert sample(metrics, reloads, result="loaded") == 1

        with caplog.at_level(logging.ERROR, logger=tls.__name__):
            volume.update(pairs["other"].cert, pairs["new"].key)  # a key that does not match
            assert certificate.check() is False
            assert certificate.check() is False  # one bad pair, one report
            volume.update(b"-----BEGIN CERTIFICATE-----\ntrunc", pairs["other"].key)  # half-written
            assert certificate.check() is False
        assert certs.presented(port) == pairs["new"].der  # the previous pair keeps serving
        assert sample(metrics, expiry) == tls.not_after(pairs["new"].cert.decode())
        assert sample(metrics, reloads, result="failed") == 2
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2 and all("still serving the previous certificate" in e for e in errors)

        volume.update(pairs["other"].cert, pairs["other"].key)  # fixed: served
        assert certificate.check() is True
        assert certs.presented(port) == pairs["other"].der


def test_files_that_vanish_keep_the_pair_in_use(tmp_path: Path, pairs: dict[str, certs.Pair]) -> None:
    volume = SecretVolume(tmp_path)
    volume.update(pairs["old"].cert, pairs["old"].key)
    certificate = tls.ServingCertificate(volume.cert, volume.key)
    (tmp_path / "..data").unlink()
    with serving(certificate.context) as port:
        assert certificate.check() is False
        assert certs.presented(port) == pairs["old"].der


def test_the_poll_thread_reloads_on_its_own(tmp_path: Path, pairs: dict[str, certs.Pair]) -> None:
    volume = SecretVolume(tmp_path)
    volume.update(pairs["old"].cert, pairs["old"].key)
    certificate = tls.ServingCertificate(volume.cert, volume.key)
    certificate.start(interval=0.05)
    try:
        volume.update(pairs["new"].cert, pairs["new"].key)
        for _ in range(200):
            if certificate.current.not_after == tls.not_after(pairs["new"].cert.decode()):
                break
            threading.Event().wait(0.025)
        with serving(certificate.context) as port:
            assert certs.presented(port) == pairs["new"].der
    finally:
        certificate.stop()


def test_a_pair_that_cannot_serve_stops_the_start(tmp_path: Path, pairs: dict[str, certs.Pair]) -> None:
    volume = SecretVolume(tmp_path)
    volume.update(pairs["old"].cert, pairs["new"].key)
    with pytest.raises(tls.CertificateError):
        tls.ServingCertificate(volume.cert, volume.key)
    with pytest.raises(tls.CertificateError):
        tls.ServingCertificate(str(tmp_path / "absent.crt"), volume.key)


def test_the_metrics_page_shows_the_expiry(tmp_path: Path, pairs: dict[str, certs.Pair]) -> None:
    volume = SecretVolume(tmp_path)
    volume.update(pairs["old"].cert, pairs["old"].key)
    metrics = app.Metrics()
    tls.ServingCertificate(volume.cert, volume.key, metrics=metrics)
    page = prometheus_client.generate_latest(metrics.registry).decode()
    assert "topolvm_webhook_certificate_expiry_timestamp_seconds " in page
