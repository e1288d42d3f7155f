"""``SystemMounter``: filesystems and mounts with the system's tools, argv lists only.

Never reformats: a device holding a filesystem other than the one asked for is FAILED_PRECONDITION. Mount state
is read from /proc/self/mountinfo and device identity is compared by device number, so LVM's /dev/vg/lv and
/dev/dm-N names for one device agree. A mount that fails (mkfs, mount, a refused filesystem) removes the target
and the directories it created for it, and nothing else: kubelet need not call NodeUnpublish after a failed
NodePublish, so whatever the failure leaves stays. Called by the node service (``topolvm.services.publish``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from topolvm import errors
from topolvm.core import model

log = logging.getLogger(__name__)

MKFS = {
    "ext4": ["mkfs.ext4", "-F", "-q"],
    "xfs": ["mkfs.xfs", "-q"],
    "btrfs": ["mkfs.btrfs", "-q"],
}
# xfs refuses to mount a second filesystem with the same UUID (a snapshot or clone of a mounted volume).
EXTRA_OPTIONS = {"xfs": ["nouuid"]}


def _run(argv: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C"}
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise errors.Unavailable(f"{' '.join(argv)} timed out after {timeout:g}s") from exc
    except FileNotFoundError as exc:
        raise errors.Unavailable(f"cannot run {argv[0]!r}: {exc.strerror}") from exc
    return proc


def _check(argv: list[str]) -> str:
    proc = _run(argv)
    if proc.returncode != 0:
        raise errors.CommandError(argv, proc.returncode, proc.stderr)
    return proc.stdout


def _rdev(path: str) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISBLK(st.st_mode) else None


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape")  # mountinfo escapes space, tab, newline, backslash as octal


def _mounts(target: str) -> list[tuple[int, str]]:
    """(device number, mount source) of each mount on ``target``, in mount order (proc(5) mountinfo)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if _unescape(fields[4]) != target:
            continue
        major, minor = fields[2].split(":")
        source = fields[fields.index("-") + 2] if "-" in fields else ""
        found.append((os.makedev(int(major), int(minor)), _unescape(source)))
    return found


def _create_missing(path: Path, *, leaf: str) -> list[Path]:
    """Create ``path`` (a directory, or an empty file when ``leaf`` is "file") and its missing parents; the
    paths this call created, outermost first."""
    created = [p for p in (path, *path.parents) if not p.exists()][::-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if leaf == "file":
        path.touch(exist_ok=True)
    else:
        path.mkdir(exist_ok=True)
    return created


def _remove_created(created: Sequence[Path]) -> None:
    """Undo ``_create_missing`` after a failure: innermost first, only what is still empty and not a mount point
    (rmdir and unlink refuse anything else, so nothing put there since is lost)."""
    for path in reversed(created):
        try:
            if path.is_dir():
                path.rmdir()
            elif not _mounts(str(path)):
                path.unlink()
        except OSError as exc:
            log.warning("after a failed mount, could not remove %s: %s", path, exc.strerror)
            return


class SystemMounter:
    def filesystem_of(self, device: str) -> str | None:
        proc = _run(["blkid", "-p", "-s", "TYPE", "-o", "value", "--", device])
        if proc.returncode == 2:  # nothing found: a blank device
            return None
        if proc.returncode != 0:
            raise errors.CommandError(["blkid", device], proc.returncode, proc.stderr)
        return proc.stdout.strip() or None

    def mounted_from(self, *, target: str, device: str) -> bool | None:
        mounts = _mounts(target)
        if not mounts:
            return None
        want = _rdev(device)
        if want is None:
            return False
        devno, source = mounts[-1]
        # ext4/xfs report the device's number; btrfs an anonymous one, but its source names the device; a
        # bind-mounted device node (raw block) is a devtmpfs mount whose target file is the device itself.
        return want in (devno, _rdev(source), _rdev(target))

    def mount_filesystem(
        self, *, device: str, target: str, fstype: str, options: Sequence[str] = (), read_only: bool = False
    ) -> None:
        if fstype not in MKFS:
            raise errors.InvalidArgument(f"unsupported filesystem {fstype!r}")
        created = _create_missing(Path(target), leaf="dir")
        try:
            self._format_and_mount(device, target, fstype, options, read_only)
        except BaseException:
            _remove_created(created)
            raise

    def _format_and_mount(self, device: str, target: str, fstype: str, options: Sequence[str], read_only: bool) -> None:
        current = self.mounted_from(target=target, device=device)
        if current is True:
            return
        if current is False:
            raise errors.AlreadyExists(f"{target} already has another volume mounted")
        existing = self.filesystem_of(device)
        if existing is None:
            log.info("formatting %s as %s", device, fstype)
            _check([*MKFS[fstype], "--", device])
        elif existing != fstype:
            raise errors.FailedPrecondition(f"{device} holds a {existing} filesystem, not {fstype}; not reformatting")
        opts = [*options, *EXTRA_OPTIONS.get(fstype, []), *(["ro"] if read_only else [])]
        argv = ["mount", "-t", fstype]
        if opts:
            argv += ["-o", ",".join(dict.fromkeys(opts))]
        _check([*argv, "--", device, target])

    def mount_block(self, *, device: str, target: str, read_only: bool = False) -> None:
        current = self.mounted_from(target=target, device=device)
        if current is True:
            return
        if current is False:
            raise errors.AlreadyExists(f"{target} already has another volume mounted")
        created = _create_missing(Path(target), leaf="file")
        try:
            _check(["mount", "--bind", "--", device, target])
            try:
                if read_only:
                    _check(["mount", "-o", "remount,bind,ro", "--", target])
            except BaseException:
                _run(["umount", "--", target])  # never leave a writable mount where read-only was asked for
                raise
        except BaseException:
            _remove_created(created)
            raise

    def unmount(self, *, target: str) -> None:
        while _mounts(target):  # stacked mounts: take them all down
            _check(["umount", "--", target])
        path = Path(target)
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()
        elif path.exists():
            path.unlink()

    def resize_filesystem(self, *, device: str, target: str) -> None:
        fstype = self.filesystem_of(device)
        if fstype == "ext4":
            _check(["resize2fs", "--", device])
        elif fstype == "xfs":
            _check(["xfs_growfs", "--", target])
        elif fstype == "btrfs":
            _check(["btrfs", "filesystem", "resize", "max", "--", target])
        elif fstype is not None:
            raise errors.FailedPrecondition(f"cannot grow a {fstype} filesystem")

    def usage(self, *, target: str) -> model.VolumeUsage:
        st = os.stat(target)
        if stat.S_ISBLK(st.st_mode):
            with open(target, "rb") as f:
                size = f.seek(0, os.SEEK_END)
            return model.VolumeUsage(total_bytes=size, used_bytes=0, available_bytes=size)
        vfs = os.statvfs(target)
        total = vfs.f_blocks * vfs.f_frsize
        available = vfs.f_bavail * vfs.f_frsize
        return model.VolumeUsage(
            total_bytes=total,
            used_bytes=total - vfs.f_bfree * vfs.f_frsize,
            available_bytes=available,
            total_inodes=vfs.f_files,
            used_inodes=vfs.f_files - vfs.f_ffree,
            available_inodes=vfs.f_favail,
        )
