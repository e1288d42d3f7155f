"""``simulate(scenario) -> Result``: build the simulated cluster, run it for the scenario's duration, and always
return a result — also when something inside raised, with the error recorded, so sweeps never lose a whole grid
to one bad cell.

The same seed gives the same run, bit for bit: every random draw comes from generators seeded from the
scenario's seed (workload, kube-scheduler's tie-breaks, UIDs), and nothing iterates in hash order. The
``decisions`` digest (every pod's node, in binding order) makes that checkable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgspec

from simulator import (
    adapters,
    capacity_tracking,
    engine,
    observe,
    provisioner,
    scenario,
    scheduling,
    trace,
    units,
    workload,
    world,
)
from simulator.kube_scheduler import model as ks_model
from topolvm.core import resources, workloads

log = logging.getLogger(__name__)
Progress = Callable[[float, float], None]  # (simulated seconds done, total)


@dataclasses.dataclass
class Result:
    name: str
    seed: int
    summary: dict[str, Any]
    series: list[dict[str, Any]]
    per_node: list[tuple[float, str, str, int, int]]
    recorded: list[trace.Op]
    error: str | None = None
    wall_seconds: float = 0.0
    decisions: list[observe.Decision] = dataclasses.field(default_factory=list)
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)  # the scenario, as its YAML keys

    @property
    def ok(self) -> bool:
        return self.error is None


def _rng(seed: int, stream: str) -> random.Random:
    return random.Random(f"{seed}/{stream}")  # noqa: S311 (simulation, not secrets)


def simulate(
    loaded: scenario.Loaded,
    *,
    progress: Progress | None = None,
    record_trace: bool = False,
    replay: list[trace.Op] | None = None,
    chunks: int = 100,
    settle_hopeless: bool = True,
) -> Result:
    """One run. ``replay``: a trace applied instead of the scenario's workloads and of its own ``trace`` (which,
    without ``replay``, is applied beside the workloads)."""
    spec = loaded.spec
    started = time.perf_counter()
    env = engine.SimEnvironment()
    w = world.World(loaded, env)
    extender = None
    if spec.scheduler.extender_on:
        extender = adapters.SimExtender(w, spec.scheduler.extender)
    model = ks_model.KubeScheduler(
        adapters.scheduler_config(spec.scheduler), extender, _rng(spec.seed, "kube-scheduler")
    )
    prov = provisioner.Provisioner(env, w.cluster, w.controller, latency=w.latencies.provisioner)
    if spec.scheduler.capacity_tracking_on:
        capacity_tracking.CapacityPublisher(
            env,
            w.cluster,
            w.controller,
            interval=units.duration(spec.scheduler.capacity_poll_interval),
            namespace="kube-system",
        )
    observer = observe.Observer(
        w, sample_interval=units.duration(spec.sample_interval), slo=units.duration(spec.scheduler.scheduling_slo)
    )
    decisions = hashlib.sha256()

    def bound(key: tuple[str, str], node: str) -> None:
        decisions.update(f"{key[0]}/{key[1]}={node};".encode())
        observer.bound(key, node)

    driver = scheduling.SchedulerDriver(
        w,
        model,
        cycle_latency=w.latencies.scheduling_cycle,
        on_attempt=observer.attempt,
        on_bound=bound,
        capacity_tracking=spec.scheduler.capacity_tracking_on,
        most_free=extender.most_free if extender is not None else None,
    )
    driver.settle_hopeless = settle_hopeless
    w.cluster.watch(
        workloads.POD,
        lambda e: (
            observer.pod_deleted((e.object.meta.namespace, e.object.meta.name))
            if e.type is resources.EventType.DELETED
            else None
        ),
    )
    executor = workload.Executor(w, prov, adapters.admission(w.cluster), record=record_trace)
    executor.pod_listeners.append(observer.pod_created)
    end = units.duration(spec.duration)
    error = None
    with engine.quiet_collector() as settle:
        try:
            for pool in spec.cluster.node_pools:
                w.add_nodes(pool.name, pool.count)
            if replay is not None:
                scenario.check_trace(loaded, replay, "the replayed trace")
                workload.replay(env, replay, executor)
            else:
                if spec.trace is not None:  # the scenario's own trace (a snapshot's state), beside its workloads
                    own = list(trace.read(spec.trace))
                    scenario.check_trace(loaded, own, spec.trace)
                    workload.replay(env, own, executor)
                workload.Generators(env, loaded, executor, _rng(spec.seed, "workload")).start()
            settle()
            for i in range(1, chunks + 1):
                env.run(until=end * i / chunks)
                settle()
                if progress is not None:
                    progress(float(env.now), end)
        except Exception as exc:
            log.exception("simulation %s failed at t=%.1fs", spec.name, env.now)
            error = f"{type(exc).__name__} at t={float(env.now):.1f}s: {exc}\n{traceback.format_exc(limit=8)}"
    observer.sample()
    summary = observer.summary(float(env.now))
    summary["scheduling"]["settled_without_cycle"] = driver.settled
    summary["scheduling"]["moved_back_by"] = dict(sorted(driver.queue.moves.items()))
    summary.update(
        scenario=spec.name,
        seed=spec.seed,
        mode=spec.scheduler.mode,
        simulated_seconds=float(env.now),
        nodes_at_end=len(w.nodes),
        decisions_sha256=decisions.hexdigest(),
        provisioner=dataclasses.asdict(prov.stats),
        volumes_lost_with_nodes=w.lost_volumes,
        pods_recreated=executor.recreated,
        expansions_deferred=executor.expansions_deferred,
        workload_errors=executor.errors[:50],
        error=error,
    )
    wall = round(time.perf_counter() - started, 3)
    return Result(
        spec.name,
        spec.seed,
        summary,
        observer.series,
        observer.per_node,
        executor.recorded,
        error,
        wall,
        observer.decisions,
        msgspec.to_builtins(spec),
    )
