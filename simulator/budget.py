"""How much memory a scenario will need, estimated before it runs, so a scenario too large for this machine is
refused with the estimate instead of ending in the OOM killer.

The figures per object are measured (``bench/sim_scale_bench.py`` prints them): what a simulated node costs
(its lvmd, in-memory LVM, reconciler, Node object) and what a live pod with one claim costs (Pod, PVC, PV,
LogicalVolume, LV, scheduler and observer records), plus what a finished pod leaves behind in the records.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from simulator import scenario, scenario_workload, trace, units
from topolvm import errors

BYTES_PER_NODE = 96 << 10
BYTES_PER_LIVE_CLAIM = 24 << 10
BYTES_PER_POD_RECORD = 1 << 10
BYTES_PER_SAMPLE_PER_NODE = 160  # per-node series rows of small clusters
BASELINE = 160 << 20  # the interpreter and the libraries


@dataclasses.dataclass(frozen=True)
class Estimate:
    nodes: int
    pods: int
    live_claims: int
    bytes: int

    def describe(self) -> str:
        return (
            f"about {units.text_of_bytes(self.bytes)} for {self.nodes} nodes, {self.pods} pods "
            f"(up to {self.live_claims} live claims at once)"
        )


def estimate(loaded: scenario.Loaded, replay: list[trace.Op] | None = None) -> Estimate:
    spec = loaded.spec
    end = units.duration(spec.duration)
    nodes = sum(p.count for p in spec.cluster.node_pools)
    nodes += sum(e.count for e in spec.node_events if e.action == "add")
    pods = live = 0
    if replay is not None:
        pods = sum(1 for op in replay if isinstance(op, trace.CreatePod))
        live = sum(len(op.claims) for op in replay if isinstance(op, trace.CreatePod))
        live += sum(1 for op in replay if isinstance(op, trace.PlaceClaim))
        nodes += sum(1 for op in replay if isinstance(op, trace.AddNode))
    for w in spec.workloads:
        start = units.duration(w.start)
        stop = min(end, units.duration(w.stop)) if w.stop is not None else end
        active = max(0.0, stop - start)
        if w.rate is not None:
            count = math.ceil(units.rate(w.rate) * active)
            mean_life = _mean_life(w.lifetime)
            alive = count if mean_life is None else math.ceil(units.rate(w.rate) * min(mean_life, active))
        else:
            count = alive = w.replicas or 0
        pods += count
        live += alive * len(w.claims)
    samples = end / units.duration(spec.sample_interval) + 1
    per_node_series = samples * nodes * BYTES_PER_SAMPLE_PER_NODE * 2 if nodes <= 200 else 0
    total = BASELINE + nodes * BYTES_PER_NODE + live * BYTES_PER_LIVE_CLAIM + pods * BYTES_PER_POD_RECORD
    return Estimate(nodes, pods, live, int(total + per_node_series))


def _mean_life(spec: scenario_workload.DurationDist) -> float | None:
    if spec.forever:
        return None
    return units.duration(spec.fixed or spec.exponential_mean)


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (what can be used without swapping)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 << 30


def check(found: Estimate, limit: int | None = None) -> None:
    allowed = limit if limit is not None else int(available_bytes() * 0.8)
    if found.bytes > allowed:
        raise errors.ConfigError(
            f"this scenario needs {found.describe()}; the limit is {units.text_of_bytes(allowed)} "
            "(--max-memory, default 80% of available memory): make it smaller or raise the limit"
        )
