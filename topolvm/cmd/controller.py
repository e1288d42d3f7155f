"""``topolvm-controller``: CSI Identity and Controller services, node cleanup, the stranded volume sweep.

CreateVolume records LogicalVolumes in the Kubernetes API and waits on a watch for the node agent's answer;
a second watch, on Nodes, deletes the TopoLVM claims and releases the LogicalVolumes of deleted nodes (the
``topolvm.io/node`` finalizer; ``topolvm.services.cleanup``). Every ``--stranded-volume-sweep-interval`` it
deletes LogicalVolumes whose claim was deleted before a PV was made for it (``cleanup.StrandedVolumeSweeper``).

Two replicas may run at once (deploy/manifests/controller.yaml): there is no leader election. Both serve CSI
calls, which reach them only from the sidecars' elected leaders, and both run node cleanup, which is idempotent
and tolerates the other replica's writes; so does the sweep.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

import grpc
import prometheus_client

from topolvm import clock, constants, errors, process, runtime, unix_grpc
from topolvm.cmd import common
from topolvm.core import resources
from topolvm.csi import controller as csi_controller
from topolvm.csi import identity
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.kube import cache as kube_cache
from topolvm.kube import client as kube_client
from topolvm.services import cleanup, controller

log = logging.getLogger("topolvm.controller")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="topolvm-controller", description=__doc__.split("\n\n")[0])
    p.add_argument("--csi-socket", default=constants.DEFAULT_CSI_SOCKET, help="CSI unix socket (default: %(default)s)")
    p.add_argument(
        "--create-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest wait of a Controller call (create, delete, expand, snapshot) for the node agent before "
        "UNAVAILABLE; never past the caller's gRPC deadline (default: %(default)s)",
    )
    p.add_argument(
        "--stranded-volume-sweep-interval",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how often to look for LogicalVolumes that CreateVolume never answered with and whose claim was "
        "deleted before a PV was made for it (upstream #1104), and delete them; volumes named without the "
        "claim's whole UID (--volume-name-uuid-length) are never swept; 0 turns the sweep off (default: %(default)s)",
    )
    p.add_argument(
        "--stranded-volume-grace",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how old a LogicalVolume must be before the sweep may delete it (default: %(default)s)",
    )
    common.add_common_arguments(p)
    return p


SWEPT = prometheus_client.Counter(
    "topolvm_controller_stranded_logical_volumes_deleted_total",
    "LogicalVolumes deleted because CreateVolume never answered with them, their claim was gone and no "
    "PersistentVolume named them",
)
SWEEP_ERRORS = prometheus_client.Counter(
    "topolvm_controller_stranded_volume_sweep_errors_total", "Stranded volume sweeps that failed"
)
SWEEP_SUCCESS = prometheus_client.Gauge(
    "topolvm_controller_stranded_volume_sweep_last_success_timestamp_seconds",
    "When the stranded volume sweep last finished without an error (Unix time)",
)


def start_sweep(sweeper: cleanup.StrandedVolumeSweeper, interval: float, stop: threading.Event) -> None:
    if interval <= 0:
        return

    def loop() -> None:
        while not stop.wait(interval):
            try:
                SWEPT.inc(len(sweeper.sweep()))
                SWEEP_SUCCESS.set_to_current_time()
            except errors.TopoLVMError as exc:
                SWEEP_ERRORS.inc()
                log.warning("stranded LogicalVolume sweep failed, next in %.0f s: %s", interval, exc)
            except Exception:  # a bug must not end the sweep for the life of the process unseen
                SWEEP_ERRORS.inc()
                log.exception("stranded LogicalVolume sweep failed, next in %.0f s", interval)

    threading.Thread(target=loop, name="stranded-sweep", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    process.setup_logging(args.log_level)
    api = kube_client.api_client(args.kubeconfig)
    try:
        # One LIST and one WATCH each for LogicalVolumes and Nodes; every read of them is served from the cache.
        # PVCs and StorageClasses are read from the API server only when a Node is deleted (a rare event): an
        # informer would hold every claim of the cluster in memory for it.
        cluster = kube_cache.CachedCluster(
            kube_client.KubeCluster(api), {resources.LOGICAL_VOLUME: None, resources.NODE: None}
        ).start()
    except errors.TopoLVMError as exc:
        log.error("cannot read the Kubernetes API: %s", exc)
        return 2
    system_clock = clock.SystemClock()
    service = controller.ControllerService(cluster=cluster, clock=system_clock)
    waiter = runtime.Waiter(cluster)
    janitor = runtime.Reconciler(cluster, cleanup.NodeCleanup(cluster=cluster).reconcile, kind=resources.NODE)
    janitor.start()
    stop_sweep = threading.Event()
    sweeper = cleanup.StrandedVolumeSweeper(cluster=cluster, clock=system_clock, grace=args.stranded_volume_grace)
    start_sweep(sweeper, args.stranded_volume_sweep_interval, stop_sweep)

    def register(server: grpc.Server) -> None:
        csi_grpc.add_IdentityServicer_to_server(identity.IdentityServicer(controller=True), server)
        csi_grpc.add_ControllerServicer_to_server(
            csi_controller.ControllerServicer(service, waiter, system_clock, timeout=args.create_timeout), server
        )

    server = unix_grpc.serve(
        args.csi_socket, register, service_names=("csi.v1.Identity", "csi.v1.Controller"), thread_name="csi"
    )
    common.serve_metrics(args.metrics_address)
    common.wait_for_signal()
    server.stop(5).wait()
    stop_sweep.set()
    janitor.stop()
    waiter.close()
    cluster.close()
    api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
