#!/usr/bin/env python3
"""How the simulator scales: wall time, peak RSS and placements per second for N nodes and P PVC lifecycles,
with TopoLVM's real services in the loop (lvmd per node, reconcilers, controller, extender, webhook).

Each configuration runs in its own process (so peak RSS is its own) on a generated scenario: one node pool of N
nodes with two 3.84 TB disks, a Poisson stream of single-claim pods (lognormal sizes around 50 GiB) over 10
simulated days, each living about a day, so nearly every PVC is created, provisioned, bound and deleted.

    bench/sim_scale_bench.py                      the matrix: nodes 500/5,000/50,000 x PVCs, see --help
    bench/sim_scale_bench.py --nodes 5000 --pvcs 100000 --profile   one run, with where the time goes
    bench/sim_scale_bench.py --nodes 5000 --pvcs 10000 --mode extender   the extender alone (default: both)

Prints absolute figures, each run's decisions digest (equal digests: the same placements in the same order, so
before and after a change that must not alter them can be compared), the goal's ratios (wall / 60 s, RSS / 2 GiB
for 5,000 nodes and 100,000 PVCs) and how wall time grows with nodes and with PVCs (ratios between rows of the
same run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

GOAL_WALL = 60.0
GOAL_RSS = 2 << 30

CHILD = r"""
import cProfile, json, pstats, resource, sys, time, io
from simulator import run, scenario
loaded = scenario.load(sys.argv[1])
profile = sys.argv[2] == "1"
started = time.perf_counter()
if profile:
    prof = cProfile.Profile(); prof.enable()
result = run.simulate(loaded)
wall = time.perf_counter() - started
out = {"wall": wall, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
       "created": result.summary["pods"]["created"], "bound": result.summary["pods"]["bound"],
       "deleted": result.summary["provisioner"]["deleted"], "error": result.error, "sim_wall": result.wall_seconds,
       "decisions": result.summary["decisions_sha256"]}
if profile:
    prof.disable()
    stats = pstats.Stats(prof)
    by_module = {}
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        if "site-packages" in filename:
            key = filename.split("/site-packages/")[-1].rsplit("/", 1)[0]
        else:
            key = filename.split("/work/main/")[-1]
        by_module[key] = by_module.get(key, 0.0) + tottime
    out["profile"] = sorted(by_module.items(), key=lambda kv: -kv[1])[:20]
print(json.dumps(out))
"""


def scenario_for(nodes: int, pvcs: int, mode: str = "both") -> dict[str, Any]:
    days = 10.0
    return {
        "scheduler": {"mode": mode},
        "name": f"scale-{nodes}-{pvcs}",
        "seed": 1,
        "duration": f"{days}d",
        "sample-interval": "6h",
        "cluster": {
            "node-pools": [
                {
                    "name": "n",
                    "count": nodes,
                    "cpu": "64",
                    "memory": "512Gi",
                    "volume-groups": [{"name": "vg", "disks": ["3.84T", "3.84T"]}],
                    "lvmd": {
                        "device-classes": [{"name": "ssd", "volume-group": "vg", "default": True, "spare-gb": 10}]
                    },
                }
            ],
            "storage-classes": [{"name": "sc", "device-class": "ssd"}],
        },
        "workloads": [
            {
                "name": "w",
                "rate": f"{pvcs / days}/d",
                "lifetime": {"exponential-mean": "1d"},
                "cpu": "250m",
                "memory": "512Mi",
                "claims": [{"storage-class": "sc", "size": {"lognormal-median": "50Gi", "sigma": 1.0, "max": "2Ti"}}],
            }
        ],
    }


def measure(nodes: int, pvcs: int, profile: bool, mode: str = "both") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.yaml"
        path.write_text(yaml.safe_dump(scenario_for(nodes, pvcs, mode)))
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), "1" if profile else "0"],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"run failed ({nodes} nodes, {pvcs} PVCs):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(nodes=nodes, pvcs=pvcs)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, action="append", help="node counts (default: 500, 5000, 50000)")
    p.add_argument("--pvcs", type=int, action="append", help="PVC counts (default: 10000 and 100000)")
    p.add_argument("--profile", action="store_true", help="also show where the time goes (cProfile, by module)")
    p.add_argument("--mode", default="both", choices=["both", "extender", "capacity-tracking"], help="scheduler mode")
    args = p.parse_args()
    grid = [(n, c) for n in (args.nodes or [500, 5000, 50000]) for c in (args.pvcs or [10000, 100000])]
    rows = []
    print(f"{'nodes':>7} {'PVCs':>8} {'created':>8} {'bound':>8} {'wall s':>8} {'peak RSS':>9} {'placements/s':>12}")
    for nodes, pvcs in grid:
        r = measure(nodes, pvcs, args.profile, args.mode)
        rows.append(r)
        rate = r["bound"] / r["wall"] if r["wall"] else 0.0
        rss = r["rss"] / 2**20
        print(f"{nodes:>7} {pvcs:>8} {r['created']:>8} {r['bound']:>8} {r['wall']:>8.1f} {rss:>7.0f}Mi {rate:>12.0f}")
        print(f"        decisions_sha256 {r['decisions']} (every pod's node, in binding order)")
        if r["error"]:
            print(f"        error: {r['error'].splitlines()[0]}")
        for module, seconds in r.get("profile", []):
            print(f"        {seconds:7.1f}s  {module}")
    target = next((r for r in rows if r["nodes"] == 5000 and r["pvcs"] == 100000), None)
    if target is not None:
        wall, rss = target["wall"], target["rss"]
        print(
            f"goal (5,000 nodes, 100,000 PVCs): wall {wall:.1f}s = {wall / GOAL_WALL:.2f}x the 60 s goal; "
            f"peak RSS {rss / 2**30:.2f} GiB = {rss / GOAL_RSS:.2f}x the 2 GiB goal"
        )
    by = {(r["nodes"], r["pvcs"]): r for r in rows}
    for (n, c), r in sorted(by.items()):
        bigger = [m for (m, d) in by if d == c and m > n]
        if bigger:
            m = min(bigger)
            print(f"nodes {n} -> {m} at {c} PVCs: wall x{by[(m, c)]['wall'] / r['wall']:.2f}")
        more = [d for (m, d) in by if m == n and d > c]
        if more:
            d = min(more)
            print(f"PVCs {c} -> {d} at {n} nodes: wall x{by[(n, d)]['wall'] / r['wall']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
