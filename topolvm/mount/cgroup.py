"""``CgroupIoLimiter``: the ``IoLimiter`` port on cgroup v2, writing a pod cgroup's ``io.max``.

A pod's cgroup is found where kubelet makes it, under either cgroup driver and any QoS class, below kubelet's
cgroupRoot (default "/"; kind runs kubelet with "/kubelet"):

    systemd:   kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid with _ for ->.slice
    cgroupfs:  kubepods/[<qos>/]pod<uid>

kubelet normally creates the pod's cgroup before it mounts the pod's volumes; a NodePublish that comes first is
UNAVAILABLE and kubelet retries it. When the io
controller is not enabled for the pod's cgroup (no ``io.max`` file), it is enabled in each ancestor's
``cgroup.subtree_control`` from the root down, as ``systemd`` does for a unit with IOAccounting. Only the pod's
cgroup is written, never a container's: a limit there covers every container of the pod together.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from topolvm import errors
from topolvm.core import iolimits

log = logging.getLogger(__name__)

QOS = ("", "burstable", "besteffort")


def pod_cgroup_candidates(root: Path, pod_uid: str) -> list[Path]:
    """Where kubelet puts the pod's cgroup below its cgroupRoot ``root``, for both drivers and every QoS class."""
    iolimits.check_pod_uid(pod_uid)
    escaped = pod_uid.replace("-", "_")
    found = []
    for qos in QOS:
        if qos:
            found.append(root / "kubepods.slice" / f"kubepods-{qos}.slice" / f"kubepods-{qos}-pod{escaped}.slice")
            found.append(root / "kubepods" / qos / f"pod{pod_uid}")
        else:
            found.append(root / "kubepods.slice" / f"kubepods-pod{escaped}.slice")
            found.append(root / "kubepods" / f"pod{pod_uid}")
    return found


def device_numbers(device: str) -> tuple[int, int]:
    try:
        st = os.stat(device)
    except OSError as exc:
        raise errors.NotFound(f"device {device}: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise errors.InvalidArgument(f"{device} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


class CgroupIoLimiter:
    def __init__(self, root: str | Path = "/sys/fs/cgroup", kubelet_cgroup_root: str = "/") -> None:
        self.root = Path(root)
        parts = [p for p in kubelet_cgroup_root.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise errors.ConfigError(f"kubelet cgroup root {kubelet_cgroup_root!r} must not contain . or ..")
        self.pods_root = self.root.joinpath(*parts)

    @staticmethod
    def available(root: str | Path = "/sys/fs/cgroup") -> bool:
        """Whether ``root`` is a cgroup v2 hierarchy offering the io controller."""
        try:
            return "io" in (Path(root) / "cgroup.controllers").read_text().split()
        except OSError:
            return False

    def _pod_cgroup(self, pod_uid: str) -> Path | None:
        return next((p for p in pod_cgroup_candidates(self.pods_root, pod_uid) if p.is_dir()), None)

    def _enable_io(self, cgroup: Path) -> None:
        """Enable the io controller on the way down from the root to ``cgroup``."""
        chain = [p for p in (cgroup, *cgroup.parents) if p == self.root or self.root in p.parents][::-1]
        for parent in chain[:-1]:
            control = parent / "cgroup.subtree_control"
            try:
                if "io" not in control.read_text().split():
                    control.write_text("+io")
                    log.info("enabled the io controller below %s", parent)
            except OSError as exc:
                raise errors.FailedPrecondition(
                    f"cannot enable the cgroup io controller in {control}: {exc.strerror}"
                ) from None

    def set_limits(self, *, pod_uid: str, device: str, limits: Mapping[str, int]) -> None:
        cgroup = self._pod_cgroup(pod_uid)
        if cgroup is None:
            if not limits:
                return  # nothing to clear: the pod's cgroup is gone, and its limits with it
            raise errors.Unavailable(
                f"pod {pod_uid} has no cgroup under {self.pods_root} yet (kubelet's cgroupRoot is "
                "topolvm-node's --kubelet-cgroup-root); retry"
            )
        major, minor = device_numbers(device)
        io_max = cgroup / "io.max"
        if not io_max.exists():
            if not limits:
                return  # nothing to clear: the io controller was never enabled here
            self._enable_io(cgroup)
        line = iolimits.io_max_line(major, minor, limits)
        try:
            io_max.write_text(line + "\n")
        except OSError as exc:
            if exc.errno == errno.ENOENT and not limits:
                return  # the pod's cgroup went away with the pod: nothing left to clear
            raise errors.FailedPrecondition(f"cannot write {line!r} to {io_max}: {exc.strerror}") from None
        log.info("io.max of pod %s: %s", pod_uid, line)

    def get_limits(self, *, pod_uid: str, device: str) -> dict[str, int] | None:
        cgroup = self._pod_cgroup(pod_uid)
        if cgroup is None:
            return None
        major, minor = device_numbers(device)
        try:
            text = (cgroup / "io.max").read_text()
        except FileNotFoundError:
            return {}
        return iolimits.read_io_max(text, major, minor)
