"""The controller and N node agents against a real kube-apiserver, and the API requests they make per volume.

Used by bench/api_load_bench.py (20 and 200 nodes) and tests/integration/test_api_load.py (a few nodes). Wiring
follows the commands: the controller service, its Waiter and node cleanup (topolvm/cmd/controller.py), and per
node a LogicalVolume reconciler on a work queue plus a capacity publisher over an in-memory lvmd
(topolvm/cmd/node.py). Every component has its own API client and connection pool, as separate processes would.

Two modes:
- ``direct``: every component on a bare ``KubeCluster``, wired as before the informer caches — node agents watch
  every LogicalVolume of the cluster and GET it on each event; waits re-read (GET, or LIST for a volume ID) on
  every event;
- ``cached``: as the commands run now — the controller informs LogicalVolumes and Nodes, each node agent only its
  node's LogicalVolumes (``match={BY_NODE: node}``, a field selector).

Requests are counted twice: by the API server (``apiserver_request_total`` from /metrics, by verb and resource)
and by each client (``KubeCluster.requests``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tests.support import controlplane
from topolvm import clock, constants, errors, ports, runtime
from topolvm.core import model, resources, workloads
from topolvm.kube import cache
from topolvm.kube import client as kube_client
from topolvm.lvm import memory as lvm_memory
from topolvm.services import cleanup, controller, lvmd, node
from topolvm.webhook import kube as webhook_kube
from topolvm.webhook import mutate, wire

GiB = 1 << 30
DEVICE_CLASS = "ssd"
MODES = ("direct", "cached")
# What TopoLVM's components and the webhook read and write; the API server's own background traffic (leases,
# flow control, CRD discovery) touches none of these.
RESOURCES = frozenset({"logicalvolumes", "nodes", "persistentvolumeclaims", "storageclasses", "namespaces"})
_SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')

Counts = collections.Counter[str]


def apiserver_counts(plane: controlplane.ControlPlane) -> Counts:
    """``apiserver_request_total`` summed by "VERB resource[/subresource]" over ``RESOURCES``."""
    status, reply = plane.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics: HTTP {status}")
    counts: Counts = collections.Counter()
    for line in reply["text"].splitlines():
        sample = _SAMPLE.match(line)
        if sample is None:
            continue
        labels = dict(_LABEL.findall(sample.group(1)))
        if labels.get("resource") not in RESOURCES:
            continue
        resource = labels["resource"] + ("/" + labels["subresource"] if labels.get("subresource") else "")
        counts[f"{labels['verb']} {resource}"] += int(float(sample.group(2)))
    return counts


def settle(plane: controlplane.ControlPlane, quiet: float = 1.5, timeout: float = 120.0) -> Counts:
    """The API server's counts once they stopped moving for ``quiet`` seconds (queued reconciles, watch events and
    their follow-up reads have run their course)."""
    deadline = time.monotonic() + timeout
    last, since = apiserver_counts(plane), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = apiserver_counts(plane)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise RuntimeError(f"API traffic did not settle within {timeout:.0f}s")


def delta(after: Counts, before: Counts) -> Counts:
    return collections.Counter({k: after[k] - before[k] for k in after if after[k] != before[k]})


@dataclass
class Client:
    """One component's connection: its API client and the ``Cluster`` it uses (cached or not)."""

    role: str  # "controller" | "node"
    api: Any
    kube: kube_client.KubeCluster
    cluster: ports.Cluster

    def close(self) -> None:
        if isinstance(self.cluster, cache.CachedCluster):
            self.cluster.close()
        self.api.close()


def connect(kubeconfig: str, role: str, mode: str, informers: dict[resources.Kind[Any], Any]) -> Client:
    api = kube_client.api_client(kubeconfig)
    kube = kube_client.KubeCluster(api)
    cluster: ports.Cluster = kube if mode == "direct" else cache.CachedCluster(kube, informers).start()
    return Client(role, api, kube, cluster)


