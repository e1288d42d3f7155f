"""Extender benchmark: our topolvm-scheduler against upstream's, same machine, load generator and node sets.

    .venv/bin/python bench/extender_bench.py [--sizes 100,1000,5000] [--duration 3] [--variants 16] [--churn 0.02]

Builds the peers with ci/peers/build.sh (cached) and writes request bodies that differ between requests as a real
cluster's do (bench/extender_workload.py): ``--variants`` pods, each with its own UID and request, and between
two consecutive requests ``--churn`` of the ~2 KB Nodes changed (capacity annotation and resourceVersion), the
rest byte-identical. For each server and size the Go load generator runs a closed loop, one cycle = POST
/predicate then POST /prioritize with the same ExtenderArgs (the next cycle takes the next variant), at
concurrency 1 like kube-scheduler. The pods rotate, so at most ``--variants`` reservations are outstanding, as
if each pod were bound that many cycles after it was scheduled.

Prints requests/s and p50/p99 per side, and ratios ours/upstream only between like modes: upstream's
topolvm-scheduler reads full Nodes only (it answers a NodeNames request with 400), so ``ours-names``
(nodeCacheCapable: NodeNames, node cache fed by one full request here, by the Node watch in production) is
reported in absolute figures. For our full-Node sides it prints the share of Nodes the filter reused from the
previous request's decode, read from our /metrics (at most 1 - churn). Never run by the tests.

The ``floor`` side (full Nodes only) is the same HTTP stack and body reader doing the least either verb must do
with msgspec, without any policy: the filter splits the items and echoes them all, the prioritize decodes node
names and annotations and scores 0. It is the cost of moving and parsing ~2 KB per Node that no extender on this
stack avoids, against which ``ours-spread``/``ours-pack`` can be judged.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import extender_workload as workload

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("TOPOLVM_CACHE", pathlib.Path.home() / ".cache" / "topolvm-py"))
BIN = CACHE / "peers-v1" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def start(side: str, port: int, workdir: pathlib.Path) -> subprocess.Popen[bytes]:
    config = workdir / f"{side}.yaml"
    if side == "floor":
        argv = [sys.executable, str(pathlib.Path(__file__).resolve()), "--serve-floor", str(port)]
    elif side == "upstream":
        config.write_text(f'listen: "127.0.0.1:{port}"\ndefault-divisor: 1\n')
        argv = [str(BIN / "hypertopolvm"), "topolvm-scheduler", "--config", str(config)]
    else:
        mode = "pack" if "pack" in side else "spread"
        config.write_text(f'listen: "127.0.0.1:{port}"\ndefault-divisor: 1\nmode: {mode}\n')
        argv = [sys.executable, "-m", "topolvm.extender.cli", "--config", str(config), "--log-level", "warning"]
    # Upstream logs one access line per request on stderr; /dev/null makes that as cheap as it can be.
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_load(port: int, pattern: str, args: argparse.Namespace) -> dict[str, Any]:
    urls = f"http://127.0.0.1:{port}/predicate,http://127.0.0.1:{port}/prioritize"
    argv = [
        str(BIN / "loadgen"),
        "-urls",
        urls,
        "-bodies",
        f"{pattern},{pattern}",
        "-variants",
        str(args.variants),
        "-c",
        str(args.concurrency),
        "-d",
        f"{args.duration}s",
        "-warmup",
        "2",
    ]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=args.duration * 10 + 120)
    result: dict[str, Any] = json.loads(out.stdout)
    for target in result["targets"]:
        if target["errors"]:
            raise RuntimeError(f"{target['url']}: {target['errors']} errors, first: {target.get('first_error')}")
    return result


def memo_counts(port: int) -> tuple[float, float]:
    """(reused, decoded) Nodes of full-Node filter requests so far, from our /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = dict(re.findall(r'topolvm_extender_node_items_total\{decode="(\w+)"\} ([0-9.e+]+)', text))
    return float(found.get("reused", 0)), float(found.get("decoded", 0))


