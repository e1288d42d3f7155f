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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import faults
from tests.hil.node.kube import Kube
from tests.hil.node.workloads import VG, busybox_pod
from tests.support import deployment, hil_node, stack_snapshots


@pytest.fixture(scope="session")
def node() -> Iterator[hil_node.HilNode]:
    workdir = Path("/tmp/hil-node")
    chart = deployment.documents(hil_node.env_files() / "topolvm.yaml")
    built = hil_node.HilNode(workdir, images={*hil_node.images_of(chart), hil_node.WORKLOAD_IMAGE})
    try:
        yield built.start()
    finally:  # the logs come back also (above all) when the node did not start
        built.stop()
        out = Path(os.environ.get("TOPOLVM_HIL_OUT", "/job/out")) / "node"
        out.mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copyfile(log, out / log.name)
        pod_logs = Path("/var/log/pods")  # kubelet's: <namespace>_<pod>_<uid>/<container>/<restart>.log
        if pod_logs.is_dir():
            shutil.copytree(pod_logs, out / "pods", dirs_exist_ok=True, ignore_dangling_symlinks=True)
        (out / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in built.timings.items()}, indent=2))


@pytest.fixture(scope="session")
def kube(node: hil_node.HilNode) -> Kube:
    return Kube(node)


THIN_POOL_SIZE = "1G"
FLAKY_VG = "flakyvg"
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
def flaky_pv() -> Iterator[faults.FaultablePV]:
    """The PV of tests/hil/node/values.yaml's "flaky" class: a dm device over the fourth NVMe disk that a test
    can switch to dm-error (a dead disk still enumerated) and back."""
    disks = faults.nvme_disks()
    assert len(disks) == 4, f"the node suite needs four NVMe disks, found {disks}"
    with faults.FaultablePV(disks[3], "flaky") as pv:
        _lvm("vgcreate", "-y", FLAKY_VG, pv.path)
        yield pv
        pv.restore()
        # Before the dm device goes (its table turns to error): no LVM reads of a dead PV in the console.
        subprocess.run(["vgremove", "-ff", "-y", FLAKY_VG], capture_output=True, check=False)


@pytest.fixture(scope="session")
def topolvm(node: hil_node.HilNode, kube: Kube, flaky_pv: faults.FaultablePV) -> dict[str, Any]:
    """TopoLVM deployed from the rendered chart onto a VG over three NVMe disks (and the flaky class's VG),
    every pod ready, kubelet's CSINode listing the driver and topolvm-node's capacity annotation on the Node.
    Returns the Node."""
    started = time.monotonic()
    disks = faults.nvme_disks()[:3]
    _lvm("vgcreate", "-y", VG, *disks)
    _lvm("lvcreate", "-y", "--type", "thin-pool", "-L", THIN_POOL_SIZE, "-n", "thinpool", VG)
    applier = deployment.Applier(node.cluster.plane)
    # The cluster's snapshot add-on first (the chart's VolumeSnapshotClass needs its CRDs), as an operator has it.
    manifests = node.profile_dir / "manifests"
    chart = hil_node.env_files() / "topolvm.yaml"
    for path in [*sorted(manifests.glob("crd-*.yaml")), chart]:
        for doc in deployment.documents(path):
            if doc["kind"] == "CustomResourceDefinition":
                applier.apply(doc)
                name = doc["metadata"]["name"]
                kube.wait(lambda n=name: _established(kube, n), f"CRD {name}", 60)
    stack_snapshots.start_snapshot_controller(
        node.cluster,
        node.workdir,
        binary=node.profile_dir / "bin" / stack_snapshots.SNAPSHOT_CONTROLLER,
        rbac=manifests / "rbac-snapshot-controller.yaml",
    )
    for doc in deployment.documents(chart):
        if doc["kind"] != "CustomResourceDefinition":
            applier.apply(doc)
    kube.wait(lambda: workloads_ready(kube), "TopoLVM's pods to be ready", timeout=600)
    # The webhook answers kube-apiserver (at its endpoint's address) before any test pod is created.
    probe = busybox_pod("webhook-probe", "true")
    kube.wait(
        lambda: kube.cluster.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", probe)[0] == 201,
        "the pod webhook to answer",
        timeout=300,
    )
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
    status = (crd or {}).get("status") or {}  # external-snapshotter's CRD files carry "conditions: null"
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return conditions.get("Established") == "True"
