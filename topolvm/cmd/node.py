"""``topolvm-node``: the node agent and the CSI Identity and Node services of one node.

Talks to this node's lvmd over its socket (or embeds lvmd with ``--lvmd-config``), reconciles the
LogicalVolumes assigned to this node, publishes the node's capacity as annotations and metrics from lvmd's
Watch stream, and mounts volumes for kubelet.
"""

from __future__ import annotations

import argparse
import logging
import math
import socket
import sys
import threading
from collections.abc import Callable

import grpc

from topolvm import clock, constants, errors, metrics, ports, process, runtime, unix_grpc
from topolvm.cmd import common
from topolvm.core import model, quantity, resources
from topolvm.csi import identity
from topolvm.csi import node as csi_node
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.kube import cache as kube_cache
from topolvm.kube import client as kube_client
from topolvm.lvmd import cli as lvmd_cli
from topolvm.lvmd import client as lvmd_client
from topolvm.lvmd import config as lvmd_config
from topolvm.mount import system
from topolvm.services import cleanup, events, node, publish

log = logging.getLogger("topolvm.node")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="topolvm-node", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--csi-socket",
        default="/var/lib/kubelet/plugins/topolvm.io/node/csi-topolvm.sock",
        help="CSI unix socket kubelet talks to (default: %(default)s)",
    )
    p.add_argument("--node-name", default=socket.gethostname(), help="this node's name (default: the host name)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--lvmd-socket", default=constants.DEFAULT_LVMD_SOCKET, help="lvmd socket (default: %(default)s)"
    )
    source.add_argument("--lvmd-config", help="embed lvmd in this process, configured by this lvmd.yaml")
    p.add_argument(
        "--allowed-target-prefix",
        action="append",
        dest="allowed_target_prefixes",
        metavar="PATH",
        help="directory under which volumes may be mounted (repeatable; default: /var/lib/kubelet/)",
    )
    p.add_argument(
        "--ephemeral-max",
        action="append",
        default=[],
        metavar="[CLASS=]QUANTITY",
        help="largest inline ephemeral volume, for one device class or (without CLASS=) for all others "
        "(repeatable; default: 100Gi)",
    )
    p.add_argument(
        "--orphan-gc",
        choices=["off", "report", "delete"],
        default="off",
        help="find LVs whose LogicalVolume is gone (upstream #1104/#1213): report them, or delete them "
        "(default: %(default)s; run report first)",
    )
    p.add_argument("--orphan-gc-interval", type=float, default=3600.0, metavar="SECONDS", help="(default: %(default)s)")
    p.add_argument(
        "--health-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="check every volume of this node this often (at least 1), whether kubelet asks or not: changes are "
        "logged and recorded as Events on their LogicalVolumes, counts exported as topolvm_volumes_unhealthy (0: "
        "only when kubelet asks; default: %(default)s)",
    )
    p.add_argument(
        "--capacity-resync-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="besides writing this node's capacity annotations on every change lvmd reports, check them this often "
        "(at least 1) and rewrite them, with a warning in the log, if two checks in a row find them saying otherwise "
        "and unchanged in between (0: off; default: %(default)s)",
    )
    common.add_cgroup_argument(p)
    common.add_common_arguments(p)
    return p


class _Stopping(Exception):
    """The process is stopping: a periodic loop ends without writing."""


def _every(
    name: str, what: str, interval: float, stop: threading.Event, round_: Callable[[], object], *, at_start: bool
) -> threading.Thread:
    """A daemon thread running ``round_`` every ``interval`` seconds (first at once if ``at_start``) until ``stop``
    is set; a failed round is logged as ``what`` failed, and ``_Stopping`` ends the loop."""

    def loop() -> None:
        if not at_start and stop.wait(interval):
            return
        while not stop.is_set():
            try:
                round_()
            except _Stopping:
                return
            except Exception as exc:
                log.warning("%s failed: %s", what, exc)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


def start_orphan_gc(
    mode: str, interval: float, collector: cleanup.OrphanCollector, stop: threading.Event
) -> threading.Thread | None:
    if mode == "off":
        return None

    def scan() -> None:
        found = collector.collect(dry_run=mode == "report")
        log.info("orphan LV scan (%s): %d found", mode, len(found))

    return _every("orphan-gc", "orphan LV scan", interval, stop, scan, at_start=True)


def start_health_sweep(
    interval: float, volumes: publish.NodeVolumeService, gauges: metrics.VolumeHealthMetrics, stop: threading.Event
) -> threading.Thread | None:
    """At start and every ``interval`` seconds, ``NodeVolumeService.sweep_health``. lvmd answers from its state
    and re-reads LVM in the background at most once per --max-state-age however often it is asked."""
    if interval <= 0:
        return None
    return _every(
        "health-sweep", "volume health sweep", interval, stop, lambda: gauges.set(volumes.sweep_health()), at_start=True
    )


def start_capacity_resync(
    interval: float, publisher: node.CapacityPublisher, lvmd: ports.Lvmd, stop: threading.Event
) -> threading.Thread | None:
    """Every ``interval`` seconds, ``CapacityPublisher.resync`` with lvmd's capacity: a lost write (the fidelity
    replays found one, since fixed: docs/fidelity.md) is mended within about two intervals (a mismatch is
    acted on when two checks in a row see it, the annotations unchanged in between) instead of at the next
    change."""
    if interval <= 0:
        return None

    def read_capacity() -> model.NodeCapacity:
        capacity = lvmd.capacity()
        if stop.is_set():  # lvmd answered after shutdown began: write nothing
            raise _Stopping
        return capacity

    return _every(
        "capacity-resync", "capacity resync", interval, stop, lambda: publisher.resync(read_capacity), at_start=False
    )


