"""Extender benchmark: our topolvm-scheduler against upstream's, same machine, load generator and node sets.

    .venv/bin/python bench/extender_bench.py [--sizes 100,1000,5000] [--duration 3] [--concurrency 1]

Builds the peers with ci/peers/build.sh (cached), generates Node lists shaped like what kube-scheduler sends
(~2 KB per Node: labels, annotations, conditions, addresses, nodeInfo), then for each server and size runs the
Go load generator in a closed loop: one cycle = POST /predicate then POST /prioritize with the same
ExtenderArgs, as kube-scheduler does per pod. Concurrency 1 matches kube-scheduler (one pod at a time).
Prints requests/s, p50/p99 per side and our/upstream ratios. Never run by the tests; timings are reported only.

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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("TOPOLVM_CACHE", pathlib.Path.home() / ".cache" / "topolvm-py"))
BIN = CACHE / "peers-v1" / "bin"
GiB = 1 << 30
PREFIX = "capacity.topolvm.io/"


def node(i: int) -> dict[str, Any]:
    name = f"worker-{i:05d}"
    when = "2025-01-01T00:00:00Z"
    conditions = [
        {
            "type": t,
            "status": "False",
            "lastHeartbeatTime": when,
            "lastTransitionTime": when,
            "reason": "KubeletHasSufficient" + t,
            "message": "kubelet has sufficient " + t,
        }
        for t in ("Memory", "Disk", "PID")
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "lastHeartbeatTime": when,
            "lastTransitionTime": when,
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
        }
    )
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": f"0b7a3c6e-0000-4000-8000-{i:012d}",
            "resourceVersion": str(100000 + i),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.topolvm.io/node": name,
                "node.kubernetes.io/instance-type": "m5.2xlarge",
            },
            "annotations": {
                PREFIX + "00default": str(((i * 37) % 200) * GiB + 12345),
                PREFIX + "ssd": str(((i * 11) % 50) * GiB),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"podCIDR": f"10.{i // 250}.{i % 250}.0/24", "providerID": f"aws:///us-east-1a/i-{i:017x}"},
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "7800m", "memory": "31Gi", "pods": "110", "ephemeral-storage": "95Gi"},
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": f"10.0.{i // 250}.{i % 250}"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kernelVersion": "6.1.0-18-cloud-amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.13",
                "kubeletVersion": "v1.31.0",
                "kubeProxyVersion": "v1.31.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


POD = {
    "metadata": {
        "name": "web-0",
        "namespace": "default",
        "uid": "5d0c6a6e-1111-4000-8000-000000000001",
        "annotations": {PREFIX + "00default": str(20 * GiB)},
    },
    "spec": {"containers": [{"name": "web", "resources": {"requests": {"topolvm.io/capacity": "1"}}}]},
}


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


def run_load(port: int, body: pathlib.Path, args: argparse.Namespace) -> dict[str, Any]:
    urls = f"http://127.0.0.1:{port}/predicate,http://127.0.0.1:{port}/prioritize"
    argv = [
        str(BIN / "loadgen"),
        "-urls",
        urls,
        "-bodies",
        f"{body},{body}",
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


SIDES = ["upstream", "ours-spread", "ours-pack", "ours-names", "floor"]


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
    try:
        for size in sizes:
            nodes = [node(i) for i in range(size)]
            full = workdir / f"nodes-{size}.json"
            full.write_bytes(json.dumps({"Pod": POD, "Nodes": {"items": nodes}}).encode())
            names = workdir / f"names-{size}.json"
            names.write_bytes(json.dumps({"Pod": POD, "NodeNames": [n["metadata"]["name"] for n in nodes]}).encode())
            print(
                f"# {size} nodes: ExtenderArgs {full.stat().st_size / 1e6:.1f} MB (Nodes), "
                f"{names.stat().st_size / 1e3:.0f} kB (NodeNames)",
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
                    if side == "ours-names":
                        # nodeCacheCapable: the node cache is filled by one full request (a watch in production).
                        run_load_once(port, workdir / f"nodes-{size}.json")
                        body = workdir / f"names-{size}.json"
                    else:
                        body = workdir / f"nodes-{size}.json"
                    results[(side, size)] = run_load(port, body, args)
                    r = results[(side, size)]
                    verbs = "  ".join(f"{t['url'].rsplit('/', 1)[1]} p99 {t['p99_ms']:.2f}" for t in r["targets"])
                    print(
                        f"{side:12s} {size:5d} nodes: {r['requests_per_s']:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms"
                        f"  p99 {r['p99_ms']:7.2f} ms  ({r['cycles']} cycles; {verbs})",
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
    report(results, sizes)
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


def report(results: dict[tuple[str, int], dict[str, Any]], sizes: list[int]) -> None:
    print("\n| side | nodes | req/s | p50 ms | p99 ms | req/s vs upstream | p99 vs upstream |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        base = results.get(("upstream", size))
        for side in SIDES:
            r = results.get((side, size))
            if r is None:
                continue
            ratio = r["requests_per_s"] / base["requests_per_s"] if base else float("nan")
            p99 = r["p99_ms"] / base["p99_ms"] if base and base["p99_ms"] else float("nan")
            print(
                f"| {side} | {size} | {r['requests_per_s']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {ratio:.2f}x | {p99:.2f}x |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
