"""The simulated cluster: one ``InMemoryCluster``, and per node the real node-side services of TopoLVM.

Each ``SimNode`` runs ``LvmdService`` over its own ``InMemoryLvm`` (VGs from the pool's disks, thin pools, the
pool's lvmd.yaml), a ``LogicalVolumeReconciler`` fed by a watch of its own node's LogicalVolumes through a
``WorkQueue``, and a ``CapacityPublisher`` that writes the node's capacity annotations — as topolvm-node does,
after the lvm commands have taken their modelled time. The controller side is the real ``ControllerService`` and
``NodeCleanup``. Node events (add, fail, drain) and disk growth happen here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import simpy

from simulator import engine, scenario, units
from topolvm import constants, ports
from topolvm.core import model, quantity, resources, workloads
from topolvm.kube import memory as kube_memory
from topolvm.lvm import memory as lvm_memory
from topolvm.services import cleanup, controller, lvmd, node

log = logging.getLogger(__name__)
NAMESPACE = "default"


@dataclasses.dataclass
class Latencies:
    watch: float
    reconcile: float
    lvm_command: float
    scheduling_cycle: float
    provisioner: float

    @classmethod
    def of(cls, spec: scenario.LatencySpec) -> Latencies:
        return cls(*(units.duration(getattr(spec, f.name)) for f in dataclasses.fields(cls)))


class SimNode:
    def __init__(self, world: World, name: str, pool: scenario.NodePool, config: model.LvmdConfig) -> None:
        self.world = world
        self.name = name
        self.pool = pool
        self.lvm = lvm_memory.InMemoryLvm()
        for vg in pool.volume_groups:
            self.lvm.add_vg(vg.name, [units.size(d) for d in vg.disks], extent_size=units.size(vg.extent_size))
        for thin in pool.thin_pools:
            self.lvm.create_thin_pool(vg=thin.volume_group, name=thin.name, size=units.size(thin.size))
        self.lvmd = lvmd.LvmdService(lvm=self.lvm, config=config)
        self.lvmd.start()
        self.capacity: model.NodeCapacity = self.lvmd.capacity()
        self.alive = True
        cluster = world.cluster
        self.reconciler = node.LogicalVolumeReconciler(node_name=name, cluster=cluster, lvmd=self.lvmd)
        self.queue = engine.WorkQueue(world.env, self._reconcile)
        self._publisher = node.CapacityPublisher(node_name=name, cluster=cluster)
        self._started = False
        self._subscriptions: list[ports.Subscription] = [
            self.lvmd.watch(self._on_capacity),
            cluster.watch(resources.LOGICAL_VOLUME, self._on_lv, match={resources.BY_NODE: name}),
        ]
        # The agent's first report takes an lvm command; after that a change is published as it happens, at the
        # instant its LogicalVolume's status is written (the reconciler's work happens at once, see
        # ``engine.WorkQueue``), as a real agent does by construction: its reconciler writes the annotation before
        # the status (``LogicalVolumeReconciler(publisher=...)``). Publishing later than the status would let the
        # extender end a pod's reservation on its binding while the annotation still lacks the volume.
        engine.later(world.env, world.latencies.lvm_command, self._start_publishing)

    def _on_capacity(self, capacity: model.NodeCapacity) -> None:
        self.capacity = capacity
        if self._started:
            self._publish()

    def _start_publishing(self) -> None:
        self._started = True
        self._publish()

    def _publish(self) -> None:
        if not self.alive:
            return
        capacity = self.capacity
        self._publisher(capacity)
        for listener in self.world.capacity_listeners:
            listener(self, capacity)

    def _on_lv(self, event: resources.Event[resources.LogicalVolume]) -> None:
        self.queue.add(event.object.name)

    def _reconcile(self, name: str) -> tuple[node.Outcome, float]:
        before = self.lvm.calls
        outcome = self.reconciler.reconcile(name)
        lat = self.world.latencies
        return outcome, lat.reconcile + (self.lvm.calls - before) * lat.lvm_command

    def stop(self) -> None:
        self.alive = False
        self.queue.stop()
        for sub in self._subscriptions:
            sub.close()


class World:
    def __init__(self, loaded: scenario.Loaded, env: simpy.Environment) -> None:
        spec = loaded.spec
        self.loaded = loaded
        self.env = env
        self.latencies = Latencies.of(spec.latencies)
        self.clock = engine.SimClock(env)
        self.dispatcher = engine.WatchDispatcher(env, self.latencies.watch)
        self.cluster = kube_memory.InMemoryCluster(self.clock, uid_seed=spec.seed, dispatcher=self.dispatcher)
        self.controller = controller.ControllerService(cluster=self.cluster, clock=self.clock)
        self.nodes: dict[str, SimNode] = {}
        self.pools = {p.name: p for p in spec.cluster.node_pools}
        self._serial = dict.fromkeys(self.pools, 0)
        self.capacity_listeners: list[Callable[[SimNode, model.NodeCapacity], None]] = []
        self.node_listeners: list[Callable[[str, bool], None]] = []  # (node, added)
        self.lost_volumes = 0
        cleanup_service = cleanup.NodeCleanup(cluster=self.cluster)
        self._janitor = engine.WorkQueue(env, lambda name: (cleanup_service.reconcile(name), self.latencies.reconcile))
        self.cluster.watch(resources.NODE, lambda e: self._janitor.add(e.object.name))
        self.cluster.create(resources.Namespace(resources.Meta(name=NAMESPACE)))
        for sc in spec.cluster.storage_classes:
            params: dict[str, str] = {constants.FSTYPE_PARAMETER: sc.fstype}
            if sc.device_class:
                params[constants.DEVICE_CLASS_PARAMETER] = sc.device_class
            self.cluster.create(
                workloads.StorageClass(
                    resources.Meta(name=sc.name),
                    provisioner=constants.PLUGIN_NAME,
                    parameters=params,
                    volume_binding_mode=sc.binding_mode,
                    allow_volume_expansion=sc.allow_expansion,
                )
            )

    # --- nodes ---
    def add_nodes(self, pool_name: str, count: int) -> list[SimNode]:
        # Names first, side by side in memory: every scheduling cycle reads hundreds of them (hashing each), and
        # made one per node between its other objects they would be scattered over the whole heap.
        names = [self._next_name(pool_name) for _ in range(count)]
        return [self.add_node(pool_name, name) for name in names]

    def _next_name(self, pool_name: str) -> str:
        pool = self.pools[pool_name]
        serial = self._serial[pool_name]
        self._serial[pool_name] += 1
        named = len(pool.node_names)
        return pool.node_names[serial] if serial < named else f"{pool.name}-{serial - named:05d}"

    def add_node(self, pool_name: str, name: str | None = None) -> SimNode:
        pool = self.pools[pool_name]
        if name is None:
            name = self._next_name(pool_name)
        labels = {
            **pool.labels,
            "kubernetes.io/hostname": name,
            "node.kubernetes.io/pool": pool.name,
            constants.TOPOLOGY_NODE_KEY: name,  # topolvm-node's CSI registration (NodeGetInfo's topology)
        }
        allocatable = {
            workloads.CPU: quantity.to_milli(pool.cpu),
            workloads.MEMORY: units.size(pool.memory),
            workloads.PODS: pool.max_pods,
        }
        self.cluster.add_node(name, labels=labels, allocatable=allocatable, taints=scenario.taints(pool))
        sim_node = SimNode(self, name, pool, self.loaded.lvmd[pool.name])
        cleanup.register_node(self.cluster, name)  # the node agent's start-up
        self.nodes[name] = sim_node
        for listener in self.node_listeners:
            listener(name, True)
        return sim_node

    def fail_node(self, name: str) -> None:
        """The node and its disks are gone: its agent stops and the Node object is deleted (an operator or the
        cloud provider does that). TopoLVM's node cleanup (topolvm-controller's ``NodeCleanup``, run on the Node's
        deletion as the controller runs it) then deletes the node's claims of TopoLVM's StorageClasses and releases
        its LogicalVolumes — their data is lost — and the pod garbage collector deletes the pods that were bound to
        it (a StatefulSet's come back, with new claims)."""
        sim_node = self.nodes.pop(name)
        sim_node.stop()
        self.lost_volumes += len(self.cluster.list_of(resources.LOGICAL_VOLUME, match={resources.BY_NODE: name}))
        for listener in self.node_listeners:
            listener(name, False)
        self.cluster.remove_node(name)
        for pod in self.cluster.list_of(workloads.POD, match={resources.BY_NODE: name}):
            self.cluster.delete(workloads.POD, pod.meta.name, namespace=pod.meta.namespace)

    def drain_node(self, name: str) -> None:
        """Cordon: no new pods. (Evicting its pods does not move their node-local volumes.)"""
        current = self.cluster.get(resources.NODE, name)
        if current is None:
            return
        self.cluster.update(dataclasses.replace(current, spec=dataclasses.replace(current.spec, unschedulable=True)))

    def add_disk(self, name: str, volume_group: str, size: int) -> None:
        sim_node = self.nodes[name]
        sim_node.lvm.add_pv(volume_group, size)
        sim_node.lvmd.refresh()

    def pool_nodes(self, pool_name: str) -> list[str]:
        return [n for n, sim_node in self.nodes.items() if sim_node.pool.name == pool_name]

    def device_classes(self) -> list[str]:
        seen: dict[str, None] = {}
        for config in self.loaded.lvmd.values():
            for dc in config.device_classes:
                seen[dc.name] = None
        return list(seen)
