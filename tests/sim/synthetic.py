"""Results as ``simulate()`` returns them, built from a seeded random walk instead of a simulation: nodes that
fill up, a node pool that grows two thirds of the way in, scheduling failures once nodes run full, and a
summary computed from the series the way the observer computes it. For report tests that must not depend on
the whole simulator."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import msgspec

from simulator import cli, report, run, scenario

TIB = 1 << 40
SIZES = {"ssd": 7 * TIB, "thin": 8 * TIB}  # per node; thin is the overprovisioned size
THIN_RATIO = 4  # thin: 2 TiB pools, overprovisioned 4x
STORAGE_REASON = "node(s) did not have enough free storage"
OTHER_REASON = "Insufficient cpu"


def result(
    *,
    name: str = "default",
    seed: int = 1,
    mode: str = "extender",
    classes: Sequence[str] = ("ssd", "thin"),
    nodes: int = 6,
    samples: int = 120,
    interval: float = 6 * 3600.0,
    per_node: bool = True,
    error: str | None = None,
    extra_reasons: dict[str, int] | None = None,
) -> run.Result:
    rng = random.Random(f"{name}/{seed}")
    names = [f"nvme-{k:03d}" for k in range(nodes)]
    joins = {n: (0 if k < nodes - 1 else samples * 2 // 3) for k, n in enumerate(names)}
    used = {(n, c): 0 for n in names for c in classes}
    series: list[dict[str, Any]] = []
    rows: list[tuple[float, str, str, int, int]] = []
    reasons: dict[str, int] = {STORAGE_REASON: 0, OTHER_REASON: 0}
    attempts = failed_attempts = failed_pods = running = 0
    first_storage_failure = None
    for i in range(samples):
        t = i * interval
        present = [n for n in names if joins[n] <= i]
        row: dict[str, Any] = {"t": t}
        for c in classes:
            size = SIZES.get(c, 4 * TIB)
            for n in present:
                used[n, c] = min(size, used[n, c] + rng.randrange(0, size // (samples // 2)))
            frees = [size - used[n, c] for n in present]
            utils = sorted(used[n, c] / size for n in present)
            stranded = sum(f for f in frees if f < 200 * (1 << 30))
            free = sum(frees)
            row |= {
                f"{c}.size": size * len(present),
                f"{c}.free": free,
                f"{c}.used": size * len(present) - free,
                f"{c}.utilization": round(1 - free / (size * len(present)), 6),
                f"{c}.node_p50": round(utils[len(utils) // 2], 6),
                f"{c}.node_p90": round(utils[min(len(utils) - 1, int(0.9 * len(utils)))], 6),
                f"{c}.node_max": round(utils[-1], 6),
                f"{c}.stranded": stranded,
                f"{c}.fragmentation": round(stranded / free, 6) if free else 0.0,
            }
            if per_node:  # lvmd reports a thin class's pool size, and its free bytes overprovisioned
                reported = size // THIN_RATIO if c == "thin" else size
                rows += [(t, n, c, reported, size - used[n, c]) for n in present]
        full = max(row[f"{c}.node_max"] for c in classes)
        tries = rng.randint(4, 12)
        failures = rng.randint(0, tries) if full > 0.8 else rng.randint(0, 1)
        attempts += tries
        failed_attempts += failures
        storage = failures if full > 0.8 else 0
        reasons[STORAGE_REASON] += storage * len(present)
        reasons[OTHER_REASON] += failures - storage
        if storage and first_storage_failure is None:
            first_storage_failure = t
        running += rng.randint(0, 3)
        failed_pods += storage // 3
        row |= {"pods_pending": failures, "pods_running": running, "pods_failed": failed_pods, "nodes": len(present)}
        row |= {"attempts": attempts, "failed_attempts": failed_attempts}
        series.append(row)
    reasons.update(extra_reasons or {})
    last = series[-1]
    created = running + failed_pods + last["pods_pending"]
    judged = running + failed_pods
    summary: dict[str, Any] = {
        "pods": {
            "created": created,
            "bound": running,
            "pending_at_end": last["pods_pending"],
            "failed": failed_pods,
            "judged": judged,
            "failure_rate": round(failed_pods / judged, 6) if judged else 0.0,
            "wait_p50_s": 1.25,
            "wait_p99_s": 42.5,
            "with_storage_failures": failed_pods,
        },
        "scheduling": {
            "attempts": attempts,
            "failed_attempts": failed_attempts,
            "reasons": dict(sorted(((r, n) for r, n in reasons.items() if n), key=lambda kv: -kv[1])),
        },
        "capacity": {
            c: {
                "size_bytes": last[f"{c}.size"],
                "used_bytes_end": last[f"{c}.used"],
                "used_bytes_peak": max(r[f"{c}.used"] for r in series),
                "utilization_end": last[f"{c}.utilization"],
                "utilization_peak": max(r[f"{c}.utilization"] for r in series),
                "stranded_bytes_end": last[f"{c}.stranded"],
                "fragmentation_end": last[f"{c}.fragmentation"],
                "projected_full_s": round(last["t"] * 1.2, 1),
            }
            for c in classes
        },
        "time_to_exhaustion_s": first_storage_failure,
        "scenario": name,
        "seed": seed,
        "mode": mode,
        "simulated_seconds": last["t"],
        "nodes_at_end": nodes,
        "decisions_sha256": f"{rng.getrandbits(256):064x}",
        "provisioner": {"created": created, "failed": 0},
        "workload_errors": [],
        "error": error,
    }
    inputs = msgspec.to_builtins(scenario.loads(cli.default_scenario_text(), "default scenario").spec)
    return run.Result(name, seed, summary, series, rows, [], error, wall_seconds=12.5, inputs=inputs)


def labelled() -> list[tuple[str, run.Result]]:
    """Two runs as a comparison or plan page takes them: (label, result)."""
    return [
        ("spread", dataclasses.replace(result(seed=1), name="spread seed=1")),  # as study jobs name them
        (
            "pack",
            result(seed=2, mode="capacity-tracking", extra_reasons={"volume node affinity conflict": 4}),
        ),
    ]


def plan_curve() -> list[report.PlanPoint]:
    """A plan's failure rates per node count over three seeds; 12 nodes is the smallest under a 2 % target."""
    rates = {8: [0.2, 0.25, 0.3], 10: [0.05, 0.08, 0.06], 12: [0.004, 0.0, 0.008], 14: [0.0, 0.0, 0.001]}
    return [
        report.PlanPoint(
            n, r, mean=sum(r) / len(r), upper=sum(r) / len(r) + 0.01, meets_target=sum(r) / len(r) + 0.01 <= 0.02
        )
        for n, r in rates.items()
    ]
