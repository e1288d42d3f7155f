"""Replays a simulator trace (simulator/trace.py, docs/simulator.md "Trace format") on a started ``Stack``
(tests/support/stack.py): the real kube-scheduler with our extender, csi-provisioner, csi-resizer, our
controller and node agents on kwok Nodes. tests/e2e/test_fidelity*.py compare what it ends with to the
simulator's run of the same trace (simulator/fidelity.py, docs/fidelity.md).

One event at a time, each settled before the next, so nothing depends on how fast a component is: a pod is
Running with its claims Bound and their LVs in lvm (or has kube-scheduler's FailedScheduling event), a deleted
pod and its claims and volumes are gone, an expanded volume has its new size in lvm, a new Node has registered,
a cordoned Node is unschedulable, a deleted Node is gone (TopoLVM's node cleanup ran); and then, for every node
the event touched and each of its device classes, tests/support/replay_capacity.py's wait (published capacity,
the extender's cache, CSIStorageCapacity).

Names: trace namespaces all map to the test's namespace; a simulated node ``n`` is the kwok Node
``<prefix>n`` (the prefix keeps the nodes' name order, which the extender's tie-break uses), labelled
``e2e-tag=<tag>``, and every pod is pinned to that label as tests/e2e/scene.py does. Thin nodes (a thin pool in
their VG) run lvmd over in-memory LVM, as tests/support/stack_snapshots.py explains.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from simulator import fidelity, trace
from tests.support import stack_snapshots
from tests.support.replay_capacity import Capacity
from tests.support.stack import Stack

SELECTED_NODE = "volume.kubernetes.io/selected-node"
# lvm2 keeps the first MiB of a PV for its label and metadata (pe_start) and the VG gets whole 4 MiB extents of
# the rest; the simulator's in-memory LVM gives a disk's whole size to its VG. One extent more of loop device
# makes the real VG exactly the simulated disk's size (docs/fidelity.md: what the simulator does not model).
PV_METADATA_ALLOWANCE = 4 << 20
THICK_CLASS, THIN_CLASS = "ssd", stack_snapshots.THIN_CLASS
STORAGE_CLASSES = {THICK_CLASS: "topolvm-provisioner", THIN_CLASS: "topolvm-provisioner-thin"}  # deploy/'s
BATCHED = (trace.DeletePod, trace.ExpandClaim)
PROBE_VG, PROBE_POOL = 48 << 30, 16 << 30  # thick and thin room beyond any probe; the probe's lvmd is in memory


@dataclasses.dataclass(frozen=True)
class Disks:
    """A simulated node's disks: its VG's PV sizes, and the thin pool in it (0: none, a loop-device VG)."""

    sizes: tuple[int, ...]
    thin_pool: int = 0

    @property
    def classes(self) -> tuple[str, ...]:
        return (THICK_CLASS, THIN_CLASS) if self.thin_pool else (THICK_CLASS,)


class Replayer:
    """Applies trace operations to ``stack`` in ``namespace``; ``disks`` gives each simulated node's disks."""

    def __init__(
        self,
        stack: Stack,
        namespace: str,
        tag: str,
        disks: dict[str, Disks],
        *,
        timeout: float = 120.0,
        capacity_objects: bool = True,
    ) -> None:
        """``capacity_objects``: also wait until each touched node's CSIStorageCapacity objects are fresh."""
        self.stack, self.cluster = stack, stack.cluster
        self.ns, self.tag, self.disks, self.timeout = namespace, tag, disks, timeout
        self.capacity_objects = capacity_objects
        self.prefix = f"tlvm-{tag}-"
        self.probe_node = f"{self.prefix}probe"
        self.capacity = Capacity(stack, namespace, STORAGE_CLASSES, self.probe_node)
        self.claims_of: dict[str, list[str]] = {}  # pod -> its claims
        self.node_of: dict[str, str] = {}  # claim -> real node, once placed
        self.placed: dict[fidelity.ClaimKey, str | None] = {}  # (trace namespace, claim) -> simulated node
        self.gone: set[str] = set()  # simulated nodes deleted
        self.skipped: list[str] = []  # expansions of claims on deleted nodes (only once the worlds differ)

    def start(self) -> None:
        """The probe node: a Node with room for any probe in both classes, labelled so no pod of the trace can go
        there (replay_capacity.Capacity.extender_passes says why it is needed)."""
        self.stack.add_node(self.probe_node, (PROBE_VG,), labels={"fidelity-probe": self.tag}, thin_pool=PROBE_POOL)

    def real(self, node: str) -> str:
        return self.prefix + node

    def simulated(self, real: str) -> str:
        return real.removeprefix(self.prefix)

    def apply(self, op: trace.Op) -> None:
        handlers = {
            trace.AddNode: self._add_node,
            trace.CreatePod: self._create_pod,
            trace.DrainNode: self._drain,
            trace.FailNode: self._fail,
        }
        handler = handlers.get(type(op))
        if isinstance(op, BATCHED):
            self.apply_batch([op])
        elif handler is None:
            raise NotImplementedError(f"the real-plane replayer has no {type(op).__name__} yet")
        else:
            self._settle(handler(op))

    def apply_batch(self, ops: list[trace.DeletePod | trace.ExpandClaim]) -> None:
        """Deletions and expansions in a row decide nothing, and none of the trace's touches another's objects
        (it never expands a claim it deletes): all are sent at once, then all awaited, then the nodes settled."""
        started = [self._begin_delete(op) if isinstance(op, trace.DeletePod) else self._begin_expand(op) for op in ops]
        touched: set[str] = set()
        for nodes, wait in started:
            wait()
            touched |= nodes
        self._settle(touched)

    def replay(self, ops: list[trace.Op]) -> int:
        """Every operation in order, runs of deletions and expansions as one batch; returns the batches sent."""
        batches = 0
        run: list[trace.DeletePod | trace.ExpandClaim] = []
        for op in [*ops, None]:
            if isinstance(op, BATCHED):
                run.append(op)
                continue
            if run:
                self.apply_batch(run)
                batches, run = batches + 1, []
            if op is not None:
                self.apply(op)
        return batches

    def _settle(self, touched: set[str]) -> None:
        for real in sorted(touched):
            if self.simulated(real) not in self.gone:
                disks = self.disks[self.simulated(real)]
                self.capacity.settle(real, disks.classes, objects=self.capacity_objects)

    def outcome(self) -> fidelity.Outcome:
        free = {
            (name, cls): self.capacity.free(self.real(name), cls)
            for name, disks in self.disks.items()
            if self.real(name) in self.stack.nodes and name not in self.gone
            for cls in disks.classes
        }
        unplaced = sum(1 for claims in self.claims_of.values() if all(c not in self.node_of for c in claims))
        return fidelity.Outcome(dict(self.placed), {}, free, unplaced)

    # --- operations: each returns the real nodes it touched

    def add_node(self, name: str) -> None:
        self.apply(trace.AddNode(t=0.0, pool="", name=name))

    def _add_node(self, op: trace.AddNode) -> set[str]:
        disks = self.disks[op.name]
        # in-memory LVM (thin nodes): a VG of exactly the disks' size; lvm2: one extent more each
        sizes = disks.sizes if disks.thin_pool else tuple(size + PV_METADATA_ALLOWANCE for size in disks.sizes)
        self.stack.add_node(self.real(op.name), sizes, labels={"e2e-tag": self.tag}, thin_pool=disks.thin_pool)
        return {self.real(op.name)}

    def _drain(self, op: trace.DrainNode) -> set[str]:
        """Cordon, as ``kubectl cordon`` does."""
        path = f"/api/v1/nodes/{self.real(op.name)}"
        code, reply = self.cluster.request(
            "PATCH", path, {"spec": {"unschedulable": True}}, content_type="application/merge-patch+json"
        )
        assert code == 200, reply
        return set()

    def _fail(self, op: trace.FailNode) -> set[str]:
        """The node's machine is gone (its lvmd and node agent killed) and its Node deleted; topolvm-controller's
        node cleanup removes the Node's finalizer. The trace deletes a node only once its pods are gone."""
        real = self.real(op.name)
        self.stack.kill_node(real)
        code, reply = self.cluster.request("DELETE", f"/api/v1/nodes/{real}")
        assert code == 200, reply
        self.cluster.wait_for(functools.partial(self._gone, f"/api/v1/nodes/{real}"), f"Node {real} to go")
        self.gone.add(op.name)
        return set()

    def _create_pod(self, op: trace.CreatePod) -> set[str]:
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
            if node:
                self.node_of[claim.name] = node
        return set(settled.values()) if isinstance(settled, dict) else set()

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
        """kube-scheduler found no node for the pod ("0/N nodes are available: ..."). Not any FailedScheduling:
        one run of the 20-node trace saw a pod's first attempt fail later than that (a binding error, retried) and
        the pod then placed where the simulator put it."""
        reply = self.cluster.get(
            f"/api/v1/namespaces/{self.ns}/events?fieldSelector=involvedObject.name%3D{pod},reason%3DFailedScheduling"
        )
        return any(e.get("message", "").startswith("0/") for e in (reply or {}).get("items", []))

    def _begin_delete(self, op: trace.DeletePod) -> tuple[set[str], Callable[[], None]]:
        """Delete the pod and (``delete-claims``) its claims, as ``kubectl delete`` of both does; the wait: the
        pod is gone, and the claims' PVs (reclaimPolicy Delete: csi-provisioner deleted their volumes)."""
        claims = self.claims_of.get(op.name, []) if op.delete_claims else []
        volumes = [
            pvc["spec"].get("volumeName")
            for pvc in (self._get("persistentvolumeclaims", c) for c in claims)
            if pvc and pvc["spec"].get("volumeName")
        ]
        self._delete("pods", op.name)
        for claim in claims:
            self._delete("persistentvolumeclaims", claim)

        def wait() -> None:
            self.cluster.wait_for(lambda: self._get("pods", op.name) is None, f"pod {op.name} to go", self.timeout)
            for pv in volumes:
                self.cluster.wait_for(
                    functools.partial(self._gone, f"/api/v1/persistentvolumes/{pv}"), f"PV {pv} to go", self.timeout
                )

        return {self.node_of[c] for c in claims if c in self.node_of}, wait

    def _begin_expand(self, op: trace.ExpandClaim) -> tuple[set[str], Callable[[], None]]:
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
        if self.simulated(node) in self.gone:
            # Only after the worlds diverged (a tied pick went elsewhere): the trace deletes a node once the
            # simulator's pods on it are gone, and the real plane had put this claim there. No LV can grow.
            self.skipped.append(op.name)
            return set(), lambda: None

        def wait() -> None:
            self.cluster.wait_for(
                lambda: self.stack.lvs(node).get(handle, 0) >= size, f"{op.name}'s LV to grow to {size}", self.timeout
            )

        return {node}, wait

    # --- API helpers

    def _gone(self, path: str) -> bool:
        return self.cluster.get(path) is None

    def _get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")

    def _post(self, kind: str, body: dict[str, Any]) -> None:
        code, reply = self.cluster.request("POST", f"/api/v1/namespaces/{self.ns}/{kind}", body)
        assert code == 201, reply

    def _delete(self, kind: str, name: str) -> None:
        code, reply = self.cluster.request("DELETE", f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
        assert code in (200, 202, 404), reply
