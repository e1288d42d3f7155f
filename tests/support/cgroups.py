"""A cgroup v2 hierarchy with the io controller, and pod cgroups laid out the way kubelet makes them.

The HIL VM mounts no cgroup filesystem, and this host binds blkio to cgroup v1, so ``io_hierarchy`` mounts a
cgroup2 filesystem of its own when /sys/fs/cgroup is not one, and says why when the io controller is not there.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

IO_REASON = "needs cgroup v2 with the io controller (this host binds blkio to cgroup v1): runs in the HIL VM"


@contextlib.contextmanager
def io_hierarchy() -> Iterator[Path | None]:
    """The root of a cgroup v2 hierarchy offering the io controller, or None if there is none here."""
    system = Path("/sys/fs/cgroup")
    if (system / "cgroup.controllers").exists():
        yield system if "io" in (system / "cgroup.controllers").read_text().split() else None
        return
    mnt = Path(tempfile.mkdtemp(prefix="cg2-", dir="/tmp"))
    mounted = subprocess.run(["mount", "-t", "cgroup2", "none", str(mnt)], capture_output=True, check=False)
    try:
        if mounted.returncode != 0:
            yield None
            return
        yield mnt if "io" in (mnt / "cgroup.controllers").read_text().split() else None
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
        mnt.rmdir()


def pod_cgroup(root: Path, pod_uid: str, *, driver: str = "systemd", qos: str = "burstable") -> Path:
    """Create the pod's cgroup where kubelet would (``qos`` "" for Guaranteed)."""
    if driver == "systemd":
        escaped = pod_uid.replace("-", "_")
        parent = root / "kubepods.slice"
        if qos:
            parent = parent / f"kubepods-{qos}.slice"
        path = parent / (f"kubepods-{qos}-pod{escaped}.slice" if qos else f"kubepods-pod{escaped}.slice")
    else:
        path = root / "kubepods" / qos / f"pod{pod_uid}" if qos else root / "kubepods" / f"pod{pod_uid}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_tree(path: Path) -> None:
    """Remove a cgroup and its descendants (deepest first); their processes must have exited."""
    if not path.exists():
        return
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        child.rmdir()
    path.rmdir()
