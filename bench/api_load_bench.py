#!/usr/bin/env python3
"""API requests per provisioned volume on a real kube-apiserver: informer caches (as the commands run now) vs
a bare client per component (the wiring before the caches), at 20 and 200 nodes; and requests per webhook
admission.

For each node count: a local control plane (tests/support/controlplane.py, built by ci/peers/build.sh), N Nodes,
then per mode the controller (service, Waiter, node cleanup) and N node agents (LogicalVolume reconciler on a
work queue, capacity publisher, in-memory lvmd) in this process, each with its own API client. Once the set-up
has settled, K volumes are created (spread over the nodes, ``--parallel`` at a time) until ready, then deleted
until gone. Requests are counted by the API server (``apiserver_request_total``: before and after, set-up
subtracted) and by the clients (``KubeCluster.requests``). Prints requests per PVC per mode and cached/direct.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import api_load, controlplane, peers

Counts = api_load.Counts


def per(counts: Counts, n: int) -> float:
    return sum(counts.values()) / n


def split_watches(counts: Counts) -> tuple[Counts, int]:
    """(every request but WATCH, the WATCHes). A watch is re-opened every 60 s whatever happens, so WATCHes count
    seconds of the run, not volumes: they are shown apart."""
    watches = sum(v for k, v in counts.items() if k.startswith("WATCH "))
    return collections.Counter({k: v for k, v in counts.items() if not k.startswith("WATCH ")}), watches


def breakdown(counts: Counts, n: int, top: int = 6, digits: int = 1) -> str:
    return ", ".join(f"{k} {v / n:.{digits}f}" for k, v in counts.most_common(top))


def measure_volumes(plane: controlplane.ControlPlane, nodes: int, mode: str, volumes: int, parallel: int) -> dict:
    names = [f"{mode}-n{i:03d}" for i in range(nodes)]
    api_load.add_nodes(plane.kubeconfig, names)
    start = api_load.settle(plane)
    started = time.monotonic()
    with api_load.fleet_running(plane.kubeconfig, names, mode) as fleet:
        threads = threading.active_count()
        set_up = api_load.settle(plane)
        set_up_seconds = time.monotonic() - started
        clients_before = fleet.client_counts()
        began = time.monotonic()
        api_load.provision(fleet, volumes, parallel=parallel, prefix=f"{mode}{nodes}")
        done = api_load.settle(plane)
        seconds = time.monotonic() - began
        clients = api_load.delta(fleet.client_counts(), clients_before)
        api_load.check_no_failures(fleet)
    return {
        "set_up": api_load.delta(set_up, start),
        "server": api_load.delta(done, set_up),
        "clients": clients,
        "seconds": seconds,
        "set_up_seconds": set_up_seconds,
        "threads": threads,
    }


def measure_webhook(plane: controlplane.ControlPlane, mode: str, admissions: int) -> dict:
    namespace = f"bench-{mode}"
    claims = [f"claim-{i}" for i in range(admissions)]
    api_load.add_claims(plane.kubeconfig, namespace, claims)
    client = api_load.webhook_client(plane.kubeconfig, mode)
    try:
        before = api_load.settle(plane)
        for i in range(admissions):
            pair = [claims[i], claims[(i + 1) % admissions]]
            api_load.admit(client, api_load.pod_request(namespace, f"p{i}", pair))
        existing = api_load.delta(api_load.settle(plane), before)
        # Each pod created right after its claim: the cache may not have it yet (then one GET confirms it).
        gets_before = collections.Counter(client.kube.requests)
        for i in range(admissions):
            api_load.add_claims(plane.kubeconfig, namespace, [f"fresh-{i}"])
            api_load.admit(client, api_load.pod_request(namespace, f"f{i}", [f"fresh-{i}"]))
        fresh = api_load.delta(collections.Counter(client.kube.requests), gets_before)
    finally:
        client.close()
    return {"existing": existing, "fresh": fresh}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, nargs="+", default=[20, 200], help="node counts (default: 20 200)")
    p.add_argument("--volumes", type=int, default=20, help="volumes provisioned per run (default: 20)")
    p.add_argument("--parallel", type=int, default=4, help="concurrent CreateVolume/DeleteVolume (default: 4)")
    p.add_argument("--admissions", type=int, default=20, help="webhook admissions per mode (default: 20)")
    args = p.parse_args()
    found = peers.find_binaries()
    if isinstance(found, str):
        print(f"cannot start a control plane: {found}", file=sys.stderr)
        return 2
    print(f"{args.volumes} volumes per run (1 GiB, {args.parallel} in parallel), each created until ready and deleted")
    print("until gone; requests counted by the API server (and, in brackets, by the components' clients)\n")
    hooks: dict[str, dict[str, Counts]] = {}
    for nodes in args.nodes:
        with controlplane.ControlPlane(found) as plane:
            plane.install_crds()
            results = {
                mode: measure_volumes(plane, nodes, mode, args.volumes, args.parallel) for mode in api_load.MODES
            }
            if nodes == args.nodes[-1]:
                hooks = {mode: measure_webhook(plane, mode, args.admissions) for mode in api_load.MODES}
        print(f"== {nodes} nodes")
        for mode, r in results.items():
            server, watches = split_watches(r["server"])
            clients, _ = split_watches(r["clients"])
            print(
                f"  {mode:7s} requests/PVC {per(server, args.volumes):8.1f}  [{per(clients, args.volumes):8.1f}]"
                f"  run {r['seconds']:.1f}s (+{watches} watch renewals)  set-up {sum(r['set_up'].values())} "
                f"requests ({r['set_up_seconds']:.1f}s, {r['threads']} threads)"
            )
            print(f"          per PVC: {breakdown(server, args.volumes)}")
        direct, cached = (split_watches(results[mode]["server"])[0] for mode in ("direct", "cached"))
        print(f"  cached/direct requests per PVC: {per(cached, 1) / max(1.0, per(direct, 1)):.3f}\n")
    print(f"== webhook, {args.admissions} admissions of pods with two existing claims")
    for mode, h in hooks.items():
        fresh = h["fresh"]
        print(
            f"  {mode:7s} requests/admission {per(h['existing'], args.admissions):5.2f}"
            f"  ({breakdown(h['existing'], args.admissions)});  claim created just before the pod (client count): "
            f"{per(fresh, args.admissions):.2f} ({breakdown(fresh, args.admissions, digits=2)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