def probe_names(port: int, body: pathlib.Path) -> int:
    """HTTP status of a NodeNames predicate (does the server support nodeCacheCapable?)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predicate", data=body.read_bytes(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


FULL_SIDES = ["upstream", "ours-spread", "ours-pack", "floor"]  # full Nodes in every request: like with like
NAMES_SIDES = ["ours-names"]  # NodeNames (nodeCacheCapable): upstream has no such mode
SIDES = FULL_SIDES[:3] + NAMES_SIDES + FULL_SIDES[3:]


def serve_floor(port: int) -> None:
    """The ``floor`` side: the extender's HTTP stack and body reader, msgspec's decode of the nodes, no policy."""
    import uvicorn

    from topolvm.extender import app, wire

    async def application(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        reply = b"ok"
        if scope["method"] == "POST":
            body = await app._read_body(receive, 1 << 30, app._content_length(scope))
            if scope["path"] == "/predicate":  # the protocol makes a filter echo the Nodes it keeps: all here
                items = wire.filter_decoder.decode(body).Nodes
                kept = (items.items if items else None) or []
                reply = wire.encoder.encode(wire.FilterResult(Nodes=wire.ReplyNodeList(items=kept)))
            else:
                heads = wire.prioritize_decoder.decode(body).Nodes
                names = [h.metadata.name for h in (heads.items if heads else None) or []]
                reply = wire.encoder.encode([wire.HostPriority(name, 0) for name in names])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(reply))]})
        await send({"type": "http.response.body", "body": reply})

    uvicorn.run(
        application, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False, log_config=None
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load per side and size")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--variants", type=int, default=16, help="distinct pods/requests cycled through (even)")
    parser.add_argument("--churn", type=float, default=0.02, help="share of Nodes changed between two requests")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor side")
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return 0
    if not args.no_build:
        subprocess.run([str(ROOT / "ci" / "peers" / "build.sh")], check=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="extender-bench-"))
    results: dict[tuple[str, int], dict[str, Any]] = {}
    patterns: dict[int, tuple[str, str]] = {}
    print(
        f"# workload: {args.variants} pods rotating (own UID and request each); between two requests "
        f"{args.churn:.1%} of the Nodes changed, the rest byte-identical; Node order fixed",
        flush=True,
    )
    try:
        for size in sizes:
            full, names, steps = workload.variants(workdir, size, args.variants, args.churn)
            patterns[size] = (full, names)
            print(
                f"# {size} nodes: ExtenderArgs {pathlib.Path(full.format(0)).stat().st_size / 1e6:.1f} MB (Nodes), "
                f"{pathlib.Path(names.format(0)).stat().st_size / 1e3:.0f} kB (NodeNames); "
                f"{len(steps[0])} Nodes change per request",
                flush=True,
            )
        for side in SIDES:
            if side == "floor" and args.no_floor:
                continue
            port = free_port()
            proc = start(side, port, workdir)
            try:
                wait_ready(port, proc)
                for size in sizes:
                    full, names = patterns[size]
                    if side == "upstream":
                        status = probe_names(port, pathlib.Path(names.format(0)))
                        print(f"# upstream answers a NodeNames predicate ({size} nodes) with HTTP {status}")
                    if side == "ours-names":
                        # nodeCacheCapable: the node cache is filled by one full request (a watch in production).
                        run_load_once(port, pathlib.Path(full.format(0)))
                    before = memo_counts(port) if side.startswith("ours") else (0.0, 0.0)
                    r = results[(side, size)] = run_load(port, names if side == "ours-names" else full, args)
                    if side in ("ours-spread", "ours-pack"):
                        after = memo_counts(port)
                        reused, decoded = after[0] - before[0], after[1] - before[1]
                        r["memo_hit"] = reused / (reused + decoded) if reused + decoded else float("nan")
                    verbs = "  ".join(f"{t['url'].rsplit('/', 1)[1]} p99 {t['p99_ms']:.2f}" for t in r["targets"])
                    memo = f"  memo reuse {r['memo_hit']:.1%}" if "memo_hit" in r else ""
                    print(
                        f"{side:12s} {size:5d} nodes: {r['requests_per_s']:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms"
                        f"  p99 {r['p99_ms']:7.2f} ms  ({r['cycles']} cycles; {verbs}){memo}",
                        flush=True,
                    )
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, sizes, args)
    return 0


def run_load_once(port: int, body: pathlib.Path) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predicate",
        data=body.read_bytes(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def report(results: dict[tuple[str, int], dict[str, Any]], sizes: list[int], args: argparse.Namespace) -> None:
    print(f"\nFull Nodes in every request (kube-scheduler's default), churn {args.churn:.1%}; ratios against upstream:")
    print("| side | nodes | req/s | p50 ms | p99 ms | req/s vs upstream | p99 vs upstream | filter memo reuse |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        base = results.get(("upstream", size))
        for side in FULL_SIDES:
            r = results.get((side, size))
            if r is None:
                continue
            ratio = r["requests_per_s"] / base["requests_per_s"] if base else float("nan")
            p99 = r["p99_ms"] / base["p99_ms"] if base and base["p99_ms"] else float("nan")
            memo = f"{r['memo_hit']:.1%}" if "memo_hit" in r else "-"
            print(
                f"| {side} | {size} | {r['requests_per_s']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {ratio:.2f}x | {p99:.2f}x | {memo} |"
            )
    print(
        "\nNodeNames (nodeCacheCapable: true), ours only: upstream topolvm-scheduler does not support this mode "
        "(it needs Nodes), so there is no like-for-like baseline and no ratio. Absolute figures:"
    )
    print("| side | nodes | req/s | p50 ms | p99 ms | predicate p99 ms | prioritize p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for side in NAMES_SIDES:
            r = results.get((side, size))
            if r is None:
                continue
            p99s = {t["url"].rsplit("/", 1)[1]: t["p99_ms"] for t in r["targets"]}
            print(
                f"| {side} | {size} | {r['requests_per_s']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {p99s.get('predicate', float('nan')):.2f} | {p99s.get('prioritize', float('nan')):.2f} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
