"""``Scene``: one end-to-end test's namespace, Nodes and objects on the session's TopoLVM stack."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from tests.support import deployment
from tests.support.stack import Stack
from topolvm import constants

SELECTED_NODE = "volume.kubernetes.io/selected-node"


class Scene:
    """One test's namespace, Nodes (labelled ``e2e-tag=<tag>``) and objects."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.cluster = stack, stack.cluster
        self.tag = uuid.uuid4().hex[:6]
        self.ns = f"e2e-{self.tag}"
        code, reply = self.cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": self.ns}})
        assert code == 201, reply

    def node(self, suffix: str, vg_sizes: tuple[int, ...], *, thin_pool: int = 0) -> str:
        name = f"tlvm-{self.tag}-{suffix}"
        self.stack.add_node(name, vg_sizes, labels={"e2e-tag": self.tag}, thin_pool=thin_pool)
        return name

    def skip_webhook(self) -> None:
        """Label the namespace so the webhook ignores its pods: they ask kube-scheduler for no
        ``topolvm.io/capacity``, so the extender is never called (Storage Capacity Tracking alone)."""
        code, reply = self.cluster.request(
            "PATCH",
            f"/api/v1/namespaces/{self.ns}",
            {"metadata": {"labels": {constants.NAMESPACE_OPT_OUT_LABEL: constants.NAMESPACE_OPT_OUT_VALUE}}},
            content_type="application/merge-patch+json",
        )
        assert code == 200, reply

    @contextlib.contextmanager
    def one_filter_worker(self) -> Iterator[None]:
        """kube-scheduler restarted with ``parallelism: 1`` for the block, then as deploy/ ships it. With its
        default 16 filter goroutines the feasible list is in the order they finish, and without an extender a tie
        goes to the tied node that comes first: a race (tests/e2e/test_fidelity.py's tie repeats measure it). One
        goroutine checks the nodes in order, as the simulator's model does: both sides deterministic
        (docs/fidelity.md)."""
        self.stack.cluster.restart_kube_scheduler(parallelism=1)
        try:
            yield
        finally:
            self.stack.cluster.restart_kube_scheduler()

    @contextlib.contextmanager
    def extender_alone(self) -> Iterator[None]:
        """TopoLVM's CSIDriver without ``storageCapacity`` for the block (the chart's
        ``controller.storageCapacityTracking.enabled: false``), then as deploy/ ships it: kube-scheduler's
        VolumeBinding ignores CSIStorageCapacity and the extender alone weighs storage (the simulator's
        ``extender`` mode)."""
        self._driver_capacity(False)
        try:
            yield
        finally:
            self._driver_capacity(True)

    def _driver_capacity(self, enabled: bool) -> None:
        code, reply = self.cluster.request(
            "PATCH",
            f"/apis/storage.k8s.io/v1/csidrivers/{constants.PLUGIN_NAME}",
            {"spec": {"storageCapacity": enabled}},
            content_type="application/merge-patch+json",
        )
        assert code == 200 and reply["spec"]["storageCapacity"] is enabled, reply

    def claim_and_pod(
        self,
        name: str,
        size: str,
        storage_class: str = "topolvm-provisioner",
        volume_mode: str = "Filesystem",
        data_source: dict[str, str] | None = None,
    ) -> None:
        claim: dict[str, Any] = {
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "volumeMode": volume_mode,
                "resources": {"requests": {"storage": size}},
            },
        }
        if data_source:
            claim["spec"]["dataSource"] = data_source
        code, reply = self.cluster.request("POST", f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims", claim)
        assert code == 201, reply
        device = {"name": "data", "devicePath": "/dev/data"}
        uses = (
            {"volumeDevices": [device]}
            if volume_mode == "Block"
            else {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
        )
        pod = {
            "metadata": {"name": name},
            "spec": {
                "nodeSelector": {"e2e-tag": self.tag},
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", **uses}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}],
            },
        }
        code, reply = self.cluster.request("POST", f"/api/v1/namespaces/{self.ns}/pods", pod)
        assert code == 201, reply

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")

    def running(self, name: str) -> dict[str, Any] | None:
        pod = self.get("pods", name)
        return pod if pod and pod.get("status", {}).get("phase") == "Running" else None

    def events(self, name: str, reason: str) -> list[dict[str, Any]]:
        reply = self.cluster.get(
            f"/api/v1/namespaces/{self.ns}/events?fieldSelector=involvedObject.name%3D{name},reason%3D{reason}"
        )
        return list((reply or {}).get("items", []))

    def capacity(self, node: str, storage_class: str = "topolvm-provisioner") -> dict[str, Any] | None:
        """The CSIStorageCapacity csi-provisioner published for ``node`` and ``storage_class``, if any."""
        reply = self.cluster.get(f"/apis/storage.k8s.io/v1/namespaces/{deployment.NAMESPACE}/csistoragecapacities")
        for item in (reply or {}).get("items", []):
            labels = item.get("nodeTopology", {}).get("matchLabels", {})
            if labels == {constants.TOPOLOGY_NODE_KEY: node} and item["storageClassName"] == storage_class:
                return dict(item)
        return None

    def logical_volumes(self) -> list[dict[str, Any]]:
        reply = self.cluster.get("/apis/topolvm.io/v1/logicalvolumes") or {}
        mine = [lv for lv in reply.get("items", []) if lv["spec"]["nodeName"].startswith(f"tlvm-{self.tag}-")]
        return mine

    def delete_all(self) -> None:
        """Pods, then claims (reclaimPolicy Delete: the provisioner deletes the volumes), then the Nodes."""
        for kind in ("pods", "persistentvolumeclaims"):
            code, reply = self.cluster.request("DELETE", f"/api/v1/namespaces/{self.ns}/{kind}")
            assert code == 200, reply
        self.cluster.wait_for(lambda: not self.logical_volumes(), "every LogicalVolume of the test to go", 90)
