"""A live cluster's TopoLVM objects for the ``topolvm-sim snapshot`` tests, made through the Cluster port on the
local kube-apiserver (shared by every test: names are prefixed, nodes labelled ``snapshot-test=<prefix>``)."""

from __future__ import annotations

import dataclasses
import uuid

from topolvm import constants
from topolvm.core import resources, workloads
from topolvm.kube import client

GiB = 1 << 30


class Live:
    """Builds a live cluster's objects through the Cluster port, every name prefixed for this test."""

    def __init__(self, kube: client.KubeCluster) -> None:
        self.kube = kube
        self.p = f"s{uuid.uuid4().hex[:6]}"
        kube.create(resources.Namespace(resources.Meta(name=self.p)))

    def node(
        self,
        name: str,
        annotations: dict[str, int],
        *,
        pool: str = "",
        cpu: int = 8000,
        memory: int = 32 * GiB,
        taints: tuple[resources.Taint, ...] = (),
        default: str = "ssd",
        cordoned: bool = False,
    ) -> str:
        labels = {"snapshot-test": self.p, "kubernetes.io/hostname": f"{self.p}-{name}"}
        if pool:
            labels["example.com/pool"] = pool
        notes = {constants.capacity_annotation(k): str(v) for k, v in annotations.items()}
        if default in annotations:
            notes[constants.capacity_annotation("")] = str(annotations[default])
        meta = resources.Meta(name=f"{self.p}-{name}", labels=labels, annotations=notes)
        created = self.kube.create(resources.Node(meta, resources.NodeSpec(taints=taints, unschedulable=cordoned)))
        status = resources.NodeStatus({"cpu": cpu, "memory": memory, "pods": 110})
        self.kube.update_status(resources.evolve(created, status=status))
        return str(meta.name)

    def storage_class(self, device_class: str, *, expandable: bool = False) -> str:
        name = f"{self.p}-{device_class}"
        params = {constants.DEVICE_CLASS_PARAMETER: device_class}
        sc = workloads.StorageClass(resources.Meta(name=name), constants.PLUGIN_NAME, params)
        self.kube.create(dataclasses.replace(sc, allow_volume_expansion=expandable))
        return name

    def volume(self, node: str, size: int, device_class: str, name: str) -> resources.LogicalVolume:
        name = f"{self.p}-{name}"
        spec = resources.LogicalVolumeSpec(name=name, node_name=node, size=size, device_class=device_class)
        lv = self.kube.create(resources.LogicalVolume(resources.Meta(name=name), spec))
        status = resources.LogicalVolumeStatus(volume_id=lv.meta.uid, current_size=size)
        updated: resources.LogicalVolume = self.kube.update_status(resources.evolve(lv, status=status))
        return updated

    def claim(
        self,
        name: str,
        storage_class: str,
        size: int,
        volume: resources.LogicalVolume | None = None,
        *,
        capacity: int | None = None,  # the bound volume's, when smaller than the request (an expansion in flight)
    ) -> None:
        pv_name = f"{self.p}-pv-{name}" if volume is not None else ""
        spec = workloads.ClaimSpec(storage_class_name=storage_class, request_bytes=size, volume_name=pv_name)
        pvc = self.kube.create(workloads.PersistentVolumeClaim(resources.Meta(name=name, namespace=self.p), spec))
        if volume is None:
            return
        ref = workloads.ClaimRef(self.p, name, pvc.meta.uid)
        capacity = size if capacity is None else capacity
        pv_spec = workloads.VolumeSpec(
            capacity_bytes=capacity, volume_handle=volume.meta.uid, claim_ref=ref, node_name=volume.spec.node_name,
            storage_class_name=storage_class,
        )  # fmt: skip
        self.kube.create(workloads.PersistentVolume(resources.Meta(name=pv_name), pv_spec))
        status = workloads.ClaimStatus(phase="Bound", capacity_bytes=capacity)
        self.kube.update_status(resources.evolve(pvc, status=status))

    def pod(self, name: str, claim: str, *, node: str = "", marked: bool = False) -> None:
        """A pod using ``claim``: pending, or running on ``node``; ``marked``: as topolvm-webhook mutates it."""
        requests = {"cpu": 1000, "memory": GiB, **({constants.CAPACITY_RESOURCE: 1} if marked else {})}
        container = workloads.Container("app", requests, {constants.CAPACITY_RESOURCE: 1} if marked else {})
        volumes = (workloads.PodVolume("data", claim_name=claim),)
        spec = workloads.PodSpec(containers=(container,), volumes=volumes, node_name=node)
        self.kube.create(workloads.Pod(resources.Meta(name=name, namespace=self.p), spec))

    def capacity(self, node: str, storage_class: str, size: int) -> None:
        """A CSIStorageCapacity, as external-provisioner's --enable-capacity publishes one."""
        meta = resources.Meta(name=f"csisc-{node}-{storage_class}", namespace=self.p)
        labels = {constants.TOPOLOGY_NODE_KEY: node}
        self.kube.create(workloads.CSIStorageCapacity(meta, storage_class, labels, capacity_bytes=size))
