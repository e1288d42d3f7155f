"""``topolvm-lvmd``: run lvmd from an upstream-format lvmd.yaml.

The thin runtime around ``LvmdService``: logging, the gRPC server, signal handling, and an optional slow
background refresh that notices changes made to the VGs outside lvmd (an added disk, a hand-made LV). Requests
refresh state themselves (after a mutation, or when it is older than --max-state-age); between them lvmd runs
no lvm command unless that timer is set.
"""

from __future__ import annotations

import argparse
import logging
import sys

from topolvm import clock, errors, process
from topolvm.core import model
from topolvm.lvm import cli as lvm_cli
from topolvm.lvm import command
from topolvm.lvmd import config as lvmd_config
from topolvm.lvmd import server
from topolvm.services import lvmd as lvmd_service

log = logging.getLogger("topolvm.lvmd")
DEFAULT_MAX_STATE_AGE = 60.0  # kubelet asks for every volume's stats once a minute (volumeStatsAggPeriod)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="topolvm-lvmd",
        description="Serve a node's LVM volume groups over gRPC (lvmd), configured by an upstream lvmd.yaml.",
    )
    p.add_argument("--config", default="/etc/topolvm/lvmd.yaml", help="lvmd.yaml path (default: %(default)s)")
    p.add_argument(
        "--refresh-interval",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="re-read LVM this often to notice changes made outside lvmd; 0 disables (default: %(default)s)",
    )
    p.add_argument(
        "--max-state-age",
        type=float,
        default=DEFAULT_MAX_STATE_AGE,
        metavar="SECONDS",
        help="a request finding the last LVM report older than this re-reads LVM first, so a failed disk shows in "
        "volume health (NodeGetVolumeHealth) within this time; at most one report per period however often "
        "kubelet asks; 0 reuses the report until the next change or refresh (default: %(default)s)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--check-config", action="store_true", help="validate the config file and exit")
    return p


def service_from_config(
    cfg: model.LvmdConfig, max_state_age: float | None = DEFAULT_MAX_STATE_AGE
) -> lvmd_service.LvmdService:
    """lvmd's service over real lvm2 as lvmd.yaml says (command prefix, --config override, timeout); embedded
    lvmd (topolvm-node --lvmd-config, all-in-one) takes the default state age."""
    runner = command.Runner(prefix=cfg.lvm_command_prefix, config=cfg.lvm_config, timeout=cfg.lvm_timeout_seconds)
    return lvmd_service.LvmdService(
        lvm=lvm_cli.LvmCli(runner), config=cfg, max_state_age=max_state_age, clock=clock.MonotonicClock()
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    process.setup_logging(args.log_level)
    try:
        cfg = lvmd_config.load(args.config)
    except errors.ConfigError as exc:
        log.error("invalid configuration: %s", exc)
        return 2
    if args.check_config:
        print(f"{args.config}: OK ({len(cfg.device_classes)} device classes)")
        return 0
    if args.max_state_age < 0 or args.refresh_interval < 0:
        log.error("--max-state-age and --refresh-interval must not be negative")
        return 2
    service = service_from_config(cfg, args.max_state_age or None)
    try:
        service.start()
    except errors.TopoLVMError as exc:
        log.error("cannot start: %s", exc)
        return 2
    for stats in service.capacity().device_classes:
        log.info("device class %s: %d bytes free of %d", stats.device_class, stats.free_bytes, stats.size_bytes)
    grpc_server = server.serve(service, cfg.socket_name)

    stop = process.stop_on_signals()
    interval = args.refresh_interval if args.refresh_interval > 0 else None
    while not process.wait(stop, interval):
        try:
            service.refresh()
        except errors.TopoLVMError as exc:
            log.warning("background refresh failed: %s", exc)
    grpc_server.stop(grace=5).wait()
    log.info("lvmd stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
