"""An lvmd service over in-memory LVM, started: one volume group ``vg`` and one default thick class ``ssd`` with
no spare (the set-up most service tests need); run as a module, an lvmd process over in-memory LVM."""

from __future__ import annotations

import argparse
import sys

from topolvm import process
from topolvm.core import model
from topolvm.lvm import memory as lvm_memory
from topolvm.lvmd import config as lvmd_config
from topolvm.lvmd import server
from topolvm.services import lvmd


def started(vg_bytes: int) -> lvmd.LvmdService:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [vg_bytes])
    svc = lvmd.LvmdService(
        lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    )
    svc.start()
    return svc


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.support.memory_lvmd --config lvmd.yaml --vg NAME=BYTES [--thin-pool VG/POOL=BYTES]``:
    topolvm-lvmd's gRPC service over in-memory LVM, configured by the same lvmd.yaml. The end-to-end stack runs it
    where lvm2 cannot serve: thin pools need device-mapper, which this host's kernel lacks (docs/e2e.md)."""
    parser = argparse.ArgumentParser(prog="memory_lvmd")
    parser.add_argument("--config", required=True)
    parser.add_argument("--vg", action="append", default=[], metavar="NAME=BYTES", required=True)
    parser.add_argument("--thin-pool", action="append", default=[], metavar="VG/POOL=BYTES")
    args = parser.parse_args(argv)
    process.setup_logging("info")
    cfg = lvmd_config.load(args.config)
    lvm = lvm_memory.InMemoryLvm()
    for spec in args.vg:
        name, size = spec.split("=")
        lvm.add_vg(name, [int(size)])
    for spec in args.thin_pool:
        where, size = spec.split("=")
        vg, pool = where.split("/")
        lvm.create_thin_pool(vg=vg, name=pool, size=int(size))
    service = lvmd.LvmdService(lvm=lvm, config=cfg)
    service.start()
    grpc_server = server.serve(service, cfg.socket_name)
    process.stop_on_signals().wait()
    grpc_server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
