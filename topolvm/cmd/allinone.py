"""``python -m topolvm.cmd.allinone``: the whole driver in one process, for testing and single-node demos only.

Not a production deployment. One process runs what a cluster spreads over several: lvmd's service embedded
(``LvmdService`` over the real lvm2 CLI, configured by an upstream lvmd.yaml), an in-memory Kubernetes
(``InMemoryCluster`` holding one Node and the LogicalVolumes), the node agent (the LogicalVolume reconciler on
``runtime.Reconciler`` and the capacity publisher fed by lvmd's watch), and the CSI Identity, Controller and Node
services on one unix socket. Nothing survives a restart: the LogicalVolumes live in memory, so LVs made by an
earlier run are not known to the next one, which therefore refuses to start while its device classes hold any
(remove them by hand: the in-memory cluster would hand out their names again). It is what csi-sanity runs against in the
hardware-in-the-loop VM (tests/hil/guest/test_csi_sanity.py); a real deployment runs topolvm-lvmd, the
controller and the node agent against the Kubernetes API instead.

It is a composition root above both ``topolvm.csi`` and ``topolvm.lvmd`` (the import-linter layers keep those
two independent), which is why it is not inside either package.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence

import grpc

from topolvm import clock, errors, ports, process, runtime, unix_grpc
from topolvm.cmd import common
from topolvm.csi import controller as csi_controller
from topolvm.csi import identity, node
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.kube import memory as kube_memory
from topolvm.lvmd import cli as lvmd_cli
from topolvm.lvmd import config as lvmd_config
from topolvm.mount import system
from topolvm.services import controller, events, lvmd, publish
from topolvm.services import node as node_services

log = logging.getLogger("topolvm.cmd.allinone")

SERVICE_NAMES = ("csi.v1.Identity", "csi.v1.Controller", "csi.v1.Node")
_HELP = (
    "Run the TopoLVM CSI driver (Identity, Controller, Node) with embedded lvmd and an in-memory cluster in one "
    "process, on one unix socket. FOR TESTING AND SINGLE-NODE DEMOS ONLY: volumes are tracked in memory and "
    "forgotten when the process exits."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m topolvm.cmd.allinone", description=_HELP)
    p.add_argument(
        "--csi-socket",
        default="/run/topolvm/csi-topolvm.sock",
        help="unix socket to serve CSI on (default: %(default)s)",
    )
    p.add_argument("--config", default="/etc/topolvm/lvmd.yaml", help="lvmd.yaml path (default: %(default)s)")
    p.add_argument("--node-name", default=socket.gethostname(), help="the node's name (default: the host name)")
    p.add_argument(
        "--allowed-target-prefix",
        action="append",
        dest="allowed_target_prefixes",
        metavar="PATH",
        help="directory under which NodePublish may mount (repeatable; default: /var/lib/kubelet/)",
    )
    p.add_argument(
        "--create-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest wait of a Controller call (create, delete, expand, snapshot) for the node agent before "
        "UNAVAILABLE; never past the caller's gRPC deadline (default: %(default)s)",
    )
    common.add_cgroup_argument(p)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _prefixes(raw: Sequence[str] | None) -> tuple[str, ...]:
    if not raw:
        return tuple(publish.NodeConfig(node_name="").allowed_target_prefixes)
    # A prefix is a directory: "/tmp/x" must not admit "/tmp/xy".
    return tuple(p if p.endswith("/") else p + "/" for p in raw)


class AllInOne:
    """The running pieces, started in dependency order and stopped in reverse."""

    def __init__(
        self,
        *,
        lvmd_service: lvmd.LvmdService,
        mounter: ports.Mounter,
        node_name: str,
        socket_path: str,
        allowed_target_prefixes: Sequence[str],
        create_timeout: float,
        io_limiter: ports.IoLimiter | None = None,
    ) -> None:
        self.lvmd = lvmd_service
        self.mounter = mounter
        self.node_name = node_name
        self.socket_path = socket_path
        self.allowed_target_prefixes = tuple(allowed_target_prefixes)
        self.create_timeout = create_timeout
        self.io_limiter = io_limiter
        self.cluster = kube_memory.InMemoryCluster()
        self._subscription: ports.Subscription | None = None
        self._reconciler: runtime.Reconciler | None = None
        self._waiter: runtime.Waiter | None = None
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self.lvmd.start()
        leftovers = [
            f"{lv.vg_name}/{lv.name}"
            for stats in self.lvmd.capacity().device_classes
            for lv in self.lvmd.list_lvs(device_class=stats.device_class)
        ]
        if leftovers:
            raise errors.FailedPrecondition(
                f"the device classes already hold {len(leftovers)} TopoLVM volumes ({', '.join(leftovers[:5])}"
                f"{', ...' if len(leftovers) > 5 else ''}), from an earlier run or another driver; this driver keeps "
                "volumes in memory only and cannot adopt them: remove them first (lvremove)"
            )
        self.cluster.add_node(self.node_name)
        publisher = node_services.CapacityPublisher(node_name=self.node_name, cluster=self.cluster)
        self._subscription = self.lvmd.watch(publisher)
        reconciler = node_services.LogicalVolumeReconciler(
            node_name=self.node_name, cluster=self.cluster, lvmd=self.lvmd, publisher=publisher
        )
        self._reconciler = runtime.Reconciler(self.cluster, reconciler.reconcile)
        self._reconciler.start()
        waiter = self._waiter = runtime.Waiter(self.cluster)
        system_clock = clock.SystemClock()
        controller_service = controller.ControllerService(cluster=self.cluster, clock=system_clock)
        node_service = publish.NodeVolumeService(
            config=publish.NodeConfig(node_name=self.node_name, allowed_target_prefixes=self.allowed_target_prefixes),
            lvmd=self.lvmd,
            mounter=self.mounter,
            io_limiter=self.io_limiter,
            on_health_change=events.VolumeHealthEvents(
                cluster=self.cluster,
                recorder=events.EventRecorder(
                    cluster=self.cluster, clock=system_clock, component="topolvm-node", host=self.node_name
                ),
            ),
        )

        def register(server: grpc.Server) -> None:
            csi_grpc.add_IdentityServicer_to_server(identity.IdentityServicer(controller=True), server)
            csi_grpc.add_ControllerServicer_to_server(
                csi_controller.ControllerServicer(
                    controller_service, waiter, system_clock, timeout=self.create_timeout
                ),
                server,
            )
            csi_grpc.add_NodeServicer_to_server(node.NodeServicer(node_service), server)

        self._server = unix_grpc.serve(self.socket_path, register, service_names=SERVICE_NAMES, thread_name="csi-grpc")

    def stop(self, grace: float = 5.0) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds), then the node agent; safe after a failed start."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._reconciler is not None:
            self._reconciler.stop()
            self._reconciler = None
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    process.setup_logging(args.log_level)
    try:
        cfg = lvmd_config.load(args.config)
    except errors.ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return 2
    driver = AllInOne(
        lvmd_service=lvmd_cli.service_from_config(cfg),
        mounter=system.SystemMounter(),
        node_name=args.node_name,
        socket_path=args.csi_socket,
        allowed_target_prefixes=_prefixes(args.allowed_target_prefixes),
        create_timeout=args.create_timeout,
        io_limiter=common.io_limiter(args.cgroup_root, args.kubelet_cgroup_root),
    )
    stop = process.stop_on_signals()
    try:
        driver.start()
    except errors.TopoLVMError as exc:
        log.error("cannot start: %s", exc)
        driver.stop(grace=0)
        return 2
    log.warning("all-in-one driver for testing and single-node demos: volumes are tracked in memory only")
    log.info("node %s: CSI on unix:%s", args.node_name, args.csi_socket)
    process.wait(stop)
    driver.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
