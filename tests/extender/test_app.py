"""The ASGI app: routes, methods, body limit, metrics, and that an unexpected error is a bare 500."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.extender.helpers import GiB, args, node, pod
from topolvm.extender import app, config


def call(application: app.App, method: str, path: str, body: bytes = b"") -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://extender") as client:
            return await client.request(method, path, content=body)

    return asyncio.run(run())


@pytest.fixture
def application() -> app.App:
    return app.App(config.Config(max_body_bytes=1 << 16))


def test_status(application: app.App) -> None:
    response = call(application, "GET", "/status")
    assert (response.status_code, response.text) == (200, "ok")


def test_predicate_and_prioritize_over_http(application: app.App) -> None:
    body = args(pod(ssd=GiB), [node("a", ssd=2 * GiB), node("b")])
    response = call(application, "POST", "/predicate", body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["FailedAndUnresolvableNodes"] == {"b": "no capacity annotation"}
    response = call(application, "POST", "/prioritize", body)
    assert response.json() == [{"Host": "a", "Score": 1}, {"Host": "b", "Score": 0}]


def test_metrics_count_requests(application: app.App) -> None:
    call(application, "POST", "/predicate", b"nonsense")
    text = call(application, "GET", "/metrics").text
    assert 'topolvm_extender_requests_total{code="400",verb="predicate"} 1.0' in text
    assert "topolvm_extender_request_duration_seconds_bucket" in text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/predicate", 405), ("POST", "/nope", 404), ("GET", "/", 404)],
)
def test_wrong_routes(application: app.App, method: str, path: str, status: int) -> None:
    assert call(application, method, path).status_code == status


def test_body_limit_is_413(application: app.App) -> None:
    nodes = [node(f"n{i}", ssd=GiB) for i in range(400)]
    response = call(application, "POST", "/predicate", args(pod(ssd=1), nodes))
    assert response.status_code == 413
    assert "exceeds" in response.text


def test_unexpected_error_is_a_bare_500(application: app.App, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(body: bytes) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setitem(application._verbs, "/predicate", boom)
    response = call(application, "POST", "/predicate", b"{}")
    assert response.status_code == 500
    assert "secret" not in response.text
    assert "Traceback" not in response.text


def test_lifespan_and_real_server_roundtrip(application: app.App) -> None:
    """Served by uvicorn on loopback, as in production."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)
        body = args(pod(ssd=GiB), [node("a", ssd=2 * GiB)])
        response = httpx.post(f"http://127.0.0.1:{port}/predicate", content=body, timeout=10)
        assert json.loads(response.content)["Nodes"]["items"][0]["metadata"]["name"] == "a"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _receiver(chunks: list[bytes]) -> Any:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


@pytest.mark.parametrize(
    ("chunks", "declared"),
    [
        pytest.param([b"abc"], 3, id="one-message"),
        pytest.param([b"ab", b"", b"cd", b"e"], 5, id="declared"),
        pytest.param([b"ab", b"cd"], None, id="undeclared"),
        pytest.param([b"ab", b"cd", b"ef"], 4, id="more-than-declared"),
        pytest.param([b"ab", b"c"], 10, id="less-than-declared"),
        pytest.param([b"", b"abc"], 3, id="empty-first"),
    ],
)
def test_body_is_reassembled_whatever_the_chunks(chunks: list[bytes], declared: int | None) -> None:
    body = asyncio.run(app._read_body(_receiver(chunks), 100, declared))
    assert bytes(body) == b"".join(chunks)


@pytest.mark.parametrize("declared", [None, 6, 100])
def test_body_limit_holds_across_chunks(declared: int | None) -> None:
    with pytest.raises(app.BodyTooLarge):
        asyncio.run(app._read_body(_receiver([b"abc", b"def", b"g"]), 6, declared))


def test_chunked_body_over_http(application: app.App) -> None:
    body = args(pod(ssd=GiB), [node(f"n{i}", ssd=2 * GiB) for i in range(50)])

    async def run() -> httpx.Response:
        async def stream() -> Any:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://extender") as client:
            return await client.post("/predicate", content=stream(), headers={"content-length": str(len(body))})

    response = asyncio.run(run())
    assert response.status_code == 200
    assert len(response.json()["Nodes"]["items"]) == 50


def _sample(application: app.App, name: str, **labels: str) -> float | None:
    return application.metrics.registry.get_sample_value(name, labels)


