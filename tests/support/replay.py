"""Replays a simulator trace (simulator/trace.py, docs/simulator.md "Trace format") on a started ``Stack``
(tests/support/stack.py): the real kube-scheduler with our extender, csi-provisioner, csi-resizer, our
controller and node agents on kwok Nodes. tests/e2e/test_fidelity.py compares what it ends with to the
simulator's run of the same trace (simulator/fidelity.py, docs/fidelity.md).

One event at a time, each settled before the next, so nothing depends on how fast a component is: a pod is
Running with its claims Bound (or has kube-scheduler's FailedScheduling event), a deleted pod and its claims
and volumes are gone, an expanded volume has its new size in lvm, a new Node has its CSIStorageCapacity; and
after every event each node's published capacity is its VG's free bytes and the extender's node cache has it.

Names: trace namespaces all map to the test's namespace; a simulated node ``n`` is the kwok Node
``<prefix>n`` (the prefix keeps the nodes' name order, which the extender's tie-break uses), labelled
``e2e-tag=<tag>``, and every pod is pinned to that label as tests/e2e/scene.py does.
"""

from __future__ import annotations

import functools
import json
import urllib.request
from typing import Any

from simulator import fidelity, trace
from tests.support import deployment
from tests.support.stack import Stack
from topolvm import constants
from topolvm.core.quantity import to_bytes as quantity_bytes

SELECTED_NODE = "volume.kubernetes.io/selected-node"
# lvm2 keeps the first MiB of a PV for its label and metadata (pe_start) and the VG gets whole 4 MiB extents of
# the rest; the simulator's in-memory LVM gives a disk's whole size to its VG. One extent more of loop device
# makes the real VG exactly the simulated disk's size (docs/fidelity.md: what the simulator does not model).
PV_METADATA_ALLOWANCE = 4 << 20
THICK_CLASS = "ssd"
THICK_STORAGE_CLASS = "topolvm-provisioner"  # deploy/manifests/storageclasses.yaml, the default device class
PROBE_VG = 32 << 30  # more than any probe asks (the largest VG of the trace); a sparse loop file