@dataclass
class Fleet:
    """The running components; ``close`` stops them all."""

    mode: str
    nodes: list[str]
    service: controller.ControllerService
    waiter: runtime.Waiter
    clients: list[Client] = field(default_factory=list)
    stoppers: list[Any] = field(default_factory=list)  # closables, stopped in reverse order

    def client_counts(self, role: str | None = None) -> Counts:
        total: Counts = collections.Counter()
        for c in self.clients:
            if role is None or c.role == role:
                total.update(c.kube.requests)
        return total

    def close(self) -> None:
        for stop in reversed(self.stoppers):
            with contextlib.suppress(Exception):
                stop()
        for c in self.clients:
            with contextlib.suppress(Exception):
                c.close()


def add_nodes(kubeconfig: str, names: list[str]) -> None:
    """Register Nodes, as kubelets would (an admin client, closed before anything is measured)."""
    api = kube_client.api_client(kubeconfig)
    try:
        admin = kube_client.KubeCluster(api)
        for name in names:
            admin.create(resources.Node(resources.Meta(name=name)))
    finally:
        api.close()


def _start_agent(fleet: Fleet, kubeconfig: str, name: str, vg_bytes: int) -> None:
    informers = {resources.LOGICAL_VOLUME: {resources.BY_NODE: name}}
    client = connect(kubeconfig, "node", fleet.mode, informers)
    fleet.clients.append(client)
    cleanup.register_node(client.cluster, name)
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [vg_bytes])
    config = model.LvmdConfig((model.DeviceClass(DEVICE_CLASS, "vg", default=True, spare_bytes=0),))
    lvmd_service = lvmd.LvmdService(lvm=lvm, config=config)
    lvmd_service.start()
    fleet.stoppers.append(lvmd_service.watch(node.CapacityPublisher(node_name=name, cluster=client.cluster)).close)
    reconciler = node.LogicalVolumeReconciler(node_name=name, cluster=client.cluster, lvmd=lvmd_service)
    # Before the caches, the node agent watched every LogicalVolume of the cluster.
    match = {resources.BY_NODE: name} if fleet.mode == "cached" else None
    agent = runtime.Reconciler(client.cluster, reconciler.reconcile, match=match)
    agent.start()
    fleet.stoppers.append(agent.stop)


def start_fleet(kubeconfig: str, nodes: list[str], mode: str, *, vg_bytes: int = 1 << 40) -> Fleet:
    """The controller and one agent per node, started; every Node carries its capacity when this returns."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    ctl = connect(kubeconfig, "controller", mode, {resources.LOGICAL_VOLUME: None, resources.NODE: None})
    waiter = runtime.Waiter(ctl.cluster)
    fleet = Fleet(mode, nodes, controller.ControllerService(cluster=ctl.cluster, clock=clock.SystemClock()), waiter)
    fleet.clients.append(ctl)
    fleet.stoppers.append(waiter.close)
    try:
        janitor = runtime.Reconciler(
            ctl.cluster, cleanup.NodeCleanup(cluster=ctl.cluster).reconcile, kind=resources.NODE
        )
        janitor.start()
        fleet.stoppers.append(janitor.stop)
        for name in nodes:
            _start_agent(fleet, kubeconfig, name, vg_bytes)
    except BaseException:
        fleet.close()
        raise
    return fleet


def _create(fleet: Fleet, name: str, node_name: str, timeout: float) -> str:
    """CreateVolume as the CSI controller runs it: record the LogicalVolume, wait on the watch until it is ready,
    mark it answered."""
    request = controller.VolumeRequest(
        name=name,
        required_bytes=GiB,
        device_class=DEVICE_CLASS,
        preferred_nodes=(node_name,),
        requisite_nodes=(node_name,),
    )
    first = fleet.service.create_volume(request)

    def ready() -> controller.Ready | None:
        state = fleet.service.creation_state(name)
        return state if isinstance(state, controller.Ready) else None

    done = first if isinstance(first, controller.Ready) else fleet.waiter.wait(ready, timeout, time.monotonic)
    fleet.service.answered(name)  # before the answer: the volume is no longer the stranded sweep's
    return done.volume_id


def _delete(fleet: Fleet, volume_id: str, timeout: float) -> None:
    """DeleteVolume as the CSI controller runs it: delete, then wait until the node agent removed the LV."""
    fleet.service.delete_volume(volume_id)
    fleet.waiter.wait(
        lambda: True if fleet.service.find_by_volume_id(volume_id) is None else None, timeout, time.monotonic
    )


def provision(fleet: Fleet, count: int, *, parallel: int = 4, prefix: str = "pvc", timeout: float = 300.0) -> None:
    """Create ``count`` volumes spread over the nodes until each is ready, then delete them until each is gone;
    ``parallel`` calls at a time, as external-provisioner's workers make them."""
    names = [(f"{prefix}-{i:05d}", fleet.nodes[i % len(fleet.nodes)]) for i in range(count)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="provisioner") as pool:
        volume_ids = list(pool.map(lambda item: _create(fleet, item[0], item[1], timeout), names))
        list(pool.map(lambda volume_id: _delete(fleet, volume_id, timeout), volume_ids))


