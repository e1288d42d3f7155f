"""AdmissionReview builders and a populated in-memory cluster for the webhook tests."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from topolvm.core import resources, workloads
from topolvm.kube import memory

GiB = 1 << 30


def add_claim(
    cluster: memory.InMemoryCluster, name: str, storage_class: str | None, phase: str = "Pending", size: int = 0
) -> workloads.PersistentVolumeClaim:
    spec = workloads.ClaimSpec(storage_class_name=storage_class, request_bytes=size)
    created = cluster.create(workloads.PersistentVolumeClaim(resources.Meta(name, "app"), spec))
    if phase == "Pending":
        return created
    return cluster.update_status(dataclasses.replace(created, status=workloads.ClaimStatus(phase=phase)))


def cluster(c: memory.InMemoryCluster | None = None) -> memory.InMemoryCluster:
    """StorageClasses, claims in namespace ``app`` and namespaces, put in ``c`` (a new cluster by default)."""
    c = c if c is not None else memory.InMemoryCluster()
    for name, provisioner, parameters in (
        ("topolvm", "topolvm.io", {}),
        ("ssd", "topolvm.io", {"topolvm.io/device-class": "ssd"}),
        ("nfs", "nfs.csi.k8s.io", {}),
    ):
        c.create(workloads.StorageClass(resources.Meta(name), provisioner, parameters))
    add_claim(c, "data", "topolvm", size=3 * GiB)
    add_claim(c, "fast", "ssd", size=GiB)
    add_claim(c, "fast2", "ssd")  # no request: 1 GiB
    add_claim(c, "bound", "topolvm", "Bound", GiB)
    add_claim(c, "share", "nfs", size=GiB)
    add_claim(c, "nosc", None, size=GiB)
    c.create(resources.Namespace(resources.Meta("app")))
    c.create(resources.Namespace(resources.Meta("kube-system", labels={"topolvm.io/webhook": "ignore"})))
    return c


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