class Replayer:
    """Applies trace operations to ``stack`` in ``namespace``; ``disks`` gives each simulated node's PV sizes."""

    def __init__(
        self,
        stack: Stack,
        namespace: str,
        tag: str,
        disks: dict[str, tuple[int, ...]],
        *,
        timeout: float = 120.0,
        capacity_objects: bool = False,
    ) -> None:
        """``capacity_objects``: also wait, after every event, until each node's CSIStorageCapacity is its VG's
        free bytes (csi-provisioner polls every minute when its refresh after provisioning raced the node agent:
        docs/fidelity.md); needed when kube-scheduler decides by those objects alone."""
        self.stack, self.cluster = stack, stack.cluster
        self.capacity_objects = capacity_objects
        self.ns, self.tag, self.disks, self.timeout = namespace, tag, disks, timeout
        self.prefix = f"tlvm-{tag}-"
        self.probe_node = f"{self.prefix}probe"
        self.claims_of: dict[str, list[str]] = {}  # pod -> its claims
        self.placed: dict[fidelity.ClaimKey, str | None] = {}  # (trace namespace, claim) -> simulated node
        self.deleted: set[str] = set()  # pods deleted

    def start(self) -> None:
        """The probe node: a Node with a VG larger than any probe asks, labelled so no pod of the trace can go
        there (``_extender_passes`` says why it is needed)."""
        self.stack.add_node(self.probe_node, (PROBE_VG,), labels={"fidelity-probe": self.tag})

    def real(self, node: str) -> str:
        return self.prefix + node

    def simulated(self, real: str) -> str:
        return real.removeprefix(self.prefix)

    def add_node(self, name: str) -> None:
        sizes = tuple(size + PV_METADATA_ALLOWANCE for size in self.disks[name])
        self.stack.add_node(self.real(name), sizes, labels={"e2e-tag": self.tag})
        self.cluster.wait_for(lambda: self._capacity(self.real(name)) is not None, f"{name}'s CSIStorageCapacity")
        self._settle_capacity()

    def apply(self, op: trace.Op) -> None:
        if isinstance(op, trace.AddNode):
            self.add_node(op.name)
            return
        if isinstance(op, trace.CreatePod):
            self._create_pod(op)
        elif isinstance(op, trace.DeletePod):
            self._delete_pod(op)
        elif isinstance(op, trace.ExpandClaim):
            self._expand(op)
        else:
            raise NotImplementedError(f"the real-plane replayer has no {type(op).__name__} yet")
        self._settle_capacity()

    def _settle_capacity(self) -> None:
        """Every node's published capacity is its VG's free bytes, and the extender's node cache (its own watch)
        has it: a filter request for exactly that much passes every node. Without this the next pod can reach
        the extender before a capacity change or a new Node has, and the extender then refuses or prefers nodes
        by what it saw before."""
        published: dict[str, int] = {}
        for real in (self.real(name) for name in self.disks if self._exists(name)):
            published[real] = self.cluster.wait_for(
                functools.partial(self._published, real), f"{real}'s published capacity to be its VG's free bytes"
            )
        for real, free in published.items():
            self.cluster.wait_for(functools.partial(self._extender_passes, real, free), f"{real} in the extender")
            if self.capacity_objects:
                self.cluster.wait_for(
                    lambda real=real, free=free: self._capacity(real) == free, f"{real}'s CSIStorageCapacity", 90
                )

    def _published(self, real: str) -> int | None:
        node = self.cluster.get(f"/api/v1/nodes/{real}") or {}
        value = node.get("metadata", {}).get("annotations", {}).get(constants.capacity_annotation(THICK_CLASS))
        free = self.stack.vg_free(real)
        return free if value is not None and int(value) == free else None

    def _extender_passes(self, real: str, free: int) -> bool:
        """The extender's filter lets ``real`` through for a probe pod asking ``free`` bytes. The probe node is
        in the request too, with room for any probe, so two nodes pass and the extender holds nothing (a filter
        that lets one node through holds the pod's request there: kube-scheduler skips prioritize then)."""
        key = constants.CAPACITY_KEY_PREFIX + constants.DEFAULT_DEVICE_CLASS_ANNOTATION_NAME
        meta = {
            "name": "fidelity-probe",
            "namespace": self.ns,
            "uid": "fidelity-probe",
            "annotations": {key: str(free)},
        }
        body = json.dumps({"Pod": {"metadata": meta}, "NodeNames": [real, self.probe_node]}).encode()
        request = urllib.request.Request(f"{self.cluster.extender_url}/predicate", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        passed = reply.get("NodeNames") or []
        return self.probe_node in passed and real in passed

    def outcome(self) -> fidelity.Outcome:
        free = {(name, THICK_CLASS): self.stack.vg_free(self.real(name)) for name in self.disks if self._exists(name)}
        unplaced = sum(
            1
            for pod in self.claims_of
            if pod not in self.deleted and not (self._get("pods", pod) or {}).get("spec", {}).get("nodeName")
        )
        return fidelity.Outcome(dict(self.placed), {}, free, unplaced)

    # --- operations

    def _create_pod(self, op: trace.CreatePod) -> None:
        for claim in op.claims:
            body = {
                "metadata": {"name": claim.name},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": claim.storage_class,
                    "resources": {"requests": {"storage": str(claim.bytes)}},
                },
            }
            self._post("persistentvolumeclaims", body)
        pod = {
            "metadata": {"name": op.name},
            "spec": {
                "nodeSelector": {"e2e-tag": self.tag},
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "c",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": op.cpu, "memory": op.memory}},
                        "volumeMounts": [{"name": c.name, "mountPath": f"/{c.name}"} for c in op.claims],
                    }
                ],
                "volumes": [{"name": c.name, "persistentVolumeClaim": {"claimName": c.name}} for c in op.claims],
            },
        }
        self._post("pods", pod)
        self.claims_of[op.name] = [c.name for c in op.claims]
        settled = self.cluster.wait_for(
            lambda: self._placed(op) or self._failed(op.name), f"pod {op.name} to run or fail", self.timeout
        )
        for claim in op.claims:
            node = settled.get(claim.name) if isinstance(settled, dict) else None
            self.placed[(op.namespace, claim.name)] = self.simulated(node) if node else None

    def _placed(self, op: trace.CreatePod) -> dict[str, str] | None:
        """Claim -> real node once the pod runs and each claim is Bound to a volume whose LV exists."""
        pod = self._get("pods", op.name)
        if not pod or pod.get("status", {}).get("phase") != "Running":
            return None
        found: dict[str, str] = {}
        for claim in op.claims:
            pvc = self._get("persistentvolumeclaims", claim.name)
            if not pvc or pvc.get("status", {}).get("phase") != "Bound":
                return None
            node = pvc["metadata"].get("annotations", {}).get(SELECTED_NODE)
            pv = self.cluster.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
            if not node or not pv or pv["spec"]["csi"]["volumeHandle"] not in self.stack.lvs(node):
                return None
            found[claim.name] = node
        return found

    def _failed(self, pod: str) -> bool:
        reply = self.cluster.get(
            f"/api/v1/namespaces/{self.ns}/events?fieldSelector=involvedObject.name%3D{pod},reason%3DFailedScheduling"
        )
        return bool((reply or {}).get("items"))

    def _delete_pod(self, op: trace.DeletePod) -> None:
        claims = self.claims_of.get(op.name, [])
        volumes = [
            pvc["spec"].get("volumeName")
            for pvc in (self._get("persistentvolumeclaims", c) for c in claims)
            if pvc and pvc["spec"].get("volumeName")
        ]
        self._delete("pods", op.name)
        self.deleted.add(op.name)
        self.cluster.wait_for(lambda: self._get("pods", op.name) is None, f"pod {op.name} to go", self.timeout)
        if not op.delete_claims:
            return
        for claim in claims:
            self._delete("persistentvolumeclaims", claim)
        for pv in volumes:  # reclaimPolicy Delete: csi-provisioner deletes the volume, then the PV
            self.cluster.wait_for(
                functools.partial(self._gone, f"/api/v1/persistentvolumes/{pv}"), f"PV {pv} to go", self.timeout
            )

    def _expand(self, op: trace.ExpandClaim) -> None:
        size = trace.size_of(op.size)
        code, reply = self.cluster.request(
            "PATCH",
            f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{op.name}",
            {"spec": {"resources": {"requests": {"storage": str(size)}}}},
            content_type="application/merge-patch+json",
        )
        assert code == 200, reply
        pvc = self._get("persistentvolumeclaims", op.name)
        assert pvc is not None and pvc["spec"].get("volumeName"), f"claim {op.name} is not bound"
        pv = self.cluster.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
        assert pv is not None
        handle = pv["spec"]["csi"]["volumeHandle"]
        node = pvc["metadata"]["annotations"][SELECTED_NODE]
        self.cluster.wait_for(
            lambda: self.stack.lvs(node).get(handle, 0) >= size, f"{op.name}'s LV to grow to {size}", self.timeout
        )

    # --- API helpers

    def _capacity(self, node: str) -> int | None:
        """The capacity csi-provisioner published for ``node`` and the thick StorageClass, if it has."""
        reply = self.cluster.get(f"/apis/storage.k8s.io/v1/namespaces/{deployment.NAMESPACE}/csistoragecapacities")
        for item in (reply or {}).get("items", []):
            topology = item.get("nodeTopology", {}).get("matchLabels", {})
            if topology == {constants.TOPOLOGY_NODE_KEY: node} and item.get("storageClassName") == THICK_STORAGE_CLASS:
                return quantity_bytes(item.get("capacity", "0"))
        return None

    def _gone(self, path: str) -> bool:
        return self.cluster.get(path) is None

    def _exists(self, name: str) -> bool:
        return self.real(name) in self.stack.nodes

    def _get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")

    def _post(self, kind: str, body: dict[str, Any]) -> None:
        code, reply = self.cluster.request("POST", f"/api/v1/namespaces/{self.ns}/{kind}", body)
        assert code == 201, reply

    def _delete(self, kind: str, name: str) -> None:
        code, reply = self.cluster.request("DELETE", f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
        assert code in (200, 202, 404), reply
