"""AdmissionReview builders and a populated in-memory cluster for the webhook tests."""

from __future__ import annotations

import json
from typing import Any

from topolvm.webhook import ports

GiB = 1 << 30


def cluster() -> ports.FakeLookup:
    lookup = ports.FakeLookup()
    lookup.add_storage_class(ports.StorageClass("topolvm", "topolvm.io"))
    lookup.add_storage_class(ports.StorageClass("ssd", "topolvm.io", {"topolvm.io/device-class": "ssd"}))
    lookup.add_storage_class(ports.StorageClass("nfs", "nfs.csi.k8s.io"))
    lookup.add_claim(ports.Claim("app", "data", "topolvm", "Pending", "3Gi"))
    lookup.add_claim(ports.Claim("app", "fast", "ssd", "Pending", "1Gi"))
    lookup.add_claim(ports.Claim("app", "fast2", "ssd", "Pending", None))  # no request: 1 GiB
    lookup.add_claim(ports.Claim("app", "bound", "topolvm", "Bound", "1Gi"))
    lookup.add_claim(ports.Claim("app", "share", "nfs", "Pending", "1Gi"))
    lookup.add_claim(ports.Claim("app", "nosc", None, "Pending", "1Gi"))
    lookup.namespaces["app"] = {}
    lookup.namespaces["kube-system"] = {"topolvm.io/webhook": "ignore"}
    return lookup


def pod(*claims: str, ephemeral: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]
    for i, template in enumerate(ephemeral or []):
        volumes.append({"name": f"eph{i}", "ephemeral": {"volumeClaimTemplate": {"spec": template}}})
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "app"},
        "spec": {"containers": [{"name": "c", "image": "x"}, {"name": "side"}], "volumes": volumes},
    }
    for key, value in extra.items():
        obj[key] = value
    return obj


def review(obj: Any, namespace: str = "app", operation: str = "CREATE") -> bytes:
    request = {
        "uid": "req-1",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": operation,
        "object": obj,
    }
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()
