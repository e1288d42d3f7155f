"""The ``Cluster`` port's contract: InMemoryCluster and KubeCluster on a real kube-apiserver agree on versions,
conflicts, finalizers, the status subresource and watches."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import kubernetes
import pytest

from topolvm import errors, ports
from topolvm.core import resources
from topolvm.kube import client as kube_client
from topolvm.kube import memory


@dataclass
class ClusterWorld:
    cluster: ports.Cluster
    add_node: Callable[..., resources.Node]
    remove_node: Callable[[str], None]
    prefix: str  # names are unique per test, so worlds may share an API server


@pytest.fixture(params=["memory", "kube"])
def world(request: pytest.FixtureRequest) -> Iterator[ClusterWorld]:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    if request.param == "memory":
        mem = memory.InMemoryCluster()
        yield ClusterWorld(mem, mem.add_node, mem.remove_node, prefix)
        return
    plane = request.getfixturevalue("kube_api")
    plane.install_crds()
    api = kubernetes.config.new_client_from_config(config_file=plane.kubeconfig)
    core = kubernetes.client.CoreV1Api(api)
    kube = kube_client.KubeCluster(api)

    def add_node(name: str, annotations: dict[str, str] | None = None) -> resources.Node:
        core.create_node({"metadata": {"name": name, "annotations": annotations or {}}})
        node = kube.get_node(name=name)
        assert node is not None
        return node

    def remove_node(name: str) -> None:
        core.delete_node(name)

    try:
        yield ClusterWorld(kube, add_node, remove_node, prefix)
    finally:
        api.close()


def events_of(
    world: ClusterWorld, watch: Callable[[ports.EventListener], ports.Subscription]
) -> tuple[queue.Queue[resources.Event], ports.Subscription]:
    q: queue.Queue[resources.Event] = queue.Queue()
    return q, watch(q.put)


def next_event(q: queue.Queue[resources.Event], name: str) -> resources.Event:
    """The next event about ``name`` (others, e.g. from other tests on a shared server, are skipped)."""
    while True:
        event = q.get(timeout=10)
        if event.object.name == name:
            return event


def new_lv(name: str, finalizers: tuple[str, ...] = ()) -> resources.LogicalVolume:
    return resources.LogicalVolume(
        resources.Meta(name=name, finalizers=finalizers),
        resources.LogicalVolumeSpec(name=name, node_name="n1", size=1 << 30, device_class="ssd"),
    )


def test_create_assigns_uid_and_version_and_refuses_duplicates(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-a"
    lv = c.create_logical_volume(lv=new_lv(name))
    assert lv.meta.uid and lv.meta.resource_version and lv.spec.size == 1 << 30
    assert c.get_logical_volume(name=name) == lv
    assert name in [x.name for x in c.list_logical_volumes()]
    with pytest.raises(errors.AlreadyExists):
        c.create_logical_volume(lv=new_lv(name))
    assert c.get_logical_volume(name=f"{world.prefix}-none") is None


def test_stale_writes_conflict(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-b"
    lv = c.create_logical_volume(lv=new_lv(name))
    fresh = c.update_logical_volume(lv=replace(lv, meta=lv.meta.with_finalizer("x")))
    with pytest.raises(errors.Conflict):
        c.update_logical_volume(lv=replace(lv, spec=replace(lv.spec, size=2 << 30)))
    with pytest.raises(errors.Conflict):
        c.update_logical_volume_status(lv=replace(lv, status=resources.LogicalVolumeStatus(volume_id="v")))
    assert c.get_logical_volume(name=name) == fresh


def test_status_and_spec_are_written_separately(world: ClusterWorld) -> None:
    c = world.cluster
    lv = c.create_logical_volume(lv=new_lv(f"{world.prefix}-c"))
    with_status = c.update_logical_volume_status(
        lv=replace(lv, status=resources.LogicalVolumeStatus(volume_id="v1"), spec=replace(lv.spec, size=1))
    )
    assert with_status.status.volume_id == "v1" and with_status.spec.size == 1 << 30  # spec ignored
    grown = c.update_logical_volume(
        lv=replace(with_status, spec=replace(lv.spec, size=2 << 30), status=resources.LogicalVolumeStatus())
    )
    assert grown.spec.size == 2 << 30 and grown.status.volume_id == "v1"  # status kept


def test_finalizers_hold_deletion(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-d"
    c.create_logical_volume(lv=new_lv(name, finalizers=("topolvm.io/logicalvolume",)))
    q, sub = events_of(world, c.watch_logical_volumes)
    try:
        assert next_event(q, name).type == "ADDED"
        c.delete_logical_volume(name=name)
        held = c.get_logical_volume(name=name)
        assert held is not None and held.meta.deleting
        assert next_event(q, name).type == "MODIFIED"
        c.update_logical_volume(lv=replace(held, meta=held.meta.without_finalizer("topolvm.io/logicalvolume")))
        assert c.get_logical_volume(name=name) is None
        assert next_event(q, name).type in ("MODIFIED", "DELETED")  # the API server may send both
        with pytest.raises(errors.NotFound):
            c.delete_logical_volume(name=name)
    finally:
        sub.close()


def test_watch_replays_then_follows(world: ClusterWorld) -> None:
    c, a, b = world.cluster, f"{world.prefix}-e1", f"{world.prefix}-e2"
    c.create_logical_volume(lv=new_lv(a))
    q, sub = events_of(world, c.watch_logical_volumes)
    try:
        assert next_event(q, a).type == "ADDED"
        c.create_logical_volume(lv=new_lv(b))
        assert next_event(q, b).type == "ADDED"
        c.delete_logical_volume(name=b)  # no finalizers: gone at once
        assert next_event(q, b).type == "DELETED"
    finally:
        sub.close()


def test_nodes_annotations_and_finalizers(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-n1"
    node = world.add_node(name, annotations={"capacity.topolvm.io/ssd": "100", "keep": "x"})
    annotations = {"capacity.topolvm.io/ssd": "90", "capacity.topolvm.io/hdd": "7"}  # "keep" is dropped
    meta = replace(node.meta.with_finalizer("topolvm.io/node"), annotations=annotations)
    updated = c.update_node(node=replace(node, meta=meta))
    assert updated.meta.annotations == annotations and "topolvm.io/node" in updated.meta.finalizers
    with pytest.raises(errors.Conflict):
        c.update_node(node=node)
    world.remove_node(name)
    held = c.get_node(name=name)
    assert held is not None and held.meta.deleting and held.meta.resource_version != updated.meta.resource_version
    c.update_node(node=replace(held, meta=held.meta.without_finalizer("topolvm.io/node")))
    assert c.get_node(name=name) is None and name not in [n.name for n in c.list_nodes()]
