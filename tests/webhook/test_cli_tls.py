"""The real topolvm-webhook process over HTTPS, its certificate files in a Secret volume's layout: a renewed pair
is presented by the next TLS handshake without a restart; a bad pair is logged and the previous one keeps
serving, and the metrics page tells which certificate is in use."""

from __future__ import annotations

import re
import ssl
import urllib.request
from pathlib import Path

import pytest

from tests.support import deployment, driver, processes
from tests.support.controlplane import ControlPlane
from tests.webhook import certs
from tests.webhook.certs import SecretVolume
from topolvm.webhook import tls


def get(port: int, path: str, pair: certs.Pair) -> str:
    context = ssl.create_default_context(cadata=pair.cert.decode())  # verifies the certificate served
    with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", timeout=5, context=context) as reply:
        return str(reply.read().decode())


def expiry(port: int, pair: certs.Pair) -> float:
    page = get(port, "/metrics", pair)
    found = re.search(r"^topolvm_webhook_certificate_expiry_timestamp_seconds (\S+)$", page, re.MULTILINE)
    assert found is not None, page
    return float(found.group(1))


def test_the_webhook_serves_a_renewed_certificate_and_keeps_serving_through_a_bad_one(
    kube_api: ControlPlane, tmp_path: Path
) -> None:
    certs.openssl_or_skip()
    pairs = {name: certs.make_pair(tmp_path, name) for name in ("old", "new", "other")}
    volume = SecretVolume(tmp_path / "certs")
    volume.root.mkdir()
    volume.update(pairs["old"].cert, pairs["old"].key)
    port = processes.free_port()
    procs = driver.Processes(tmp_path)
    webhook = procs.start(
        "topolvm.webhook.cli", f"--cert={volume.cert}", f"--key={volume.key}", f"--listen=127.0.0.1:{port}",
        f"--kubeconfig={kube_api.kubeconfig}", "--cert-reload-interval=0.1", log="webhook",
    )  # fmt: skip
    log = tmp_path / "webhook.log"

    def serving(pair: certs.Pair) -> bool:
        try:
            return certs.presented(port) == pair.der
        except OSError:
            return False  # not listening yet

    try:
        deployment.wait_for(lambda: serving(pairs["old"]), "the webhook to serve its first certificate")
        assert expiry(port, pairs["old"]) == tls.not_after(pairs["old"].cert.decode())

        volume.update(pairs["new"].cert, pairs["new"].key)
        deployment.wait_for(lambda: serving(pairs["new"]), "the renewed certificate to be served")
        assert expiry(port, pairs["new"]) == tls.not_after(pairs["new"].cert.decode())

        volume.update(pairs["other"].cert, pairs["new"].key)  # the key does not match the certificate
        deployment.wait_for(lambda: "not reloaded" in log.read_text(), "the bad pair to be reported")
        assert webhook.poll() is None
        assert serving(pairs["new"])
        assert get(port, "/healthz", pairs["new"]) == "ok"
        assert expiry(port, pairs["new"]) == tls.not_after(pairs["new"].cert.decode())
    finally:
        procs.stop_all()
    errors = [line for line in log.read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "still serving the previous certificate" in errors[0], errors


@pytest.mark.parametrize("interval", ["0", "-1"])
def test_a_reload_interval_that_is_not_positive_is_refused(tmp_path: Path, interval: str) -> None:
    procs = driver.Processes(tmp_path)
    proc = procs.start(
        "topolvm.webhook.cli", "--cert=/nonexistent", "--key=/nonexistent", f"--cert-reload-interval={interval}"
    )
    assert proc.wait(timeout=60) == 2
    assert "--cert-reload-interval" in (tmp_path / "cli.log").read_text()
