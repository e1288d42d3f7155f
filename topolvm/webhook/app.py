"""The pod mutating webhook as a raw ASGI application (served over HTTPS by uvicorn; see ``cli``).

Routes: ``POST /pod/mutate`` (upstream's path), ``GET /healthz``, ``GET /metrics``. A body that is not an
AdmissionReview gets HTTP 400 with a reason; otherwise the reply is always an AdmissionReview (HTTP 200), with
refusals and lookup failures expressed in ``response.status`` as the API server expects.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
import prometheus_client

from topolvm import asgi, errors, ports
from topolvm.webhook import mutate, wire

log = logging.getLogger(__name__)


MAX_BODY_BYTES = 8 << 20  # the API server caps objects at ~3 MiB
TEXT = b"text/plain; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.admissions = prometheus_client.Counter(
            "topolvm_webhook_pod_admissions_total",
            "Pod admissions by outcome (mutated, allowed, denied, errored).",
            ["outcome"],
            registry=self.registry,
        )
        self.duration = prometheus_client.Histogram(
            "topolvm_webhook_pod_admission_duration_seconds",
            "Time to answer a pod admission, lookups included.",
            registry=self.registry,
        )
        # Set by topolvm.webhook.tls: the serving certificate in use, and its reloads.
        self.certificate_expiry = prometheus_client.Gauge(
            "topolvm_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, in seconds since the epoch.",
            registry=self.registry,
        )
        self.certificate_reloads = prometheus_client.Counter(
            "topolvm_webhook_certificate_reloads_total",
            "Changes of the certificate files by result: loaded (now served) or failed (the previous one kept).",
            ["result"],
            registry=self.registry,
        )


class App:
    def __init__(self, cluster: ports.Cluster, metrics: Metrics | None = None) -> None:
        self.cluster = cluster
        self.metrics = metrics or Metrics()

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] == "lifespan":
            await asgi.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/pod/mutate" and method == "POST":
            status, body, kind = await self._mutate(receive)
        elif path in ("/healthz", "/readyz"):
            status, body, kind = 200, b"ok", TEXT
        elif path == "/metrics" and method == "GET":
            status, body = 200, prometheus_client.generate_latest(self.metrics.registry)
            kind = prometheus_client.CONTENT_TYPE_LATEST.encode()
        else:
            status, body, kind = 404, b"not found", TEXT
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _mutate(self, receive: asgi.Receive) -> tuple[int, bytes, bytes]:
        started = time.perf_counter()
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400, b"client disconnected", TEXT
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return 413, b"request body too large", TEXT
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            review = wire.review_decoder.decode(b"".join(chunks))
        except msgspec.DecodeError as exc:
            return 400, f"invalid AdmissionReview: {exc}".encode(), TEXT
        if review.request is None:
            return 400, b"invalid AdmissionReview: request is required", TEXT
        response = await self._respond(review.request)
        self.metrics.duration.observe(time.perf_counter() - started)
        reply = wire.ReviewReply(response=response, apiVersion=review.apiVersion or wire.API_VERSION)
        return 200, wire.encoder.encode(reply), b"application/json"

    async def _respond(self, request: wire.Request) -> wire.Response:
        try:
            answer = await asyncio.to_thread(mutate.answer, request, self.cluster)
        except errors.TopoLVMError as exc:
            log.warning("admission uid=%s namespace=%s: lookup failed: %s", request.uid, request.namespace, exc)
            self.metrics.admissions.labels("errored").inc()
            return wire.Response(request.uid, False, status=wire.Status(500, f"cannot look up volumes: {exc}"))
        except Exception:
            log.exception("admission uid=%s namespace=%s failed", request.uid, request.namespace)
            self.metrics.admissions.labels("errored").inc()
            return wire.Response(request.uid, False, status=wire.Status(500, "internal error; see the webhook's log"))
        if not answer.allowed:
            log.warning(
                "admission uid=%s pod=%s refused: %s", request.uid, answer.pod or request.namespace, answer.reason
            )
            self.metrics.admissions.labels("denied" if answer.code == 403 else "errored").inc()
            return wire.Response(request.uid, False, status=wire.Status(answer.code, answer.reason))
        if not answer.patch:
            log.debug("admission uid=%s pod=%s allowed: %s", request.uid, answer.pod, answer.reason)
            self.metrics.admissions.labels("allowed").inc()
            return wire.Response(request.uid, True, status=wire.Status(200, answer.reason))
        log.info("admission uid=%s pod=%s mutated capacities=%s", request.uid, answer.pod, dict(answer.capacities))
        self.metrics.admissions.labels("mutated").inc()
        patch = wire.encoder.encode(list(answer.patch))
        return wire.Response(request.uid, True, patchType="JSONPatch", patch=patch)
