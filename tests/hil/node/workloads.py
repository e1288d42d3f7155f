"""What the node suite's scenarios are made of: pods of the workload image, claims, and LVM as the node sees it."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.hil.node.kube import Kube
from tests.support import hil_node

VG = "myvg1"  # tests/hil/node/values.yaml's device classes
PODS = "/api/v1/namespaces/default/pods"
PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"


def claim(name: str, storage_class: str, size: str = "512Mi", mode: str = "Filesystem") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "volumeMode": mode,
            "resources": {"requests": {"storage": size}},
        },
    }


def mounted(claim_name: str, path: str = "/data") -> dict[str, Any]:
    return {
        "volume": {"name": "data", "persistentVolumeClaim": {"claimName": claim_name}},
        "mounts": [{"name": "data", "mountPath": path}],
    }


def lv_names(vg: str = VG) -> set[str]:
    report = subprocess.run(
        ["lvs", "--reportformat", "json", "-o", "lv_name", vg], capture_output=True, text=True, check=True
    ).stdout
    return {row["lv_name"] for row in json.loads(report)["report"][0]["lv"]}


def bound_volume(kube: Kube, claim_name: str) -> dict[str, Any]:
    pvc = kube.wait(
        lambda: (c := kube.get(f"{PVCS}/{claim_name}")) and c["status"].get("phase") == "Bound" and c,
        f"PVC {claim_name} Bound",
    )
    pv = kube.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    assert pv is not None
    return pv


def remove(kube: Kube, pods: list[str], claim_name: str) -> None:
    """Delete the pods and the claim; the LV goes with the PV (reclaimPolicy Delete)."""
    for pod in pods:
        kube.delete(f"{PODS}/{pod}")
    for pod in pods:
        kube.wait_gone(f"{PODS}/{pod}")
    pvc = kube.get(f"{PVCS}/{claim_name}")
    kube.delete(f"{PVCS}/{claim_name}")
    if pvc is not None and pvc["spec"].get("volumeName"):
        kube.wait_gone(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")


def busybox_pod(name: str, script: str, volumes: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    """A pod of the profile's workload image running ``script`` under sh, once."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": hil_node.WORKLOAD_IMAGE,
                    "command": ["/bin/sh", "-c", script],
                    "volumeMounts": [m for v in volumes or [] for m in v.get("mounts", [])],
                    "volumeDevices": [d for v in volumes or [] for d in v.get("devices", [])],
                }
            ],
            "volumes": [v["volume"] for v in volumes or []],
            **spec,
        },
    }
