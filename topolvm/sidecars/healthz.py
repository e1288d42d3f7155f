"""The sidecars' HTTP health endpoint: ``GET /healthz`` answers 200 ``ok`` or 500 with the reason, from a check
the sidecar passes in; every other path is 404. The standard library's threading HTTP server, so a slow check
(a CSI call waiting for its deadline) holds only its own request.

Used by ``topolvm.sidecars.registrar`` and ``topolvm.sidecars.livenessprobe``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

# (healthy, what to answer): the reason is the body of a 500, so kubelet's probe events show it.
Check = Callable[[], tuple[bool, str]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    check: Check

    def server_bind(self) -> None:
        # Go's ":9808" listens on IPv4 and IPv6 at once; so does an IPv6 socket with V6ONLY off.
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Not HTTPServer.server_bind: it resolves the host's FQDN, which can wait on DNS for nothing.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/healthz":
            self._answer(HTTPStatus.NOT_FOUND, "not found")
            return
        try:
            healthy, reason = self.server.check()
        except Exception as exc:  # a failing check is an unhealthy answer, never a dropped connection
            log.exception("health check raised")
            healthy, reason = False, f"health check failed: {exc}"
        self._answer(HTTPStatus.OK if healthy else HTTPStatus.INTERNAL_SERVER_ERROR, reason)

    def _answer(self, status: HTTPStatus, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s: " + format, self.client_address[0], *args)


def _bind(host: str, port: int) -> _Server:
    if host in ("", "::"):
        try:
            server = _bind_family(socket.AF_INET6, "::", port)
        except OSError:
            if host:
                raise
            server = _bind_family(socket.AF_INET, "0.0.0.0", port)  # noqa: S104 (Go's ":port": every interface)
        return server
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return _bind_family(family, host, port)


def _bind_family(family: socket.AddressFamily, host: str, port: int) -> _Server:
    class Server(_Server):
        address_family = family

    return Server((host, port), _Handler)


class HealthServer:
    """``GET /healthz`` on ``host:port`` (bound at construction, so a taken port fails early), served from a
    daemon thread after ``start``."""

    def __init__(self, host: str, port: int, check: Check) -> None:
        self._server = _bind(host, port)
        self._server.check = check
        self._thread = threading.Thread(target=self._server.serve_forever, name="healthz", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("serving /healthz on %s port %d", self._server.server_name or "*", self.port)
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
