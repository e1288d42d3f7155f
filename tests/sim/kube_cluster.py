"""Builders for the kube-scheduler model's tests: nodes, pods and a scheduler over them."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from simulator.kube_scheduler import api, fake, model
from topolvm.core import resources, workloads

GiB = 1 << 30
MiB = 1 << 20
CPU, MEM = 4000, 8 * GiB  # every test node's allocatable unless a case says otherwise


def node(
    name: str,
    *,
    cpu: int = CPU,
    memory: int = MEM,
    pods: int = 110,
    labels: Mapping[str, str] | None = None,
    taints: Iterable[resources.Taint] = (),
    unschedulable: bool = False,
) -> resources.Node:
    return resources.Node(
        resources.Meta(name=name, labels=dict(labels or {})),
        resources.NodeSpec(taints=tuple(taints), unschedulable=unschedulable),
        resources.NodeStatus({"cpu": cpu, "memory": memory, "pods": pods}),
    )


def taint(key: str, effect: str = "NoSchedule", value: str = "") -> resources.Taint:
    return resources.Taint(key, resources.TaintEffect(effect), value)


def pod(
    name: str = "p",
    *,
    cpu: int | None = None,
    memory: int | None = None,
    init: Iterable[Mapping[str, int]] = (),
    topolvm: bool = True,
    node_name: str = "",
    node_selector: Mapping[str, str] | None = None,
    required: tuple[tuple[workloads.Requirement, ...], ...] = (),
    preferred: tuple[workloads.PreferredTerm, ...] = (),
    tolerations: tuple[workloads.Toleration, ...] = (),
) -> workloads.Pod:
    requests: dict[str, int] = {}
    if cpu is not None:
        requests["cpu"] = cpu
    if memory is not None:
        requests["memory"] = memory
    limits = {"topolvm.io/capacity": 1} if topolvm else {}
    return workloads.Pod(
        resources.Meta(name=name, namespace="default"),
        workloads.PodSpec(
            containers=(workloads.Container("main", requests, limits),),
            init_containers=tuple(workloads.Container(f"init{i}", dict(r)) for i, r in enumerate(init)),
            node_name=node_name,
            node_selector=dict(node_selector or {}),
            required_terms=required,
            preferred_terms=preferred,
            tolerations=tolerations,
        ),
    )


def req(key: str, operator: str, *values: str) -> workloads.Requirement:
    return workloads.Requirement(key, workloads.Operator(operator), tuple(values))


def cluster(
    nodes: Iterable[resources.Node] | int = 5,
    *,
    extender: fake.FakeExtender | None = None,
    seed: int = 1,
    config: api.SchedulerConfig | None = None,
) -> model.KubeScheduler:
    ks = model.KubeScheduler(config or api.SchedulerConfig(), extender, random.Random(seed))
    for n in [node(f"n{i}") for i in range(nodes)] if isinstance(nodes, int) else nodes:
        ks.set_node(n)
    return ks


def load(ks: model.KubeScheduler, node_name: str, *, cpu: int | None = None, memory: int | None = None) -> None:
    """Count an existing pod with these requests on the node."""
    ks.add_pod(pod(f"load-{node_name}-{len(ks.table._pods)}", cpu=cpu, memory=memory), node_name)
