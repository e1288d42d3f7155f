"""What the replayer (tests/support/replay.py) waits for after each event, for each node it touched and each
device class the node has: the capacity topolvm-node published is the class's free bytes in lvm, the
extender's node cache has it, and csi-provisioner's CSIStorageCapacity object says it too.

That last one is a race in the real world (docs/fidelity.md): csi-provisioner refreshes a node's objects right
after provisioning or deleting there, often before topolvm-node has published the new free bytes, and then not
again until its poll a minute later. Waiting out the poll made the first replays take a minute per event, so a
stale object is deleted instead: csi-provisioner re-creates an object of its own that someone removed at once,
from a fresh GetCapacity (``onCDelete`` in external-provisioner's pkg/capacity/capacity.go), and nothing is
scheduled between two events. But not at first sight: as often, csi-provisioner's own refresh is a moment away
with the fresh value, and an object deleted under it fails that refresh's update ("not found"), which it retries
only after its one-second backoff (``--retry-interval-start``). A stale object is deleted once it has stayed
stale for ``STALE_GRACE`` seconds.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
import urllib.request
from typing import Any

from tests.support import deployment
from tests.support.stack import Stack
from topolvm import constants
from topolvm.core.quantity import to_bytes as quantity_bytes
from topolvm.lvmd import client as lvmd_client

CAPACITIES = f"/apis/storage.k8s.io/v1/namespaces/{deployment.NAMESPACE}/csistoragecapacities"
STALE_GRACE = 0.6  # seconds a stale CSIStorageCapacity may stay so before it is deleted (csi-provisioner's refresh)
# topolvm-node writes its annotations on every change lvmd reports, and checks them every 60 s
# (--capacity-resync-interval): a write lost (as these replays found one, since fixed: docs/fidelity.md) is mended
PUBLISH_TIMEOUT = 180.0


class Capacity:
    """``classes``: device class -> its StorageClass (deploy/'s); ``probe_node``: a Node with room for any probe
    in every class, labelled so no pod of the trace goes there (``extender_passes`` says why)."""

    def __init__(self, stack: Stack, namespace: str, classes: dict[str, str], probe_node: str) -> None:
        self.stack, self.cluster = stack, stack.cluster
        self.ns, self.classes, self.probe_node = namespace, classes, probe_node
        self._stale_since: dict[tuple[str, str], float] = {}  # (object name, resourceVersion) -> first seen stale

    def free(self, node: str, device_class: str) -> int:
        """The class's free bytes: from lvm2 itself (``vgs``) on a loop-device VG, else from the node's lvmd."""
        if self.stack.nodes[node].vg is not None and device_class == "ssd":
            return self.stack.vg_free(node)
        with contextlib.closing(lvmd_client.LvmdClient(str(self.stack.nodes[node].lvmd_socket))) as client:
            return client.free_bytes(device_class=device_class)

    def settle(self, node: str, device_classes: tuple[str, ...], *, objects: bool = True) -> None:
        for device_class in device_classes:
            seen: list[tuple[str | None, int]] = []  # (annotation, free bytes in lvm) at each look
            try:
                free = self.cluster.wait_for(
                    functools.partial(self._published, node, device_class, seen),
                    f"{node}'s published {device_class} capacity to be its free bytes",
                    PUBLISH_TIMEOUT,
                )
            except AssertionError as exc:
                last = f"the annotation said {seen[-1][0]}, lvm {seen[-1][1]} free" if seen else "never looked"
                with contextlib.closing(lvmd_client.LvmdClient(str(self.stack.nodes[node].lvmd_socket))) as client:
                    lvmd_says = client.free_bytes(device_class=device_class)
                raise AssertionError(f"{last}, lvmd {lvmd_says} (first look: {seen[:1]}): {exc}") from None
            self.cluster.wait_for(
                functools.partial(self.extender_passes, node, device_class, free), f"{node} in the extender"
            )
            if objects:
                self.cluster.wait_for(
                    functools.partial(self._object_fresh, node, self.classes[device_class], free),
                    f"{node}'s CSIStorageCapacity of {self.classes[device_class]} to be {free}",
                    90,
                )

    def _published(self, node: str, device_class: str, seen: list[tuple[str | None, int]]) -> int | None:
        found = self.cluster.get(f"/api/v1/nodes/{node}") or {}
        value = found.get("metadata", {}).get("annotations", {}).get(constants.capacity_annotation(device_class))
        free = self.free(node, device_class)
        seen.append((value, free))
        return free if value is not None and int(value) == free else None

    def extender_passes(self, node: str, device_class: str, free: int) -> bool:
        """The extender's filter lets ``node`` through for a probe pod asking ``free`` bytes of the class. The
        probe node is in the request too, with room for any probe, so two nodes pass and the extender holds
        nothing (a filter that lets one node through holds the pod's request there: kube-scheduler skips
        prioritize then; a first replayer that probed one node at a time held every node's whole free space)."""
        meta = {
            "name": "fidelity-probe",
            "namespace": self.ns,
            "uid": "fidelity-probe",
            "annotations": {constants.CAPACITY_KEY_PREFIX + device_class: str(free)},
        }
        body = json.dumps({"Pod": {"metadata": meta}, "NodeNames": [node, self.probe_node]}).encode()
        request = urllib.request.Request(f"{self.cluster.extender_url}/predicate", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        passed = reply.get("NodeNames") or []
        return self.probe_node in passed and node in passed

    def object_of(self, node: str, storage_class: str) -> dict[str, Any] | None:
        for item in (self.cluster.get(CAPACITIES) or {}).get("items", []):
            topology = item.get("nodeTopology", {}).get("matchLabels", {})
            if topology == {constants.TOPOLOGY_NODE_KEY: node} and item.get("storageClassName") == storage_class:
                return dict(item)
        return None

    def _object_fresh(self, node: str, storage_class: str, free: int) -> bool:
        item = self.object_of(node, storage_class)
        if item is None:
            return False
        if quantity_bytes(item.get("capacity", "0")) == free:
            return True
        version = (item["metadata"]["name"], item["metadata"]["resourceVersion"])
        if time.monotonic() - self._stale_since.setdefault(version, time.monotonic()) < STALE_GRACE:
            return False  # csi-provisioner's own refresh may be on its way
        code, reply = self.cluster.request("DELETE", f"{CAPACITIES}/{item['metadata']['name']}")
        assert code in (200, 404), reply
        return False
