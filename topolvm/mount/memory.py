"""``InMemoryMounter``: the ``Mounter`` port without a kernel, with SystemMounter's semantics (never
reformats; idempotent mounts; ALREADY_EXISTS for a different volume on a target)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from topolvm import errors
from topolvm.core import model

FSTYPES = ("ext4", "xfs", "btrfs")


@dataclass
class Mount:
    device: str
    fstype: str  # "block" for raw block
    read_only: bool
    options: tuple[str, ...]


class InMemoryMounter:
    def __init__(self) -> None:
        self.filesystems: dict[str, str] = {}  # device -> fstype
        self.sizes: dict[str, int] = {}  # device -> bytes (set by tests; default 1 GiB)
        self.fs_sizes: dict[str, int] = {}  # device -> filesystem size
        self.mounts: dict[str, Mount] = {}

    def mounted_from(self, *, target: str, device: str) -> bool | None:
        mount = self.mounts.get(target)
        return None if mount is None else mount.device == device

    def mount_filesystem(
        self, *, device: str, target: str, fstype: str, options: Sequence[str] = (), read_only: bool = False
    ) -> None:
        if fstype not in FSTYPES:
            raise errors.InvalidArgument(f"unsupported filesystem {fstype!r}")
        current = self.mounted_from(target=target, device=device)
        if current is True:
            return
        if current is False:
            raise errors.AlreadyExists(f"{target} already has another volume mounted")
        existing = self.filesystems.get(device)
        if existing is None:
            self.filesystems[device] = fstype
            self.fs_sizes[device] = self.sizes.get(device, 1 << 30)
        elif existing != fstype:
            raise errors.FailedPrecondition(f"{device} holds a {existing} filesystem, not {fstype}; not reformatting")
        self.mounts[target] = Mount(device, fstype, read_only, tuple(options))

    def mount_block(self, *, device: str, target: str, read_only: bool = False) -> None:
        current = self.mounted_from(target=target, device=device)
        if current is True:
            return
        if current is False:
            raise errors.AlreadyExists(f"{target} already has another volume mounted")
        self.mounts[target] = Mount(device, "block", read_only, ())

    def unmount(self, *, target: str) -> None:
        self.mounts.pop(target, None)

    def resize_filesystem(self, *, device: str, target: str) -> None:
        if device in self.filesystems:
            self.fs_sizes[device] = self.sizes.get(device, 1 << 30)

    def usage(self, *, target: str) -> model.VolumeUsage:
        mount = self.mounts.get(target)
        if mount is None:
            raise errors.NotFound(f"nothing is mounted on {target}")
        if mount.fstype == "block":
            size = self.sizes.get(mount.device, 1 << 30)
            return model.VolumeUsage(size, 0, size)
        size = self.fs_sizes.get(mount.device, 1 << 30)
        return model.VolumeUsage(size, 0, size, 1000, 0, 1000)
