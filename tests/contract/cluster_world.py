"""The worlds the ``Cluster`` contract runs in: the in-memory cluster (also as the simulator runs it), KubeCluster
on a real kube-apiserver, and the informer cache (``CachedCluster``) in front of each — one set of assertions.

Names are unique per test (``prefix``), so the worlds may share one API server; namespaced kinds use a namespace
named after the prefix, created here.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import simpy

from simulator import engine
from topolvm import ports
from topolvm.core import resources, workloads
from topolvm.kube import cache, client, memory

ALL_KINDS: dict[resources.Kind[Any], None] = {
    resources.LOGICAL_VOLUME: None,
    resources.NODE: None,
    resources.NAMESPACE: None,
    workloads.POD: None,
    workloads.PVC: None,
    workloads.PV: None,
    workloads.STORAGE_CLASS: None,
    workloads.CSI_STORAGE_CAPACITY: None,
}


@dataclass
class ClusterWorld:
    kind: str
    cluster: ports.Cluster
    prefix: str  # unique per test
    namespace: str  # exists; named after the prefix

    def add_node(self, name: str, annotations: dict[str, str] | None = None) -> resources.Node:
        return self.cluster.create(resources.Node(resources.Meta(name=name, annotations=annotations or {})))


# "simulated": the in-memory cluster as the simulator runs it (simulated clock, its watch dispatcher)
WORLDS = ["memory", "simulated", "kube", "cached-memory", "cached-kube"]


@pytest.fixture(params=WORLDS)
def world(request: pytest.FixtureRequest) -> Iterator[ClusterWorld]:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    backend_kind = request.param.removeprefix("cached-")
    closers: list[Callable[[], None]] = []
    backend: ports.Cluster
    if backend_kind == "memory":
        backend = memory.InMemoryCluster()
    elif backend_kind == "simulated":
        env = simpy.Environment()
        backend = memory.InMemoryCluster(engine.SimClock(env), uid_seed=1, dispatcher=engine.WatchDispatcher(env, 0.0))
    else:
        plane = request.getfixturevalue("kube_api")
        plane.install_crds()
        api = client.api_client(plane.kubeconfig)
        closers.append(api.close)
        backend = client.KubeCluster(api)
    cluster = backend
    if request.param.startswith("cached-"):
        cached = cache.CachedCluster(backend, ALL_KINDS).start()
        closers.append(cached.close)
        cluster = cached
    cluster.create(resources.Namespace(resources.Meta(name=prefix)))
    try:
        yield ClusterWorld(request.param, cluster, prefix, prefix)
    finally:
        for close in reversed(closers):
            close()


def events_of(
    cluster: ports.Cluster, kind: resources.Kind[Any], match: dict[str, str] | None = None
) -> tuple[queue.Queue[resources.Event[Any]], ports.Subscription]:
    q: queue.Queue[resources.Event[Any]] = queue.Queue()
    return q, cluster.watch(kind, q.put, match=match)


def next_event(q: queue.Queue[resources.Event[Any]], name: str) -> resources.Event[Any]:
    """The next event about ``name`` (others, e.g. from other tests on a shared server, are skipped)."""
    while True:
        event = q.get(timeout=10)
        if event.object.name == name:
            return event


def eventually(read: Callable[[], Any], want: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    """``read()`` once it satisfies ``want`` (a cache in front of a real server catches up asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if want(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
