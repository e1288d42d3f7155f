#!/usr/bin/env python3
"""PVC created -> Bound and pod Running on the real control plane (tests/support/cluster.py + stack.py: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kwok Nodes, csi-provisioner, our programs under their
ServiceAccounts, a loop-device VG per Node; needs root and the peers of `make peers`).

Each implementation gets a cluster of its own, built the same way (same peers, Node count, VG sizes, sidecar
arguments, manifests), one after the other in the same run:

- ``ours``, in two modes on its cluster: ``extender`` as deploy/ ships it (the webhook mutates the pod,
  kube-scheduler asks our extender, which holds capacity for pods being provisioned, and checks the
  CSIStorageCapacity csi-provisioner publishes), and ``tracking``: Storage Capacity Tracking alone (a namespace
  the webhook ignores, so kube-scheduler never calls the extender);
- ``upstream``: TopoLVM v0.41.0 (hypertopolvm: controller, node agent, lvmd; tests/support/upstream_stack.py) in
  its default mode, Storage Capacity Tracking.

Per mode, PVC+pod pairs (1 GiB each, WaitForFirstConsumer) are created in a fresh namespace — back to back (a
burst: what it measures is mostly queueing, i.e. throughput) or, with ``--rate R``, R pairs per second (below
saturation: what it measures is each claim's own latency) — and timed from each PVC's creation until a watch sees
it Bound and its pod Running (kwok's); then all are deleted and the LVs awaited gone. Prints p50/p99/max, the
throughput (pairs Bound per second from the first creation to the last Bound) and the ratios: ours in each mode
against upstream (like with like: tracking/tracking), and our two modes against each other.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import cluster as cluster_mod
from tests.support.stack import Stack
from tests.support.upstream_stack import UpstreamStack
from topolvm import constants
from topolvm.core import quantity

MODES = ("extender", "tracking")
IMPLS = ("ours", "upstream")


def pair(name: str, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    claim = {
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "topolvm-provisioner",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    pod = {
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"bench": label},
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}],
        },
    }
    return claim, pod


class Watcher(threading.Thread):
    """First time each PVC is seen Bound and each pod Running, from watches on the namespace."""

    def __init__(self, kubeconfig: str, namespace: str, kind: str) -> None:
        super().__init__(daemon=True)
        self.api = kubernetes.config.new_client_from_config(config_file=kubeconfig)
        self.namespace, self.kind = namespace, kind
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        core = kubernetes.client.CoreV1Api(self.api)
        if self.kind == "pvc":
            lister, done = core.list_namespaced_persistent_volume_claim, "Bound"
        else:
            lister, done = core.list_namespaced_pod, "Running"
        watch = kubernetes.watch.Watch()
        self.ready.set()
        while not self.stop.is_set():
            for event in watch.stream(lister, self.namespace, timeout_seconds=5, _request_timeout=10):
                obj = event["object"]
                if obj.status and obj.status.phase == done and obj.metadata.name not in self.seen:
                    self.seen[obj.metadata.name] = time.monotonic()
                if self.stop.is_set():
                    break


def run_mode(stack: Stack, mode: str, count: int, label: str, rate: float = 0.0) -> dict[str, Any]:
    cluster = stack.cluster
    ns = f"bench-{mode}"
    labels = {constants.NAMESPACE_OPT_OUT_LABEL: constants.NAMESPACE_OPT_OUT_VALUE} if mode == "tracking" else {}
    code, reply = cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns, "labels": labels}})
    assert code == 201, reply
    bound, running = Watcher(cluster.kubeconfig, ns, "pvc"), Watcher(cluster.kubeconfig, ns, "pod")
    for watcher in (bound, running):
        watcher.start()
        watcher.ready.wait()
    time.sleep(1)  # the watches are open
    created: dict[str, float] = {}
    start = time.monotonic()
    for i in range(count):
        name = f"v{i:04d}"
        claim, pod = pair(name, label)
        if rate > 0:
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
        created[name] = time.monotonic()
        code, reply = cluster.request("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", claim)
        assert code == 201, reply
        code, reply = cluster.request("POST", f"/api/v1/namespaces/{ns}/pods", pod)
        assert code == 201, reply
    cluster.wait_for(
        lambda: len(bound.seen) == count and len(running.seen) == count,
        f"{count} PVCs Bound and pods Running ({mode})",
        timeout=60 + count * 2,
        interval=0.5,
    )
    for watcher in (bound, running):
        watcher.stop.set()
    to_bound = sorted(bound.seen[n] - created[n] for n in created)
    to_running = sorted(running.seen[n] - created[n] for n in created)
    span = max(bound.seen.values()) - min(created.values())
    # clean up: pods, then claims (the provisioner deletes the volumes); wait until every LV is gone
    for kind in ("pods", "persistentvolumeclaims"):
        cluster.request("DELETE", f"/api/v1/namespaces/{ns}/{kind}")
    cluster.wait_for(
        lambda: not (cluster.get("/apis/topolvm.io/v1/logicalvolumes") or {}).get("items"),
        "every LogicalVolume to go",
        timeout=60 + count,
        interval=0.5,
    )
    return {
        "mode": mode,
        "pvcs": count,
        "bound_p50": statistics.median(to_bound),
        "bound_p99": to_bound[min(len(to_bound) - 1, int(len(to_bound) * 0.99))],
        "bound_max": to_bound[-1],
        "running_p50": statistics.median(to_running),
        "running_p99": to_running[min(len(to_running) - 1, int(len(to_running) * 0.99))],
        "per_second": count / span,
    }


def run_implementation(impl: str, args: argparse.Namespace, vg_bytes: int) -> list[dict[str, Any]]:
    """A cluster of its own for ``impl``: its Nodes, then each of its modes (upstream: capacity tracking)."""
    url = f"http://127.0.0.1:{cluster_mod.free_port()}"
    modes = [m for m in args.modes if impl == "ours" or m == "tracking"]
    results = []
    with contextlib.ExitStack() as cleanup:
        if args.keep_logs:
            work = str(Path(args.keep_logs) / impl)
            Path(work).mkdir(parents=True, exist_ok=False)
        else:
            work = cleanup.enter_context(tempfile.TemporaryDirectory(prefix=f"tlvm-e2e-bench-{impl}-", dir="/tmp"))
        cluster = cluster_mod.Cluster(workdir=work, extender_url=url, verbosity=1)
        cluster.start()
        stack = Stack(cluster) if impl == "ours" else UpstreamStack(cluster)
        try:
            stack.start()
            started = time.monotonic()
            for i in range(args.nodes):
                stack.add_node(f"bench-n{i:03d}", (vg_bytes,), labels={"bench": "yes"})
            print(f"{impl}: {args.nodes} Nodes ready in {time.monotonic() - started:.1f} s", flush=True)
            for mode in modes:
                result = {"impl": impl, "rate": args.rate, **run_mode(stack, mode, args.pvcs, "yes", args.rate)}
                results.append(result)
                print(
                    f"{impl:8s} {mode:9s} {args.pvcs} PVCs: Bound p50 {result['bound_p50']:.2f} s, p99 "
                    f"{result['bound_p99']:.2f} s, max {result['bound_max']:.2f} s; pod Running p50 "
                    f"{result['running_p50']:.2f} s, p99 {result['running_p99']:.2f} s; "
                    f"{result['per_second']:.1f} PVCs Bound/s",
                    flush=True,
                )
        finally:
            stack.stop()
            cluster.stop()
    return results


def ratio(base: dict[str, Any], other: dict[str, Any], what: str) -> str:
    return (
        f"{what}: Bound p50 {other['bound_p50'] / base['bound_p50']:.2f}x, p99 "
        f"{other['bound_p99'] / base['bound_p99']:.2f}x (lower is faster); throughput "
        f"{other['per_second'] / base['per_second']:.2f}x (higher is more)"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=20, help="kwok Nodes, each with its VG (default: 20)")
    p.add_argument("--pvcs", type=int, default=200, help="PVC+pod pairs per mode (default: 200)")
    p.add_argument("--vg-size", default="24Gi", help="each Node's VG (default: 24Gi, sparse)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="our modes (default: both)")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS), help="(default: ours upstream)")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="PER_SECOND",
        help="create this many PVC+pod pairs per second; 0 creates them back to back (default: 0)",
    )
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    p.add_argument(
        "--keep-logs",
        metavar="DIR",
        help="run each implementation's cluster in DIR/IMPL and keep its logs (default: a temporary directory)",
    )
    args = p.parse_args()
    if args.rate < 0:
        p.error("--rate must not be negative")
    vg_bytes = quantity.to_bytes(args.vg_size)
    if args.pvcs > args.nodes * (vg_bytes // (1 << 30) - 1):
        p.error(f"--pvcs {args.pvcs} do not fit {args.nodes} VGs of {args.vg_size}")
    results = [r for impl in args.impls for r in run_implementation(impl, args, vg_bytes)]
    found = {(r["impl"], r["mode"]): r for r in results}
    upstream = found.get(("upstream", "tracking"))
    for mode in MODES:
        ours = found.get(("ours", mode))
        if ours and upstream:
            print(ratio(upstream, ours, f"ours ({mode}) / upstream (tracking)"))
    if ("ours", "extender") in found and ("ours", "tracking") in found:
        print(ratio(found[("ours", "tracking")], found[("ours", "extender")], "ours: extender / tracking"))
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
