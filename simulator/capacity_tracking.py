"""external-provisioner's ``--enable-capacity``: CSIStorageCapacity objects from TopoLVM's ``GetCapacity``."""

from __future__ import annotations

import simpy

from simulator import engine
from topolvm import constants
from topolvm.core import resources, workloads
from topolvm.kube import memory as kube_memory
from topolvm.services import controller


class CapacityPublisher:
    """external-provisioner's ``--enable-capacity``: one CSIStorageCapacity per (node, storage class), refreshed
    from ``GetCapacity`` every ``interval`` seconds (scheduler modes ``both`` and ``capacity-tracking``).

    The real sidecar asks again for every node at each poll; only nodes whose capacity annotations changed since
    the last poll can have a different answer, so only those are asked here — the objects come out the same.
    """

    def __init__(
        self,
        env: simpy.Environment,
        cluster: kube_memory.InMemoryCluster,
        service: controller.ControllerService,
        *,
        interval: float,
        namespace: str,
    ) -> None:
        self.env, self.cluster, self.service = env, cluster, service
        self.interval, self.namespace = interval, namespace
        self._dirty: dict[str, None] = {}
        self._gone: dict[str, None] = {}
        self._seen: dict[str, dict[str, str]] = {}
        cluster.watch(resources.NODE, self._on_node)
        env.process(self._run())

    def _on_node(self, event: resources.Event[resources.Node]) -> None:
        name = event.object.name
        if event.type is resources.EventType.DELETED:
            self._seen.pop(name, None)
            self._gone[name] = None
            return
        capacities = {
            k: v for k, v in event.object.meta.annotations.items() if k.startswith(constants.CAPACITY_KEY_PREFIX)
        }
        if self._seen.get(name) != capacities:
            self._seen[name] = capacities
            self._dirty[name] = None

    def _name(self, node: str, storage_class: str) -> str:
        return f"csisc-{node}-{storage_class}"

    def refresh(self) -> None:
        classes = [
            sc for sc in self.cluster.list_of(workloads.STORAGE_CLASS) if sc.provisioner == constants.PLUGIN_NAME
        ]
        for node in self._gone:
            for sc in classes:
                if self.cluster.get(
                    workloads.CSI_STORAGE_CAPACITY, self._name(node, sc.meta.name), namespace=self.namespace
                ):
                    self.cluster.delete(
                        workloads.CSI_STORAGE_CAPACITY, self._name(node, sc.meta.name), namespace=self.namespace
                    )
        self._gone.clear()
        dirty, self._dirty = self._dirty, {}
        for node in dirty:
            for sc in classes:
                capacity = self.service.get_capacity(sc.device_class, node)
                name = self._name(node, sc.meta.name)
                current = self.cluster.get(workloads.CSI_STORAGE_CAPACITY, name, namespace=self.namespace)
                if current is None:
                    meta = resources.Meta(name=name, namespace=self.namespace)
                    labels = {constants.TOPOLOGY_NODE_KEY: node}
                    self.cluster.create(
                        workloads.CSIStorageCapacity(meta, sc.meta.name, labels, capacity_bytes=capacity)
                    )
                elif current.capacity_bytes != capacity:
                    self.cluster.update(resources.evolve(current, capacity_bytes=capacity))

    def _run(self) -> engine.Process:
        while True:
            self.refresh()
            yield self.env.timeout(self.interval)