def ephemeral_caps(values: list[str]) -> tuple[int, dict[str, int]]:
    """``--ephemeral-max`` values: (the cap for unnamed classes, caps by class)."""
    default = publish.NodeConfig(node_name="").ephemeral_max_bytes
    caps: dict[str, int] = {}
    for value in values:
        device_class, sep, amount = value.rpartition("=")
        try:
            size = quantity.to_bytes(amount)
        except errors.InvalidArgument as exc:
            raise SystemExit(f"topolvm-node: --ephemeral-max {value!r}: {exc}") from None
        if sep:
            caps[device_class] = size
        else:
            default = size
    return default, caps


def lvmd_port(args: argparse.Namespace) -> ports.Lvmd:
    if not args.lvmd_config:
        return lvmd_client.LvmdClient(args.lvmd_socket)
    service = lvmd_cli.service_from_config(lvmd_config.load(args.lvmd_config))
    service.start()
    return service


def _off_or_at_least_one(value: float) -> bool:
    """0 (off) or a finite number of seconds, at least 1"""
    return value == 0 or value >= 1


def _positive(value: float) -> bool:
    """a positive, finite number of seconds"""
    return value > 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    process.setup_logging(args.log_level)
    for flag, value, rule in (
        ("--health-interval", args.health_interval, _off_or_at_least_one),
        ("--capacity-resync-interval", args.capacity_resync_interval, _off_or_at_least_one),
        ("--orphan-gc-interval", args.orphan_gc_interval, _positive),
    ):
        if not (math.isfinite(value) and rule(value)):
            log.error("%s must be %s (got %s)", flag, rule.__doc__, value)
            return 2
    try:
        lvmd_api = lvmd_port(args)
    except errors.TopoLVMError as exc:
        log.error("cannot reach lvmd: %s", exc)
        return 2
    api = kube_client.api_client(args.kubeconfig)
    try:
        # This node's LogicalVolumes only (a field selector on spec.nodeName): one LIST and one WATCH.
        cluster = kube_cache.CachedCluster(
            kube_client.KubeCluster(api), {resources.LOGICAL_VOLUME: {resources.BY_NODE: args.node_name}}
        ).start()
        cleanup.register_node(cluster, args.node_name)
    except errors.TopoLVMError as exc:
        log.error("cannot register node %s with the Kubernetes API: %s", args.node_name, exc)
        return 2
    publisher = node.CapacityPublisher(node_name=args.node_name, cluster=cluster)
    subscriptions = [lvmd_api.watch(publisher), lvmd_api.watch(metrics.CapacityMetrics(args.node_name))]
    reconciler = node.LogicalVolumeReconciler(
        node_name=args.node_name, cluster=cluster, lvmd=lvmd_api, publisher=publisher
    )
    agent = runtime.Reconciler(cluster, reconciler.reconcile, match={resources.BY_NODE: args.node_name})
    agent.start()
    prefixes = tuple(p if p.endswith("/") else p + "/" for p in args.allowed_target_prefixes or ("/var/lib/kubelet/",))
    default_cap, caps = ephemeral_caps(args.ephemeral_max)
    # A change in a volume's health becomes an Event on its LogicalVolume, written off the CSI call's thread.
    health_events = events.VolumeHealthEvents(
        cluster=cluster,
        recorder=events.EventRecorder(
            cluster=cluster, clock=clock.SystemClock(), component="topolvm-node", host=args.node_name
        ),
    )
    event_writer = runtime.Background("health-events")
    volumes = publish.NodeVolumeService(
        config=publish.NodeConfig(
            node_name=args.node_name,
            allowed_target_prefixes=prefixes,
            ephemeral_max_bytes=default_cap,
            ephemeral_max_bytes_by_class=caps,
        ),
        lvmd=lvmd_api,
        mounter=system.SystemMounter(),
        io_limiter=common.io_limiter(args.cgroup_root, args.kubelet_cgroup_root),
        on_health_change=lambda volume_id, lv, found: event_writer.submit(lambda: health_events(volume_id, lv, found)),
        clock=clock.MonotonicClock(),
    )

    def register(server: grpc.Server) -> None:
        csi_grpc.add_IdentityServicer_to_server(identity.IdentityServicer(controller=False), server)
        csi_grpc.add_NodeServicer_to_server(csi_node.NodeServicer(volumes), server)

    server = unix_grpc.serve(
        args.csi_socket, register, service_names=("csi.v1.Identity", "csi.v1.Node"), thread_name="csi"
    )
    common.serve_metrics(args.metrics_address)
    stop_loops = threading.Event()
    orphan_gc = start_orphan_gc(
        args.orphan_gc, args.orphan_gc_interval, cleanup.OrphanCollector(cluster=cluster, lvmd=lvmd_api), stop_loops
    )
    sweep = start_health_sweep(args.health_interval, volumes, metrics.VolumeHealthMetrics(args.node_name), stop_loops)
    resync = start_capacity_resync(args.capacity_resync_interval, publisher, lvmd_api, stop_loops)
    common.wait_for_signal()
    stop_loops.set()
    server.stop(5).wait()
    for loop in (orphan_gc, sweep, resync):  # their last rounds end before the cluster below is closed
        if loop is not None:
            loop.join(10)
            if loop.is_alive():
                log.warning("%s still running at shutdown", loop.name)
    event_writer.stop()  # what the last calls and the sweep queued is written before the process ends
    agent.stop()
    for sub in subscriptions:
        sub.close()
    cluster.close()
    api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
