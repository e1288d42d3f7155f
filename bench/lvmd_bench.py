#!/usr/bin/env python3
"""lvmd benchmark: lvm invocations per request and while idle (upstream #1221), and gRPC overhead.

Runs the real ``topolvm-lvmd`` daemon on a loop-device VG (root), same machine, same run:
1. lvm invocations per CreateLV / ResizeLV / RemoveLV, counted by a command prefix that logs every lvm exec;
2. lvm invocations per idle minute with ``--lvs`` LVs and a Watch subscriber attached (what topolvm-node does);
3. lvmd's RPC overhead: p50 of CreateLV/RemoveLV over gRPC minus p50 of the same lvm commands run bare
   (lvcreate + fullreport, lvremove + fullreport), interleaved in one run.
Prints ratios against the baseline measured beside them. Upstream's idle figure (~40/min, #1221) is quoted,
not measured here.
"""

from __future__ import annotations

import argparse
import functools
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import loopvg
from topolvm.core import model
from topolvm.lvm import command, parse
from topolvm.lvmd import client as lvmd_client

MiB = 1 << 20
GiB = 1 << 30
HERE = Path(__file__).resolve().parent


@contextmanager
def daemon(vg: str, work: Path, prefix: list[str]) -> Iterator[lvmd_client.LvmdClient]:
    sock = work / "lvmd.sock"
    cfg = work / "lvmd.yaml"
    lvm_config = loopvg.lvm_config()
    prefix_yaml = "[" + ", ".join(f"'{p}'" for p in prefix) + "]"
    cfg.write_text(
        f"socket-name: {sock}\ndevice-classes:\n  - {{name: ssd, volume-group: {vg}, default: true, spare-gb: 0}}\n"
        f"lvm-command-prefix: {prefix_yaml}\n" + (f"lvm-config: '{lvm_config}'\n" if lvm_config else "")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "topolvm.lvmd.cli", "--config", str(cfg), "--log-level", "warning"],
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.is_socket():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("lvmd did not start")
            time.sleep(0.02)
        client = lvmd_client.LvmdClient(str(sock))
        yield client
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        sock.unlink(missing_ok=True)


def count(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def invocations(vg: str, work: Path, n_lvs: int, idle: float) -> None:
    log = work / "lvm-calls.log"
    with daemon(vg, work, [sys.executable, str(HERE / "count_exec.py"), str(log)]) as c:
        start = count(log)
        per_op: dict[str, list[int]] = {"CreateLV": [], "ResizeLV": [], "RemoveLV": []}
        for i in range(5):
            name = f"op{i}"
            for op, call in (
                ("CreateLV", functools.partial(c.create_lv, name=name, device_class="ssd", size_bytes=8 * MiB)),
                ("ResizeLV", functools.partial(c.resize_lv, name=name, device_class="ssd", size_bytes=16 * MiB)),
                ("RemoveLV", functools.partial(c.remove_lv, name=name, device_class="ssd")),
            ):
                before = count(log)
                call()
                per_op[op].append(count(log) - before)
        print(f"lvm invocations at start-up: {start}")
        for op, counts in per_op.items():
            print(f"lvm invocations per {op}: {statistics.mean(counts):.1f} (goal: 1 mutation + at most 1 report = 2)")
        for i in range(n_lvs):
            c.create_lv(name=f"idle{i:03d}", device_class="ssd", size_bytes=4 * MiB)
        updates: queue.Queue[model.NodeCapacity] = queue.Queue()
        sub = c.watch(updates.put)
        updates.get(timeout=10)
        before = count(log)
        print(f"idle with {n_lvs} LVs and a Watch subscriber for {idle:.0f}s ...", flush=True)
        time.sleep(idle)
        per_minute = (count(log) - before) * 60 / idle
        sub.close()
        print(f"lvm invocations per idle minute: {per_minute:.1f} (upstream #1221 reports ~40; goal 0)")
        for i in range(n_lvs):
            c.remove_lv(name=f"idle{i:03d}", device_class="ssd")


def overhead(vg: str, work: Path, samples: int) -> None:
    runner = command.Runner(config=loopvg.lvm_config())

    def bare(args: list[str], sub: str) -> float:
        t = time.perf_counter()
        runner.run(sub, args)
        runner.run("fullreport", [*parse.REPORT_ARGS, "--", vg], check=False)
        return time.perf_counter() - t

    rpc_c, rpc_r, bare_c, bare_r = [], [], [], []
    with daemon(vg, work, []) as c:
        for i in range(samples):
            t = time.perf_counter()
            c.create_lv(name=f"rpc{i}", device_class="ssd", size_bytes=8 * MiB)
            rpc_c.append(time.perf_counter() - t)
            bare_c.append(bare(["-n", f"bare{i}", "-L", f"{8 * MiB}b", "-W", "y", "-y", "--", vg], "lvcreate"))
            t = time.perf_counter()
            c.remove_lv(name=f"rpc{i}", device_class="ssd")
            rpc_r.append(time.perf_counter() - t)
            bare_r.append(bare(["-y", "--", f"{vg}/bare{i}"], "lvremove"))
    for op, rpc, base in (("CreateLV", rpc_c, bare_c), ("RemoveLV", rpc_r, bare_r)):
        r50, b50 = statistics.median(rpc), statistics.median(base)
        print(
            f"{op}: p50 via lvmd {r50 * 1e3:.1f} ms, bare lvm {b50 * 1e3:.1f} ms -> overhead "
            f"{(r50 - b50) * 1e3:+.2f} ms, ratio {r50 / b50:.3f} (goal: overhead <= 2 ms)"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lvs", type=int, default=100, help="LVs present during the idle window (default 100)")
    p.add_argument("--idle-seconds", type=float, default=60.0, help="idle window length (default 60)")
    p.add_argument("--samples", type=int, default=30, help="timed operations per kind (default 30)")
    args = p.parse_args()
    reason = loopvg.can_run()
    if reason:
        print(f"lvmd_bench: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="tlvm-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        with loopvg.loop_vg(work, (4 * GiB, 4 * GiB)) as vg:
            invocations(vg.name, work, args.lvs, args.idle_seconds)
            overhead(vg.name, work, args.samples)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
