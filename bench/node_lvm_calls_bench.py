#!/usr/bin/env python3
"""lvm commands per minute under kubelet's volume polling (upstream #1221), topolvm-py against upstream v0.41.0.

Boots the HIL VM as a one-node cluster with a real kubelet (the node profile, docs/harness.md), deploys TopoLVM
from the chart, mounts --pods x --volumes-per-pod thin volumes in pods, and counts every lvm command on the node
for --window seconds while kubelet polls the volumes at its own cadence (NodeGetVolumeStats and, with
CSIVolumeHealth, NodeGetVolumeHealth, each once a minute per volume). Then the chart's topolvm-node and lvmd
DaemonSets run upstream's hypertopolvm v0.41.0 instead (same manifests, upstream's arguments) and the same
volumes are counted again. Prints both rates and upstream's as a multiple of ours. The in-VM part is
tests/hil/node/bench_lvm_calls.py. Needs what the node suite needs (ci/peers/build.sh, root, qemu).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import node_profile, runner, vm


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=10, help="pods (default: 10)")
    p.add_argument("--volumes-per-pod", type=int, default=10, help="claims each pod mounts (default: 10)")
    p.add_argument("--window", type=float, default=600, help="seconds counted per implementation (default: 600)")
    p.add_argument("--memory", type=int, default=6144, help="guest memory, MiB (default: 6144)")
    args = p.parse_args()
    if args.pods < 1 or args.volumes_per_pod < 1 or args.window < 60:
        p.error("--pods and --volumes-per-pod must be positive and --window at least 60")
    problems = node_profile.prerequisites()
    if problems:
        print("cannot build the HIL node profile: " + "; ".join(problems), file=sys.stderr)
        return 2
    profile = node_profile.ensure(log=True)
    timeout = 2400 + 2 * args.window
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "topolvm.yaml"
        # What ships, not the node suite's faster cadence: lvmd's default --max-state-age and kubelet's default
        # volumeStatsAggPeriod (tests/support/hil_node_config.py), both a minute.
        node_profile.render_chart(chart, set_values=("lvmd.args={}",))
        job = runner.pytest_job(
            ["tests/hil/node/bench_lvm_calls.py"],
            None,
            name="bench-lvm-calls",
            extra_args=["-s"],
            env={
                "TOPOLVM_BENCH_PODS": str(args.pods),
                "TOPOLVM_BENCH_VOLUMES_PER_POD": str(args.volumes_per_pod),
                "TOPOLVM_BENCH_WINDOW": str(args.window),
                "TOPOLVM_HIL_VOLUME_STATS_PERIOD": "60",
            },
            timeout_s=timeout,
            files={"topolvm.yaml": chart},
            drives={node_profile.SERIAL: profile.disk},
        )
        run = runner.run_pytest(job, vm.VmConfig(memory_mib=args.memory, timeout_s=timeout + 180))
    found = run.run.run_dir / "out" / "node" / "lvm_calls.json"
    if run.failed or not found.is_file():
        print(f"the benchmark failed; see {run.run.run_dir} (console.log, out/output.log)", file=sys.stderr)
        return 1
    result = json.loads(found.read_text())
    ours, upstream = result["topolvm-py"], result["upstream"]
    print(f"{result['volumes']} volumes mounted by pods, kubelet polling, {args.window:.0f} s each, same VM:")
    print(f"  topolvm-py       {ours['per_minute']:8.1f} lvm commands/min  {ours['by_command']}")
    print(f"  upstream v0.41.0 {upstream['per_minute']:8.1f} lvm commands/min  {upstream['by_command']}")
    print(f"  ratio: upstream runs {result['ratio_upstream_over_ours']}x as many (run dir {run.run.run_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
