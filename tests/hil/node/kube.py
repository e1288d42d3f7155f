"""The admin's requests against the HIL node's kube-apiserver, and the waits the scenarios share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.support import hil_node

NAMESPACE = "default"


class Kube:
    """The admin's requests against the node's kube-apiserver, plus waits."""

    def __init__(self, node: hil_node.HilNode) -> None:
        self.node = node
        self.cluster = node.cluster

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        code, reply = self.cluster.request("POST", path, body)
        assert code == 201, f"POST {path}: HTTP {code}: {reply.get('message')}\n{self.describe()}"
        return reply

    def get(self, path: str) -> dict[str, Any] | None:
        return self.cluster.get(path)

    def delete(self, path: str) -> None:
        code, reply = self.cluster.request("DELETE", path)
        assert code in (200, 202, 404), f"DELETE {path}: HTTP {code}: {reply.get('message')}"

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        code, reply = self.cluster.request("PATCH", path, body, content_type="application/merge-patch+json")
        assert code == 200, f"PATCH {path}: HTTP {code}: {reply.get('message')}"
        return reply

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 180.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            problems = self.cluster.problems()
            assert not problems, f"waiting for {what}: {problems}\n{self.node.log_tails()}"
            value = predicate()
            if value:
                return value
            time.sleep(1.0)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.describe()}")

    def describe(self) -> str:
        """Pods and their states plus recent events: what a failed wait leaves to read."""
        lines = []
        for namespace in (NAMESPACE, "topolvm-system"):
            pods = self.get(f"/api/v1/namespaces/{namespace}/pods") or {"items": []}
            for pod in pods["items"]:
                statuses = [_container_state(s) for s in pod.get("status", {}).get("containerStatuses", [])]
                lines.append(f"pod {namespace}/{pod['metadata']['name']} {pod['status'].get('phase')} {statuses}")
            events = (self.get(f"/api/v1/namespaces/{namespace}/events") or {"items": []})["items"]
            events.sort(
                key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or e["metadata"]["creationTimestamp"]
            )
            for event in events[-25:]:
                lines.append(
                    f"event {event.get('reason')} {event['involvedObject'].get('name')}: {event.get('message')}"
                )
        return "\n".join(lines)

    def pod_phase(self, name: str, namespace: str = NAMESPACE) -> str | None:
        pod = self.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        return None if pod is None else str(pod["status"].get("phase"))

    def wait_pod_done(self, name: str, namespace: str = NAMESPACE, timeout: float = 240.0) -> str:
        """Wait until the pod Succeeded and return its log; fail on Failed."""
        phase = self.wait(
            lambda: (p := self.pod_phase(name, namespace)) in ("Succeeded", "Failed") and p,
            f"pod {name} to finish",
            timeout,
        )
        log = self.logs(name, namespace)
        assert phase == "Succeeded", f"pod {name} {phase}; log:\n{log}\n{self.describe()}"
        return log

    def logs(self, name: str, namespace: str = NAMESPACE, container: str = "") -> str:
        query = f"?container={container}" if container else ""
        code, reply = self.cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log{query}")
        assert code == 200, f"log of {name}: HTTP {code}: {reply}"
        return str(reply.get("text", reply))

    def node_agent_logs(self) -> str:
        """The topolvm-node container's log of every topolvm-node pod (the DaemonSet's, one node)."""
        pods = (self.get("/api/v1/namespaces/topolvm-system/pods") or {"items": []})["items"]
        names = [p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("topolvm-node-")]
        return "".join(self.logs(n, "topolvm-system", container="topolvm-node") for n in names)

    def wait_gone(self, path: str, timeout: float = 120.0) -> None:
        self.wait(lambda: self.get(path) is None, f"{path} to be deleted", timeout)


def _container_state(status: dict[str, Any]) -> str:
    state = status.get("state", {})
    return f"{status['name']}:{next(iter(state), '?')} {state.get('waiting', {}).get('reason', '')}".strip()
