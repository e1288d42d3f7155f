"""Builders for ExtenderArgs JSON shared by the extender tests (and shaped like what kube-scheduler sends)."""

from __future__ import annotations

import json
from typing import Any

GiB = 1 << 30
PREFIX = "capacity.topolvm.io/"


def node(name: str, **capacities: int | str) -> dict[str, Any]:
    annotations = {PREFIX + cls: str(value) for cls, value in capacities.items()}
    annotations["node.alpha.kubernetes.io/ttl"] = "0"
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": "uid-" + name,
            "labels": {"kubernetes.io/hostname": name},
            "annotations": annotations,
        },
        "spec": {"podCIDR": "10.0.0.0/24"},
        "status": {"capacity": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(uid: str = "pod-uid", volumes: list[dict[str, Any]] | None = None, **requests: int | str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c"}]}
    if volumes is not None:
        spec["volumes"] = volumes
    return {
        "metadata": {
            "name": "p-" + uid,
            "namespace": "default",
            "uid": uid,
            "annotations": {PREFIX + cls: str(value) for cls, value in requests.items()},
        },
        "spec": spec,
    }


def args(pod_obj: dict[str, Any], nodes: list[dict[str, Any]], names: bool = False) -> bytes:
    if names:
        return json.dumps({"Pod": pod_obj, "NodeNames": [n["metadata"]["name"] for n in nodes]}).encode()
    return json.dumps({"Pod": pod_obj, "Nodes": {"items": nodes}}).encode()