def test_reservation_metrics_stay_exact_after_ends_and_expiry() -> None:
    from topolvm import clock
    from topolvm.extender import holder, metrics

    manual = clock.ManualClock(0.0)
    cfg = config.Config(reservation_ttl=30)
    stats = metrics.Metrics()
    application = app.App(cfg, holder.build(cfg, stats, clock=manual), stats)
    nodes = [node("a", ssd=5 * GiB), node("b", ssd=GiB)]
    for uid in ("p1", "p2"):
        call(application, "POST", "/predicate", args(pod(uid, ssd=2 * GiB), nodes))
    call(application, "GET", "/metrics")
    assert _sample(application, "topolvm_extender_reservations") == 2
    assert _sample(application, "topolvm_extender_reserved_bytes") == 4 * GiB
    assert _sample(application, "topolvm_extender_reservation_starts_total", via="filter") == 2
    application.holder.service.pod_bound("p1", "a")
    manual.advance(31)
    call(application, "GET", "/metrics")  # p2 expired: no request needed to see it
    assert _sample(application, "topolvm_extender_reservations") == 0
    assert _sample(application, "topolvm_extender_reserved_bytes") == 0
    assert _sample(application, "topolvm_extender_reservation_ends_total", reason="bound") == 1
    assert _sample(application, "topolvm_extender_reservation_ends_total", reason="expired") == 1
    assert _sample(application, "topolvm_extender_tracked_pods") == 1  # p2 is still pending


def test_a_pod_held_on_tied_nodes_counts_on_each_in_the_gauges() -> None:
    from topolvm import clock
    from topolvm.core import scheduling
    from topolvm.extender import holder, metrics

    cfg = config.Config(policy=scheduling.Policy(tie_break=scheduling.TieBreak.SCHEDULER), reservation_ttl=30)
    stats = metrics.Metrics()
    application = app.App(cfg, holder.build(cfg, stats, clock=clock.ManualClock(0.0)), stats)
    nodes = [node("a", ssd=5 * GiB), node("b", ssd=5 * GiB)]
    call(application, "POST", "/prioritize", args(pod("p1", ssd=2 * GiB), nodes))
    call(application, "GET", "/metrics")
    assert _sample(application, "topolvm_extender_reservations") == 2
    assert _sample(application, "topolvm_extender_reserved_bytes") == 4 * GiB  # twice the pod's request
    assert _sample(application, "topolvm_extender_reserving_pods") == 1
    application.holder.service.pod_selected("p1", "b")
    call(application, "GET", "/metrics")
    assert _sample(application, "topolvm_extender_reserved_bytes") == 2 * GiB
    assert _sample(application, "topolvm_extender_reservation_ends_total", reason="not-chosen") == 1


def test_memo_reuse_is_counted() -> None:
    application = app.App(config.Config())
    nodes = [node(f"n{i}", ssd=GiB) for i in range(10)]
    call(application, "POST", "/predicate", args(pod(), nodes))
    nodes[3] = node("n3", ssd=2 * GiB)
    call(application, "POST", "/predicate", args(pod(), nodes))
    assert _sample(application, "topolvm_extender_node_items_total", decode="decoded") == 11
    assert _sample(application, "topolvm_extender_node_items_total", decode="reused") == 9


def test_served_app_expires_reservations_without_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lifespan starts a timer: an expired reservation goes even when kube-scheduler sends nothing."""
    import socket
    import threading
    import time

    import uvicorn

    from topolvm import clock
    from topolvm.extender import holder, metrics

    monkeypatch.setattr(app, "EXPIRE_EVERY", 0.05)
    manual = clock.ManualClock(0.0)
    cfg = config.Config(reservation_ttl=30)
    stats = metrics.Metrics()
    application = app.App(cfg, holder.build(cfg, stats, clock=manual), stats)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)
        body = args(pod("p1", ssd=GiB), [node("a", ssd=2 * GiB)])
        assert httpx.post(f"http://127.0.0.1:{port}/predicate", content=body, timeout=10).status_code == 200
        ledger = application.holder.service.ledger
        assert len(ledger) == 1
        manual.advance(31)
        for _ in range(200):
            if not ledger:
                break
            time.sleep(0.02)
        assert not ledger
    finally:
        server.should_exit = True
        thread.join(timeout=10)
