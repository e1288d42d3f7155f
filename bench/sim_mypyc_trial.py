#!/usr/bin/env python3
"""What mypyc would buy the simulator: the scale benchmark's scenario run from source and from a copy of the tree
whose hottest modules are compiled with mypyc, alternated, in CPU seconds, with both runs' decisions digests.

The project does not ship compiled modules (docs/simulator.md, "How fast", says why); this measures the option.
The copy lives in a temporary directory (only ``topolvm/``, ``simulator/`` and ``bench/``), so nothing compiled
ever lands beside the sources, where Python would import it in preference to an edited ``.py``.

    bench/sim_mypyc_trial.py --nodes 5000 --pvcs 10000 --runs 2
    bench/sim_mypyc_trial.py --modules topolvm.kube.store,topolvm.kube.memory,topolvm.core.node_index

Needs a C compiler, Python's headers and mypyc (installed with mypy by the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Pure-Python logic on the paths every simulated volume takes. Not the frozen value classes of
# topolvm.core.resources/workloads: as mypyc native classes they have no __dict__ (resources.evolve copies it),
# and the generic Kind dataclass fails at import when compiled.
MODULES = (
    "topolvm.kube.store",
    "topolvm.kube.memory",
    "topolvm.core.node_index",
    "topolvm.core.scheduling",
    "topolvm.core.reservations",
    "topolvm.core.capacity",
    "topolvm.core.placement",
    "topolvm.services.node",
    "topolvm.services.lvmd",
    "topolvm.services.controller",
    "topolvm.services.scheduler",
    "topolvm.services.cleanup",
    "topolvm.lvm.memory",
    "simulator.provisioner",
    "simulator.scheduling",
    "simulator.workload",
    "simulator.observe",
    "simulator.adapters",
    "simulator.kube_scheduler.model",
    "simulator.kube_scheduler.filters",
    "simulator.kube_scheduler.scores",
    "simulator.kube_scheduler.nodes",
)

BUILD = r"""
import sys
from mypyc.build import mypycify
from setuptools import setup
paths, opt = sys.argv[1].split(","), sys.argv[2]
setup(name="trial", ext_modules=mypycify(paths, opt_level=opt, group_name="topolvm._trial"),
      script_args=["build_ext", "--inplace", "--parallel", "2"])
"""

CHILD = r"""
import json, resource, sys, time, yaml
sys.path.insert(0, "bench")
import sim_scale_bench
import topolvm.kube.memory
from simulator import run, scenario
started = time.process_time()
result = run.simulate(scenario.parse(sim_scale_bench.scenario_for(int(sys.argv[1]), int(sys.argv[2]))))
print(json.dumps({"cpu": time.process_time() - started, "decisions": result.summary["decisions_sha256"],
                  "compiled": topolvm.kube.memory.__file__.endswith(".so"), "error": result.error,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def compile_copy(target: Path, modules: list[str], opt: str) -> float:
    for part in ("topolvm", "simulator", "bench"):
        shutil.copytree(ROOT / part, target / part, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(ROOT / "pyproject.toml", target)  # mypy's settings (strict, the untyped libraries)
    paths = ",".join(str(Path(*m.split(".")).with_suffix(".py")) for m in modules)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", BUILD, paths, opt], cwd=target, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"mypyc build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def measure(tree: Path, nodes: int, pvcs: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(nodes), str(pvcs)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"run failed in {tree}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--pvcs", type=int, default=10000)
    p.add_argument("--runs", type=int, default=2, help="runs of each, alternated (default 2)")
    p.add_argument("--modules", help="comma-separated modules to compile (default: the list in this file)")
    p.add_argument("--opt", default="2", help="mypyc/C optimisation level (default 2)")
    args = p.parse_args()
    modules = args.modules.split(",") if args.modules else list(MODULES)
    with tempfile.TemporaryDirectory(prefix="mypyc-trial-") as tmp:
        copy = Path(tmp)
        seconds = compile_copy(copy, modules, args.opt)
        print(f"compiled {len(modules)} modules with mypyc -O{args.opt} in {seconds:.0f} s wall")
        cpu: dict[str, list[float]] = {"source": [], "compiled": []}
        digests: set[str] = set()
        for _ in range(args.runs):
            for label, tree in (("source", ROOT), ("compiled", copy)):
                r = measure(tree, args.nodes, args.pvcs)
                if r["error"] or r["compiled"] != (label == "compiled"):
                    raise SystemExit(f"{label}: unexpected run: {r}")
                cpu[label].append(r["cpu"])
                digests.add(r["decisions"])
                rss = r["rss"] >> 20
                print(f"{label:>9}: {r['cpu']:.1f} s CPU, peak RSS {rss} MiB, decisions {r['decisions']}")
    ratio = min(cpu["compiled"]) / min(cpu["source"])
    print(f"best compiled / best source CPU: {ratio:.2f}; decisions {'identical' if len(digests) == 1 else 'DIFFER'}")
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
