"""Command line: run pytest paths (or any command) from this source tree inside the HIL VM.

    python -m harness.run tests/contract                  # pytest -m "dm or root" in the VM
    python -m harness.run -m "" tests/hil/guest -- -x      # no marker filter, extra pytest args after --
    python -m harness.run --exec -- lvs --reportformat json
    python -m harness.run --nvme 2 --timeout 300 tests/contract/test_lvm.py
    python -m harness.run --ship ~/.cache/topolvm-py/peers-v1/bin/csi-sanity -m "" tests/hil/guest/test_csi_sanity.py
    python -m harness.run --node --memory 4096 -m "" tests/hil/node          # with the HIL node profile disk

Exit code: the in-VM command's exit code, or 3 when the VM produced no result (reason on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import node_profile, runner, vm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.run", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", help="pytest paths relative to the repository root")
    parser.add_argument("-m", "--mark", default="dm or root", help='pytest -m expression ("" for none)')
    parser.add_argument(
        "--exec",
        dest="exec_",
        action="store_true",
        help="run the arguments after -- as a plain command instead of pytest",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="in-guest command timeout, seconds")
    parser.add_argument("--nvme", type=int, default=4, help="number of emulated NVMe disks")
    parser.add_argument("--memory", type=int, default=2048, help="guest memory, MiB")
    parser.add_argument("--name", default=None, help="name of the run directory")
    parser.add_argument(
        "--ship",
        action="append",
        default=[],
        metavar="PATH",
        help="a host file or directory to ship as $TOPOLVM_HIL_FILES/<its name> (repeatable)",
    )
    parser.add_argument(
        "--node",
        action="store_true",
        help="attach the HIL node profile disk (kubelet, control plane, images; harness/node_profile.py)",
    )
    raw = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in raw:
        extra = raw[raw.index("--") + 1 :]
        raw = raw[: raw.index("--")]
    args = parser.parse_args(raw)
    config = vm.VmConfig(nvme_disks=args.nvme, memory_mib=args.memory, timeout_s=args.timeout + 180)
    files = {Path(p).name: Path(p).expanduser() for p in args.ship}
    drives = {node_profile.SERIAL: node_profile.ensure(log=True).disk} if args.node else {}
    if args.exec_:
        if not extra:
            parser.error("--exec needs a command after --")
        job = runner.Job(
            name=args.name or "exec", argv=tuple(extra), timeout_s=args.timeout, files=files, drives=drives
        )
        result = runner.run(job, config)
        print(result.run_dir / "out" / "output.log")
    else:
        if not args.paths:
            parser.error("give at least one pytest path")
        job = runner.pytest_job(
            args.paths,
            args.mark or None,
            name=args.name,
            extra_args=extra,
            timeout_s=args.timeout,
            files=files,
            drives=drives,
        )
        pytest_run = runner.run_pytest(job, config)
        result = pytest_run.run
        counts = {o: sum(c.outcome == o for c in pytest_run.cases) for o in ("passed", "failed", "skipped")}
        print(f"in-VM cases: {counts}; junit: {result.run_dir / 'out' / 'junit.xml'}")
        for case in pytest_run.failed:
            print(f"FAILED {case.nodeid}: {case.message}")
    print(f"console: {result.outcome.console}; {result.describe()}", file=sys.stderr)
    if result.problem is not None:
        print(result.console_tail(40), file=sys.stderr)
        return 3
    return result.exit_code if result.exit_code is not None else 3


if __name__ == "__main__":
    sys.exit(main())
