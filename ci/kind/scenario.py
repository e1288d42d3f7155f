"""The scenario ci/kind/run.sh and tests/integration/test_k3s.py run on a real cluster with topolvm-py installed
(ci/kind/install.sh): a thin claim written by a pod, a snapshot of it, a claim restored from the snapshot read
by another pod, then everything deleted and its logical volumes gone. Raises AssertionError or TimeoutError.

    .venv/bin/python ci/kind/scenario.py --kubeconfig FILE
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config

NAMESPACE = "topolvm-scenario"
STORAGE_CLASS = "topolvm-provisioner-thin"  # deploy/: device class ssd-thin, ext4
SNAPSHOT_CLASS = "topolvm-provisioner-thin"
MESSAGE = "written on a thin volume"
BUSYBOX = "busybox:1.37"


def claim(name: str, source: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": STORAGE_CLASS,
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if source:
        spec["dataSource"] = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": source}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def pod(name: str, claim_name: str, script: str) -> dict[str, Any]:
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
                    "image": BUSYBOX,
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(2)


def run(kubeconfig: str, timeout: float = 300) -> None:
    api = config.new_client_from_config(config_file=kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    try:
        _scenario(core, custom, timeout)
    finally:
        core.delete_namespace(NAMESPACE)
    wait(f"namespace {NAMESPACE} deleted", lambda: NAMESPACE not in _names(core.list_namespace()), timeout)
    wait("every LogicalVolume deleted", lambda: not _logical_volumes(custom), timeout)


def _scenario(core: client.CoreV1Api, custom: client.CustomObjectsApi, timeout: float) -> None:
    def succeeded(name: str) -> Callable[[], bool]:
        def check() -> bool:
            phase = core.read_namespaced_pod(name, NAMESPACE).status.phase
            assert phase != "Failed", core.read_namespaced_pod_log(name, NAMESPACE)
            return bool(phase == "Succeeded")

        return check

    core.create_namespaced_persistent_volume_claim(NAMESPACE, claim("thin"))
    core.create_namespaced_pod(NAMESPACE, pod("writer", "thin", f"echo '{MESSAGE}' > /data/message && sync"))
    wait("the writer pod", succeeded("writer"), timeout)
    assert len(_logical_volumes(custom)) == 1

    snapshot = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "thin-snapshot"},
        "spec": {"volumeSnapshotClassName": SNAPSHOT_CLASS, "source": {"persistentVolumeClaimName": "thin"}},
    }
    group = ("snapshot.storage.k8s.io", "v1", NAMESPACE, "volumesnapshots")
    custom.create_namespaced_custom_object(*group, snapshot)

    def ready() -> bool:
        status = custom.get_namespaced_custom_object(*group, "thin-snapshot").get("status") or {}
        return bool(status.get("readyToUse"))

    wait("the snapshot ready to use", ready, timeout)

    core.create_namespaced_persistent_volume_claim(NAMESPACE, claim("restored", source="thin-snapshot"))
    core.create_namespaced_pod(NAMESPACE, pod("reader", "restored", "cat /data/message"))
    wait("the reader pod", succeeded("reader"), timeout)
    assert core.read_namespaced_pod_log("reader", NAMESPACE).strip() == MESSAGE
    # The claim, its snapshot and the restored claim: three thin volumes on the same node.
    volumes = _logical_volumes(custom)
    assert len(volumes) == 3, volumes
    assert len({lv["spec"]["nodeName"] for lv in volumes}) == 1
    assert {lv["spec"]["deviceClass"] for lv in volumes} == {"ssd-thin"}


def _logical_volumes(custom: client.CustomObjectsApi) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = custom.list_cluster_custom_object("topolvm.io", "v1", "logicalvolumes")["items"]
    return items


def _names(listing: Any) -> set[str]:
    return {item.metadata.name for item in listing.items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per step (default: %(default)s)")
    args = parser.parse_args(argv)
    run(args.kubeconfig, args.timeout)
    print("scenario passed: thin claim, snapshot, restored claim, cleanup")
    return 0


if __name__ == "__main__":
    sys.exit(main())
