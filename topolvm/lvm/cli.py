"""``LvmCli``: the ``Lvm`` port on the real lvm2 command line.

Every name is validated before it reaches argv (``topolvm.core.names``); a name that looks like an option can
never be read as one. Used by lvmd (``topolvm.lvmd.cli``) and by the contract tests on loop devices.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence

from topolvm import constants, errors
from topolvm.core import capacity, model, names
from topolvm.lvm import command, parse

log = logging.getLogger(__name__)
COPY_BLOCK = 4 << 20
MIN_COPY_RATE = 20 << 20  # bytes/s: a copy slower than this for its whole length is given up (Unavailable)
MIN_COPY_TIMEOUT = 600.0


def _tag_args(tags: Sequence[str]) -> list[str]:
    args: list[str] = []
    for tag in tags:
        names.check_tag(tag)
        args += ["--addtag", tag]
    return args


def _size_arg(size: int) -> str:
    capacity.check_lvm_size(size)  # lvm2's own refusal would cost a command and read as a failure of lvm
    return f"{size}b"


class LvmCli:
    def __init__(self, runner: command.Runner) -> None:
        self.runner = runner

    def report(self, *, vg_names: Sequence[str]) -> model.LvmState:
        if not vg_names:
            return model.LvmState()
        for vg in vg_names:
            names.check_vg_name(vg)
        result = self.runner.run("fullreport", [*parse.REPORT_ARGS, "--", *vg_names], check=False)
        if result.exit_code not in (0, 5):
            raise errors.LvmCommandError(self.runner.argv("fullreport", vg_names), result.exit_code, result.stderr)
        state = parse.parse_fullreport(result.stdout) if result.stdout.strip() else model.LvmState()
        if result.exit_code == 5:
            # lvm exits 5 when a named VG does not exist, still reporting the others. Any other failure of a VG
            # that is absent from the report must not pass for "VG not found".
            unexplained = [
                vg for vg in vg_names if vg not in state.vgs and f'Volume group "{vg}" not found' not in result.stderr
            ]
            if unexplained or all(vg in state.vgs for vg in vg_names):
                raise errors.LvmCommandError(self.runner.argv("fullreport", vg_names), 5, result.stderr)
        return state

    def create_lv(
        self,
        *,
        vg: str,
        name: str,
        size: int,
        tags: Sequence[str] = (),
        stripes: int | None = None,
        stripe_size: str | None = None,
        options: Sequence[str] = (),
    ) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(name)
        args = ["-n", name, "-L", _size_arg(size), "-W", "y", "-y", *_tag_args(tags)]
        if stripes:
            args += ["-i", str(stripes)]
            if stripe_size:
                names.check_stripe_size(stripe_size)
                args += ["-I", stripe_size]
        args += [*options, "--", vg]
        self.runner.run("lvcreate", args)

    def create_thin_lv(self, *, vg: str, pool: str, name: str, size: int, tags: Sequence[str] = ()) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(pool)
        names.check_lv_name(name)
        args = ["-T", f"{vg}/{pool}", "-n", name, "-V", _size_arg(size), "-y", *_tag_args(tags)]
        self.runner.run("lvcreate", args)

    def create_snapshot(
        self, *, vg: str, source: str, name: str, tags: Sequence[str] = (), read_only: bool = False
    ) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(source)
        names.check_lv_name(name)
        # Thin snapshots skip activation by default; -kn makes them activatable like any volume.
        args = ["-s", "-kn", "-n", name, "-p", "r" if read_only else "rw", *_tag_args(tags), "--", f"{vg}/{source}"]
        self.runner.run("lvcreate", args)

    def copy_lv(self, *, vg: str, source: str, name: str, cow_size: int) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(source)
        names.check_lv_name(name)
        tmp = name + constants.COPY_SNAPSHOT_SUFFIX
        names.check_lv_name(tmp)
        state = self.report(vg_names=[vg]).vgs.get(vg)
        if state is None:
            raise errors.NotFound(f"Volume group {vg!r} not found")
        src, dst = state.find_lv(source), state.find_lv(name)
        if src is None or dst is None:
            raise errors.NotFound(f"Failed to find logical volume {vg}/{source if src is None else name}")
        if dst.size < src.size:
            raise errors.InvalidArgument(f"{vg}/{name} ({dst.size} bytes) is smaller than {vg}/{source}")
        if state.find_lv(tmp) is not None:  # left by a copy that was killed: its data is of another instant
            self.runner.run("lvremove", ["-y", "--", f"{vg}/{tmp}"])
        self.runner.run("lvcreate", ["-s", "-n", tmp, "-L", _size_arg(cow_size), "-y", "--", f"{vg}/{source}"])
        try:
            _copy_device(f"/dev/{vg}/{tmp}", f"/dev/{vg}/{name}", src.size)
        finally:
            try:
                self.runner.run("lvremove", ["-y", "--", f"{vg}/{tmp}"])
            except errors.TopoLVMError as exc:  # udev may still hold it: lvmd's sweep removes it later
                log.warning("could not remove the transient snapshot %s/%s yet: %s", vg, tmp, exc)

    def change_lv(self, *, vg: str, name: str, del_tags: Sequence[str] = (), read_only: bool = False) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(name)
        args: list[str] = []
        for tag in del_tags:
            names.check_tag(tag)
            args += ["--deltag", tag]
        if read_only:
            args += ["-p", "r"]
        if args:
            self.runner.run("lvchange", [*args, "--", f"{vg}/{name}"])

    def resize_lv(self, *, vg: str, name: str, size: int) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(name)
        # lvextend, not lvresize: it refuses to shrink, so no caller bug can cut into a filesystem.
        self.runner.run("lvextend", ["-L", _size_arg(size), "--", f"{vg}/{name}"])

    def remove_lv(self, *, vg: str, name: str) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(name)
        self.runner.run("lvremove", ["-y", "--", f"{vg}/{name}"])


def _copy_device(source: str, target: str, size: int) -> None:
    """``size`` bytes from block device ``source`` to ``target`` with dd, direct IO both ways, synced."""
    timeout = max(MIN_COPY_TIMEOUT, size / MIN_COPY_RATE)
    argv = [
        "dd", f"if={source}", f"of={target}", f"bs={COPY_BLOCK}", f"count={-(-size // COPY_BLOCK)}",
        "iflag=direct", "oflag=direct", "conv=fsync,notrunc", "status=none",
    ]  # fmt: skip
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, "LC_ALL": "C"}
        )
    except subprocess.TimeoutExpired:
        raise errors.Unavailable(f"copying {source} to {target} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        # An invalidated COW snapshot (the source changed more than it could hold) reads as an IO error.
        raise errors.Unavailable(f"copying {source} to {target} failed: {proc.stderr.strip()[-500:]}")
    log.info("copied %d bytes from %s to %s in %.1fs", size, source, target, time.monotonic() - started)
