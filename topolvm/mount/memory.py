"""``InMemoryMounter`` and ``InMemoryIoLimiter``: the ``Mounter`` and ``IoLimiter`` ports without a kernel.

The mounter has SystemMounter's semantics (never reformats; idempotent mounts; ALREADY_EXISTS for a different
volume on a target; a failed mount removes the target it created and nothing else; mkfs.xfs refuses devices
under 300 MB).

``paths`` stands for the targets that exist on disk (tests add one to play kubelet creating it first);
``fail_next`` injects a failure at one step of the next mount (mkfs or mount) to reach the error paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from topolvm import errors
from topolvm.core import model
from topolvm.core.iolimits import check_pod_uid

FSTYPES = ("ext4", "xfs", "btrfs")
XFS_MINIMUM = 300_000_000  # mkfs.xfs: "Filesystem must be larger than 300MB."
Step = Literal["mkfs", "mount"]


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
        self.paths: set[str] = set()  # targets that exist (directories, or files for raw block)
        self._faults: dict[Step, errors.TopoLVMError] = {}

    def fail_next(self, step: Step, error: errors.TopoLVMError) -> None:
        """Fault injection: the next mount that reaches ``step`` fails with ``error`` (once)."""
        self._faults[step] = error

    def _step(self, step: Step) -> None:
        fault = self._faults.pop(step, None)
        if fault is not None:
            raise fault

    def mounted_from(self, *, target: str, device: str) -> bool | None:
        mount = self.mounts.get(target)
        return None if mount is None else mount.device == device

    def mount_filesystem(
        self, *, device: str, target: str, fstype: str, options: Sequence[str] = (), read_only: bool = False
    ) -> None:
        if fstype not in FSTYPES:
            raise errors.InvalidArgument(f"unsupported filesystem {fstype!r}")
        created = target not in self.paths
        self.paths.add(target)
        try:
            self._format_and_mount(device, target, fstype, options, read_only)
        except errors.TopoLVMError:
            if created:
                self.paths.discard(target)
            raise

    def _format_and_mount(self, device: str, target: str, fstype: str, options: Sequence[str], read_only: bool) -> None:
        current = self.mounted_from(target=target, device=device)
        if current is True:
            return
        if current is False:
            raise errors.AlreadyExists(f"{target} already has another volume mounted")
        existing = self.filesystems.get(device)
        if existing is None:
            self._step("mkfs")
            size = self.sizes.get(device, 1 << 30)
            if fstype == "xfs" and size < XFS_MINIMUM:
                raise errors.CommandError(["mkfs.xfs", "-q", "--", device], 1, "Filesystem must be larger than 300MB.")
            self.filesystems[device] = fstype
            self.fs_sizes[device] = size
        elif existing != fstype:
            raise errors.FailedPrecondition(f"{device} holds a {existing} filesystem, not {fstype}; not reformatting")
        self._step("mount")
        self.mounts[target] = Mount(device, fstype, read_only, tuple(options))

    def mount_block(self, *, device: str, target: str, read_only: bool = False) -> None:
        current = self.mounted_from(target=target, device=device)
        if current is True:
            return
        if current is False:
            raise errors.AlreadyExists(f"{target} already has another volume mounted")
        created = target not in self.paths
        self.paths.add(target)
        try:
            self._step("mount")
        except errors.TopoLVMError:
            if created:
                self.paths.discard(target)
            raise
        self.mounts[target] = Mount(device, "block", read_only, ())

    def unmount(self, *, target: str) -> None:
        self.mounts.pop(target, None)
        self.paths.discard(target)  # as SystemMounter: the target goes with the mount

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


class InMemoryIoLimiter:
    """The ``IoLimiter`` port without cgroups: pods are added by tests (kubelet making the pod's cgroup), and
    ``io_controller=False`` plays a node whose io controller cannot be enabled."""

    def __init__(self, *, io_controller: bool = True) -> None:
        self.io_controller = io_controller
        self.pods: dict[str, dict[str, dict[str, int]]] = {}  # pod UID -> device -> limits

    def add_pod(self, pod_uid: str) -> None:
        self.pods.setdefault(check_pod_uid(pod_uid), {})

    def set_limits(self, *, pod_uid: str, device: str, limits: Mapping[str, int]) -> None:
        devices = self.pods.get(check_pod_uid(pod_uid))
        if devices is None:
            if not limits:
                return
            raise errors.Unavailable(f"pod {pod_uid} has no cgroup yet; retry")
        if not self.io_controller:
            if not limits:
                return
            raise errors.FailedPrecondition("cannot enable the cgroup io controller")
        if limits:
            devices[device] = dict(limits)
        else:
            devices.pop(device, None)

    def get_limits(self, *, pod_uid: str, device: str) -> dict[str, int] | None:
        devices = self.pods.get(check_pod_uid(pod_uid))
        return None if devices is None else dict(devices.get(device, {}))
