"""The webhook's serving certificate, reloaded when its files change.

cert-manager renews the certificate in the webhook's Secret (and ``scripts/webhook_tls.py --renew`` replaces
it); kubelet then updates the mounted files by writing a new timestamped directory and swapping the volume's
``..data`` symlink to it. uvicorn reads ``ssl_certfile`` once, so the webhook serves an ``ssl.SSLContext`` of
its own (``ServingCertificate.context``, handed to uvicorn by ``topolvm.webhook.cli``): a thread stats the
*resolved* certificate and key paths every few seconds, and when either changed it loads the pair into a new
context. Every new TLS handshake is switched to the newest context that loaded, by the SNI callback, which
OpenSSL (1.1.1 and later) calls for every ClientHello, with or without a server name. Connections already open
keep the certificate they started with.

A pair that does not load (missing, half-written, a key that does not match the certificate) is logged as an
error and counted, and the last good pair keeps serving: with ``failurePolicy: Fail`` a webhook that stopped
serving would block every pod creation outside the excluded namespaces. The notAfter of the certificate in use
is exported as a gauge, so an alert can fire before it expires whatever the reason it was not renewed.
"""

from __future__ import annotations

import calendar
import logging
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from topolvm.webhook import app

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0  # seconds between two looks at the files
_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")

FileIdentity = tuple[str, int, int, int, int]  # resolved path, device, inode, mtime (ns), size


class CertificateError(Exception):
    """The certificate and key do not make a usable pair."""


@dataclass(frozen=True)
class Loaded:
    context: ssl.SSLContext
    not_after: float  # seconds since the epoch
    summary: str  # for logs: which certificate is served ("valid until ...")


# --- reading the certificate's validity (DER, RFC 5280 section 4.1) -------------------------------------------


def _element(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at ``pos``: its content is ``der[start:end]``."""
    if pos + 2 > len(der):
        raise ValueError("certificate truncated")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > len(der):
            raise ValueError("certificate has an invalid length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("certificate truncated")
    return tag, pos, pos + length


def _time(tag: int, text: bytes) -> float:
    """UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ), both in UTC."""
    raw = text.decode("ascii")
    if tag == 0x17 and re.fullmatch(r"\d{12}Z", raw):
        year = int(raw[:2])
        raw = f"{year + (1900 if year >= 50 else 2000)}{raw[2:]}"
    elif not (tag == 0x18 and re.fullmatch(r"\d{14}Z", raw)):
        raise ValueError(f"certificate validity is not a UTC time: {raw!r}")
    return float(calendar.timegm(time.strptime(raw, "%Y%m%d%H%M%SZ")))


def not_after(pem: str) -> float:
    """The notAfter of the first certificate in ``pem`` (the serving one; a chain's CAs follow it)."""
    found = _PEM_CERTIFICATE.search(pem)
    if found is None:
        raise ValueError("no PEM certificate found")
    der = ssl.PEM_cert_to_DER_cert(found.group(0))
    _, certificate, _ = _element(der, 0)
    _, pos, _ = _element(der, certificate)  # tbsCertificate
    tag, _, end = _element(der, pos)
    if tag == 0xA0:  # [0] version, present from X.509 v2 on
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        pos = _element(der, pos)[2]
    tag, pos, _ = _element(der, pos)
    if tag != 0x30:
        raise ValueError("certificate validity not found")
    pos = _element(der, pos)[2]  # notBefore
    tag, start, end = _element(der, pos)
    return _time(tag, der[start:end])


# --- loading and reloading -------------------------------------------------------------------------------------


def _identity(path: str) -> FileIdentity:
    real = os.path.realpath(path)  # a Secret volume's files are symlinks into the current ..data directory
    st = os.stat(real)
    return (real, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def load(cert_path: str, key_path: str) -> Loaded:
    """A server context for the pair; CertificateError if it cannot serve (unreadable, invalid, mismatched)."""
    cert, key = os.path.realpath(cert_path), os.path.realpath(key_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)  # checks that the key matches the certificate
        expiry = not_after(Path(cert).read_text(encoding="ascii", errors="replace"))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise CertificateError(f"certificate {cert_path} with key {key_path}: {exc}") from None
    return Loaded(context, expiry, "valid until " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry)))


class ServingCertificate:
    """The context uvicorn listens with (``context``) and the poll that keeps its certificate current."""

    def __init__(self, cert_path: str, key_path: str, *, metrics: app.Metrics | None = None) -> None:
        """Loads the pair now: CertificateError if it cannot serve (the webhook then does not start)."""
        self.cert_path, self.key_path = cert_path, key_path
        self._metrics = metrics
        try:
            self._seen = self._identities()
        except OSError as exc:
            raise CertificateError(f"certificate {cert_path} with key {key_path}: {exc}") from None
        self._current = load(cert_path, key_path)
        self._failed: object = None  # what the last failed load saw, so one bad pair is reported once
        self.context = self._current.context
        self.context.sni_callback = self._choose
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observe(self._current)

    @property
    def current(self) -> Loaded:
        return self._current

    def _choose(self, connection: ssl.SSLObject, _server_name: str | None, _listening: ssl.SSLContext) -> None:
        connection.context = self._current.context  # one attribute read: a reload never races a handshake

    def _identities(self) -> tuple[FileIdentity, FileIdentity]:
        return _identity(self.cert_path), _identity(self.key_path)

    def _observe(self, loaded: Loaded) -> None:
        if self._metrics is not None:
            self._metrics.certificate_expiry.set(loaded.not_after)
        if loaded.not_after < time.time():
            log.warning("webhook certificate %s has expired: %s", self.cert_path, loaded.summary)

    def _fail(self, seen: object, reason: str) -> None:
        if seen == self._failed:
            return  # reported already; the next change of the files is tried again
        self._failed = seen
        log.error(
            "webhook certificate %s not reloaded: %s; still serving the previous certificate (%s)",
            self.cert_path,
            reason,
            self._current.summary,
        )
        if self._metrics is not None:
            self._metrics.certificate_reloads.labels("failed").inc()

    def check(self) -> bool:
        """One look at the files: load them if they changed. True when a new pair is now being served."""
        try:
            seen = self._identities()
        except OSError as exc:
            self._fail(("missing", str(exc)), f"cannot read the files: {exc.strerror or exc}")
            return False
        if seen == self._seen:
            self._failed = None  # back to the pair being served: a bad pair that comes again is reported again
            return False
        try:
            loaded = load(self.cert_path, self.key_path)
        except CertificateError as exc:
            try:
                if self._identities() != seen:
                    return False  # replaced while we read them: the next look loads the newer files
            except OSError:
                pass
            self._fail(seen, str(exc))
            return False
        self._current, self._seen, self._failed = loaded, seen, None
        self._observe(loaded)
        if self._metrics is not None:
            self._metrics.certificate_reloads.labels("loaded").inc()
        log.info("webhook certificate %s reloaded: %s", self.cert_path, loaded.summary)
        return True

    def start(self, interval: float = DEFAULT_INTERVAL) -> None:
        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.check()
                except Exception:  # a bug here must not stop the reloads for good
                    log.exception("webhook certificate %s: reload check failed", self.cert_path)

        self._thread = threading.Thread(target=run, name="webhook-certificate", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
