"""The extender as a raw ASGI application (served by uvicorn; see ``topolvm.extender.cli``).

Raw ASGI rather than a framework router: the extender has four fixed paths and is on kube-scheduler's critical
path, so per-request overhead matters more than conveniences. Routes:

    POST /predicate   filter verb       POST /prioritize   prioritize verb
    GET  /status      liveness ("ok")   GET  /metrics      Prometheus text format

Every error reply is a short plain-text reason; an unexpected exception is logged with its traceback and
answered with a generic 500 (the traceback never reaches the client).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import prometheus_client

from topolvm.extender import config, holder, metrics, verbs

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class App:
    def __init__(
        self,
        cfg: config.Config,
        state: holder.Holder | None = None,
        stats: metrics.Metrics | None = None,
    ) -> None:
        self.config = cfg
        self.holder = state or holder.Holder(cfg.reservation_ttl)
        self.metrics = stats or metrics.Metrics()
        self.extender = verbs.Extender(cfg, self.holder, self.metrics)
        self._verbs: dict[str, Callable[[bytes], verbs.Reply]] = {
            "/predicate": self.extender.predicate,
            "/prioritize": self.extender.prioritize,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
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
                body = await _read_body(receive, self.config.max_body_bytes)
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
        self.metrics.duration.labels(verb).observe(time.perf_counter() - started)
        self.metrics.requests.labels(verb, str(reply.status)).inc()
        if reply.status >= 400:
            log.warning("%s %s -> %d: %s", method, path, reply.status, reply.body[:200].decode(errors="replace"))

    def _other(self, path: str, method: str) -> verbs.Reply:
        if path == "/status":
            return verbs.Reply(200, b"ok", verbs.TEXT)
        if path == "/metrics" and method == "GET":
            return verbs.Reply(200, self.metrics.render(), prometheus_client.CONTENT_TYPE_LATEST)
        return verbs.Reply(404, b"not found", verbs.TEXT)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Send, reply: verbs.Reply) -> None:
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


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
