"""``topolvm-scheduler``: run the extender (upstream-compatible flags: ``--config``; default listen ``:8000``).

Usage: topolvm-scheduler [--config /etc/topolvm/scheduler.yaml] [--listen :8000] [--watch-nodes] [--watch-pods]

``--watch-nodes`` keeps node annotations fresh from the API server; needed when kube-scheduler is configured
with ``nodeCacheCapable: true`` (it then sends node names only). ``--watch-pods`` watches pending Pods and
PersistentVolumeClaims so that a reservation ends when its pod is bound or deleted or its claims have volumes,
and follows the node kube-scheduler really chose; without it reservations end only when annotations drop (a
heuristic: any drop counts) or at their TTL. One worker
process: reservations are in memory (run one extender next to each kube-scheduler; only the leader's is used).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys

import uvicorn

from topolvm import errors
from topolvm.extender import app, config

log = logging.getLogger("topolvm.extender")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="topolvm-scheduler", description="Scheduler extender for TopoLVM.")
    parser.add_argument("--config", default="", help="config file (upstream format plus mode/reservation-ttl)")
    parser.add_argument("--listen", default="", help="listen address, overrides the config file's 'listen'")
    parser.add_argument("--watch-nodes", action="store_true", help="watch Nodes via the API (nodeCacheCapable)")
    parser.add_argument(
        "--watch-pods",
        action="store_true",
        help="watch pending Pods and PVCs: end reservations at bind/deletion, follow the chosen node",
    )
    parser.add_argument("--kubeconfig", default="", help="kubeconfig for the watches (default: in-cluster)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        cfg = config.load(args.config) if args.config else config.Config()
        listen = args.listen or cfg.listen
        host, port = config.parse_listen(listen)
    except errors.ConfigError as exc:
        log.error("%s", exc)
        return 2
    application = app.App(cfg, watched_nodes=args.watch_nodes, watched_pods=args.watch_pods)
    if args.watch_nodes or args.watch_pods:
        from topolvm.extender import kube
        from topolvm.kube import client as kube_client

        try:
            cluster = kube_client.KubeCluster(kube_client.api_client(args.kubeconfig or None))
            if args.watch_nodes:
                kube.watch_nodes(application.holder, cluster)
            if args.watch_pods:
                kube.watch_pods(application.holder, cluster)
        except errors.TopoLVMError as exc:
            log.error("cannot watch the Kubernetes API: %s", exc)
            return 2
    log.info(
        "topolvm-scheduler listening on %s (mode=%s, tie-break=%s, extender-weight=%s, default-divisor=%g, "
        "divisors=%s, reservation-ttl=%gs, watch-nodes=%s, watch-pods=%s)",
        listen,
        cfg.policy.mode.value,
        cfg.policy.tie_break.value,
        cfg.extender_weight if cfg.extender_weight is not None else "unstated",
        cfg.policy.default_divisor,
        dict(cfg.policy.divisors),
        cfg.reservation_ttl,
        args.watch_nodes,
        args.watch_pods,
    )
    fast = importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None
    uvicorn.run(
        application,
        host=host or "0.0.0.0",  # noqa: S104 - upstream's ":8000" means every interface
        port=port,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if fast else "h11",
        access_log=False,
        log_config=None,
        lifespan="on",
        timeout_keep_alive=30,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
