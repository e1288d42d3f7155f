"""Microseconds per KubeScheduler.schedule() at 500 / 5,000 / 50,000 nodes, in both modes (scheduler extender,
Storage Capacity Tracking), and the filter stage against a per-node Python loop measured in the same run.

Each scheduled pod is bound at once (add_pod, and the node's CSIStorageCapacity shrinks), so the cluster fills
as a simulation would fill it.

    .venv/bin/python bench/sim_kube_scheduler_bench.py [--pods 2000] [--sizes 500,5000,50000]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence

import numpy as np

from simulator.kube_scheduler import api, filters, model, podinfo, reference
from topolvm.core import resources, workloads

GiB = 1 << 30
DISK = 2048 * GiB


class CapacityExtender:
    """Stands in for topolvm-scheduler: passes nodes with room, scores by free space (cheap, like the real one)."""

    def __init__(self, free: dict[str, int], size: int) -> None:
        self.free, self.size = free, size
        self.seconds = 0.0  # time spent in here, to report the model's own share

    def filter(self, pod: workloads.Pod, nodes: Sequence[str]) -> api.FilterResult:
        start = time.perf_counter()
        passed = [n for n in nodes if self.free[n] >= self.size]
        failed = (
            {n: "not enough capacity" for n in nodes if self.free[n] < self.size} if len(passed) < len(nodes) else {}
        )
        self.seconds += time.perf_counter() - start
        return api.FilterResult(passed, failed)

    def prioritize(self, pod: workloads.Pod, nodes: Sequence[str]) -> list[int]:
        start = time.perf_counter()
        tenth = DISK // 10
        scores = [self.free[n] // tenth for n in nodes]
        self.seconds += time.perf_counter() - start
        return scores


def make_pod(i: int, rng: random.Random) -> workloads.Pod:
    requests = {"cpu": rng.choice([100, 250, 500]), "memory": rng.choice([256, 512, 1024]) << 20}
    container = workloads.Container("main", requests, {"topolvm.io/capacity": 1})
    return workloads.Pod(resources.Meta(name=f"p{i}", namespace="bench"), workloads.PodSpec(containers=(container,)))


def build(n: int, extender: bool) -> tuple[model.KubeScheduler, dict[str, int]]:
    free = {f"node-{i:05}": DISK for i in range(n)}
    ext = CapacityExtender(free, 10 * GiB) if extender else None  # free space never exceeds DISK: scores 0..10
    ks = model.KubeScheduler(api.SchedulerConfig(), ext, random.Random(1))
    for name in free:
        allocatable = {"cpu": 32000, "memory": 128 * GiB, "pods": 110}
        ks.set_node(resources.Node(resources.Meta(name=name), status=resources.NodeStatus(allocatable)))
        if not extender:
            ks.set_capacity(name, "ssd", DISK, None)
    return ks, free


def run(n: int, pods: int, extender: bool) -> tuple[float, float, int]:
    """(µs per schedule(), of which µs inside the stand-in extender, pods placed)."""
    ks, free = build(n, extender)
    claims = [] if extender else [api.ClaimView("data", "ssd", 10 * GiB)]
    rng = random.Random(2)
    batch = [make_pod(i, rng) for i in range(pods)]
    ks.schedule(batch[0], claims)  # builds the per-pod-shape cache once, as the first pod of a run would
    placed = 0
    start = time.perf_counter()
    for p in batch:
        result = ks.schedule(p, claims)
        if result.node is not None:
            placed += 1
            ks.add_pod(p, result.node)
            free[result.node] -= 10 * GiB
            if not extender:
                ks.set_capacity(result.node, "ssd", free[result.node], None)
    elapsed = time.perf_counter() - start
    outside = ks.extender.seconds if isinstance(ks.extender, CapacityExtender) else 0.0
    return elapsed / pods * 1e6, outside / pods * 1e6, placed


def filter_stage(n: int, repeats: int) -> tuple[float, float]:
    """µs per call: the vectorised filter pass over all nodes vs the per-node loop, same pod and cluster."""
    ks, _ = build(n, extender=False)
    p, claims = make_pod(0, random.Random(3)), [api.ClaimView("data", "ssd", 10 * GiB)]
    req, entry = podinfo.pod_requests(p), ks.static.get(podinfo.constraints_of(p))
    start = time.perf_counter()
    every = np.arange(n)
    for _ in range(repeats):
        filters.Evaluator(ks.table, ks.capacity, entry, req, filters.plan_volumes(claims)).ok(every)
    vectorised = (time.perf_counter() - start) / repeats * 1e6
    loops = max(1, repeats // 50)
    start = time.perf_counter()
    for _ in range(loops):
        reference.feasible_by_loop(ks, p, claims)
    return vectorised, (time.perf_counter() - start) / loops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--sizes", default="500,5000,50000")
    args = parser.parse_args()
    print("us/schedule: whole call; in extender: its share spent in the stand-in extender; filter: the vectorised")
    print("filter pass over every node vs the per-node loop (reference.py) on the same cluster and pod")
    header = ("nodes", "mode", "us/schedule", "in extender", "placed", "filter us", "loop us", "ratio")
    print("{:>7} {:>9} {:>12} {:>12} {:>7} {:>10} {:>10} {:>7}".format(*header))
    for n in (int(s) for s in args.sizes.split(",")):
        pods = args.pods if n <= 5000 else max(200, args.pods // 5)
        vectorised, loop = filter_stage(n, 200)
        for extender in (True, False):
            us, outside, placed = run(n, pods, extender)
            mode = "extender" if extender else "capacity"
            print(
                f"{n:>7} {mode:>9} {us:>12.1f} {outside:>12.1f} {placed:>7} "
                f"{vectorised:>10.1f} {loop:>10.1f} {loop / vectorised:>6.0f}x"
            )


if __name__ == "__main__":
    main()
