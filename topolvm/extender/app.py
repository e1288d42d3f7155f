"""The extender as a raw ASGI application (served by uvicorn; see ``topolvm.extender.cli``).

Raw ASGI rather than a framework router: the extender has four fixed paths and is on kube-scheduler's critical
path, so per-request overhead matters more than conveniences. Routes:

    POST /predicate   filter verb       POST /prioritize   prioritize verb
    GET  /status      liveness ("ok")   GET  /metrics      Prometheus text format

Every error reply is a short plain-text reason; an unexpected exception is logged with its traceback and
answered with a generic 500 (the traceback never reaches the client).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import prometheus_client

from topolvm import asgi
from topolvm.extender import config, holder, metrics, verbs

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


EXPIRE_EVERY = 1.0  # seconds between sweeps of expired reservations, stale nodes and forgotten pods


class App:
    def __init__(
        self,
        cfg: config.Config,
        state: holder.Holder | None = None,
        stats: metrics.Metrics | None = None,
        *,
        watched_nodes: bool = False,
        watched_pods: bool = False,
    ) -> None:
        self.config = cfg
        self.metrics = stats or metrics.Metrics()
        self.holder = state or holder.build(
            cfg, self.metrics, watched_nodes=watched_nodes, watched_pods=watched_pods
        )  # fmt: skip
        self.extender = verbs.Extender(cfg, self.holder, self.metrics)
        self._verbs: dict[str, Callable[[bytes | bytearray], verbs.Reply]] = {
            "/predicate": self.extender.predicate,
            "/prioritize": self.extender.prioritize,
        }
        self._durations = {path[1:]: self.metrics.duration.labels(path[1:]) for path in self._verbs}

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            # Reservations must expire on time even when no request comes to look at them.
            sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
            try:
                await asgi.lifespan(receive, send)
            finally:
                sweeper.cancel()

    def sweep(self) -> None:
        with self.holder.lock:
            self.holder.service.expire()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY)
            try:
                self.sweep()
            except Exception:
                log.exception("expiry sweep failed")

    async def _http(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        handler = self._verbs.get(path)
        if handler is None:
            reply = self._other(path, method)
            await _respond(send, reply)
            return
        verb = path[1:]
        started = time.perf_counter()
        if method != "POST":
            reply = verbs.Reply(405, b"method not allowed: use POST", verbs.TEXT)
        else:
            try:
                body = await _read_body(receive, self.config.max_body_bytes, _content_length(scope))
            except BodyTooLarge:
                reply = verbs.Reply(
                    413, f"request body exceeds {self.config.max_body_bytes} bytes".encode(), verbs.TEXT
                )
            except ClientGone:
                return
            else:
                try:
                    reply = handler(body)
                except Exception:
                    log.exception("%s failed", verb)
                    reply = verbs.Reply(500, b"internal error; see the extender's log", verbs.TEXT)
        await _respond(send, reply)
        self._durations[verb].observe(time.perf_counter() - started)
        self.metrics.requests.labels(verb, str(reply.status)).inc()
        if reply.status >= 400:
            log.warning("%s %s -> %d: %s", method, path, reply.status, reply.body[:200].decode(errors="replace"))

    def _other(self, path: str, method: str) -> verbs.Reply:
        if path == "/status":
            return verbs.Reply(200, b"ok", verbs.TEXT)
        if path == "/metrics" and method == "GET":
            with self.holder.lock:
                self.holder.service.expire()
                self.metrics.observe(self.holder.service)
            return verbs.Reply(200, self.metrics.render(), prometheus_client.CONTENT_TYPE_LATEST)
        return verbs.Reply(404, b"not found", verbs.TEXT)


def _content_length(scope: asgi.Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read_body(receive: asgi.Receive, limit: int, expected: int | None = None) -> bytes | bytearray:
    if expected is not None and expected > limit:
        raise BodyTooLarge
    body = _Body(limit, expected)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body.finish(chunk)
        body.add(chunk)


class _Body:
    """A request body being received. One that arrives in one message is returned as is; a longer one with a
    declared length is copied into one buffer chunk by chunk as it arrives (while the client is still sending),
    so no copy of the whole body is left for the end; without a length the chunks are joined at the end."""

    def __init__(self, limit: int, expected: int | None) -> None:
        self.limit = limit
        self.expected = expected
        self.buffer: bytearray | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        end = self.size + len(chunk)
        if end > self.limit:
            raise BodyTooLarge
        if self.buffer is None and not self.chunks and self.expected is not None and end <= self.expected:
            self.buffer = bytearray(self.expected)
        if self.buffer is not None and end <= len(self.buffer):
            self.buffer[self.size : end] = chunk
        else:
            if self.buffer is not None:  # more than the declared length: fall back to joining
                self.chunks.append(bytes(self.buffer[: self.size]))
                self.buffer = None
            self.chunks.append(chunk)
        self.size = end

    def finish(self, chunk: bytes) -> bytes | bytearray:
        if self.size == 0:
            if len(chunk) > self.limit:
                raise BodyTooLarge
            return chunk
        self.add(chunk)
        if self.buffer is not None:
            return self.buffer if self.size == len(self.buffer) else self.buffer[: self.size]
        return b"".join(self.chunks)


async def _respond(send: asgi.Send, reply: verbs.Reply) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [
                (b"content-type", reply.content_type.encode()),
                (b"content-length", str(len(reply.body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": reply.body})
