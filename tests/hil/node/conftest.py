"""Fixtures of the HIL node suite (guest-only; the VM booted with the node profile disk, harness/node_profile.py).

``node``: the one-node cluster of tests/support/hil_node.py, started once per session; its logs are copied to
$TOPOLVM_HIL_OUT/node/ at the end (they come back in the run directory). ``kube``: requests as the admin, and
the waits the scenarios share.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import faults
from tests.support import deployment, hil_node

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
            events = self.get(f"/api/v1/namespaces/{namespace}/events") or {"items": []}
            for event in events["items"][-25:]:
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

    def logs(self, name: str, namespace: str = NAMESPACE) -> str:
        code, reply = self.cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log")
        assert code == 200, f"log of {name}: HTTP {code}: {reply}"
        return str(reply.get("text", reply))

    def wait_gone(self, path: str, timeout: float = 120.0) -> None:
        self.wait(lambda: self.get(path) is None, f"{path} to be deleted", timeout)


@pytest.fixture(scope="session")
def node() -> Iterator[hil_node.HilNode]:
    workdir = Path("/tmp/hil-node")
    chart = deployment.documents(hil_node.env_files() / "topolvm.yaml")
    started = hil_node.HilNode(workdir, images={*hil_node.images_of(chart), hil_node.WORKLOAD_IMAGE}).start()
    try:
        yield started
    finally:
        started.stop()
        out = Path(os.environ.get("TOPOLVM_HIL_OUT", "/job/out")) / "node"
        out.mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copyfile(log, out / log.name)
        pod_logs = Path("/var/log/pods")  # kubelet's: <namespace>_<pod>_<uid>/<container>/<restart>.log
        if pod_logs.is_dir():
            shutil.copytree(pod_logs, out / "pods", dirs_exist_ok=True, ignore_dangling_symlinks=True)
        (out / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in started.timings.items()}, indent=2))


@pytest.fixture(scope="session")
def kube(node: hil_node.HilNode) -> Kube:
    return Kube(node)


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


VG = "myvg1"  # tests/hil/node/values.yaml's device classes
THIN_POOL_SIZE = "1G"
DRIVER = "topolvm.io"


def _lvm(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


def workloads_ready(kube: Kube) -> bool:
    """Every DaemonSet and Deployment of topolvm-system has all its pods ready."""
    base = "/apis/apps/v1/namespaces/topolvm-system"
    sets = (kube.get(f"{base}/daemonsets") or {"items": []})["items"]
    deployments = (kube.get(f"{base}/deployments") or {"items": []})["items"]
    if not sets or not deployments:
        return False
    daemons_ready = all(
        d["status"].get("desiredNumberScheduled", 0) > 0
        and d["status"].get("numberReady") == d["status"]["desiredNumberScheduled"]
        for d in sets
    )
    return daemons_ready and all(d["status"].get("readyReplicas") == d["spec"]["replicas"] for d in deployments)


@pytest.fixture(scope="session")
def topolvm(node: hil_node.HilNode, kube: Kube) -> dict[str, Any]:
    """TopoLVM deployed from the rendered chart onto a VG over three NVMe disks, every pod ready, kubelet's
    CSINode listing the driver and topolvm-node's capacity annotation on the Node. Returns the Node."""
    started = time.monotonic()
    disks = faults.nvme_disks()[:3]
    assert len(disks) == 3, f"the node suite needs three NVMe disks, found {disks}"
    _lvm("vgcreate", "-y", VG, *disks)
    _lvm("lvcreate", "-y", "--type", "thin-pool", "-L", THIN_POOL_SIZE, "-n", "thinpool", VG)
    applier = deployment.Applier(node.cluster.plane)
    for doc in deployment.documents(hil_node.env_files() / "topolvm.yaml"):
        if doc["kind"] == "CustomResourceDefinition":
            applier.apply(doc)
            kube.wait(lambda d=doc: _established(kube, d["metadata"]["name"]), f"CRD {doc['metadata']['name']}", 60)
    for doc in deployment.documents(hil_node.env_files() / "topolvm.yaml"):
        if doc["kind"] != "CustomResourceDefinition":
            applier.apply(doc)
    kube.wait(lambda: workloads_ready(kube), "TopoLVM's pods to be ready", timeout=600)
    csi_node = kube.wait(
        lambda: (
            (n := kube.get(f"/apis/storage.k8s.io/v1/csinodes/{hil_node.NODE_NAME}"))
            and any(d["name"] == DRIVER for d in n["spec"].get("drivers") or [])
            and n
        ),
        "kubelet to register topolvm.io (CSINode)",
    )
    assert csi_node
    found = kube.wait(
        lambda: (
            (n := kube.get(f"/api/v1/nodes/{hil_node.NODE_NAME}"))
            and "capacity.topolvm.io/ssd" in n["metadata"].get("annotations", {})
            and n
        ),
        "topolvm-node's capacity annotation on the Node",
    )
    node.timings["topolvm_ready_s"] = time.monotonic() - started
    return dict(found)


def _established(kube: Kube, name: str) -> bool:
    crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    conditions = {c["type"]: c["status"] for c in (crd or {}).get("status", {}).get("conditions", [])}
    return conditions.get("Established") == "True"


def _container_state(status: dict[str, Any]) -> str:
    state = status.get("state", {})
    return f"{status['name']}:{next(iter(state), '?')} {state.get('waiting', {}).get('reason', '')}".strip()