@contextlib.contextmanager
def fleet_running(kubeconfig: str, nodes: list[str], mode: str) -> Iterator[Fleet]:
    fleet = start_fleet(kubeconfig, nodes, mode)
    try:
        yield fleet
    finally:
        fleet.close()


def check_no_failures(fleet: Fleet) -> None:
    """Every LogicalVolume of the fleet's nodes is gone (the run cleaned up after itself; the API server may be
    shared with other tests, whose objects are not this run's business)."""
    nodes = set(fleet.nodes)
    left = [lv for lv in fleet.service.cluster.list_of(resources.LOGICAL_VOLUME) if lv.spec.node_name in nodes]
    if left:
        raise errors.FailedPrecondition(f"{len(left)} LogicalVolumes left after the run: {[lv.name for lv in left]}")


# --- the webhook ----------------------------------------------------------------------------------------------


def add_claims(kubeconfig: str, namespace: str, names: list[str], *, storage_class: str = "topolvm-ssd") -> None:
    """As an admin: the namespace and TopoLVM StorageClass if missing, and one pending PVC per name."""
    api = kube_client.api_client(kubeconfig)
    try:
        admin = kube_client.KubeCluster(api)
        with contextlib.suppress(errors.AlreadyExists):
            admin.create(resources.Namespace(resources.Meta(namespace)))
        with contextlib.suppress(errors.AlreadyExists):
            parameters = {constants.DEVICE_CLASS_PARAMETER: DEVICE_CLASS}
            admin.create(workloads.StorageClass(resources.Meta(storage_class), constants.PLUGIN_NAME, parameters))
        for name in names:
            spec = workloads.ClaimSpec(storage_class_name=storage_class, request_bytes=GiB)
            admin.create(workloads.PersistentVolumeClaim(resources.Meta(name, namespace), spec))
    finally:
        api.close()


def pod_request(namespace: str, name: str, claims: list[str]) -> wire.Request:
    """The AdmissionRequest the API server sends when a pod using ``claims`` is created."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [{"name": "c", "image": "x"}],
            "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims],
        },
    }
    return wire.Request(
        uid=name,
        kind=wire.GroupVersionKind("", "v1", "Pod"),
        namespace=namespace,
        operation="CREATE",
        object=msgspec.Raw(json.dumps(pod).encode()),
    )


def webhook_client(kubeconfig: str, mode: str) -> Client:
    """The webhook's reads: a bare client (``direct``, as before: a GET per lookup), or its informer caches with
    the read-through on a miss (``cached``, as ``topolvm-webhook`` runs now)."""
    if mode == "cached":
        connection = webhook_kube.Connection(kubeconfig)  # what topolvm-webhook's command opens
        return Client("webhook", connection.api, connection.kube, connection.cluster)
    api = kube_client.api_client(kubeconfig)
    kube = kube_client.KubeCluster(api)
    return Client("webhook", api, kube, kube)


def admit(client: Client, request: wire.Request) -> mutate.Answer:
    answer = mutate.answer(request, client.cluster)
    if not answer.patch:
        raise errors.FailedPrecondition(f"pod {request.uid} was not mutated: {answer.reason}")
    return answer
