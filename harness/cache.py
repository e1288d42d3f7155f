"""Cache directory layout, input hashing and atomic publication for the HIL harness.

Called by ``harness.image`` (image cache) and ``harness.runner`` (run logs). Nothing here touches the VM.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """``$TOPOLVM_CACHE`` or ``~/.cache/topolvm-py``; created on demand."""
    configured = os.environ.get("TOPOLVM_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "topolvm-py"
    root.mkdir(parents=True, exist_ok=True)
    return root


def logs_root() -> Path:
    """``$TOPOLVM_HIL_LOGS`` or ``<repo>/.hil/runs``: one subdirectory per VM run, kept for reading."""
    configured = os.environ.get("TOPOLVM_HIL_LOGS")
    root = Path(configured) if configured else REPO_ROOT / ".hil" / "runs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def digest(inputs: object) -> str:
    """A stable hash of JSON-serialisable inputs (keys sorted), hex."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock, so parallel pytest workers build an image once, not twice."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``final``; rename it to ``final`` on success.

    The rename is atomic on one filesystem, so readers see either no entry or a complete one. On any
    exception the temporary directory is removed and ``final`` is left untouched.
    """
    temp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir(parents=True)
    try:
        yield temp
        if final.exists():
            shutil.rmtree(final)
        temp.rename(final)
    finally:
        if temp.exists():
            remove_tree(temp)


def remove_tree(path: Path) -> None:
    """``rm -rf`` that first unmounts anything below ``path``.

    A failed debootstrap can leave /proc, /sys or /dev mounted inside the rootfs; deleting through those
    mounts would damage the host.
    """
    resolved = str(path.resolve())
    mounts = [
        line.split()[1].replace("\\040", " ")
        for line in Path("/proc/mounts").read_text().splitlines()
        if len(line.split()) > 1
    ]
    below = sorted((m for m in mounts if m == resolved or m.startswith(resolved + "/")), reverse=True)
    for mount_point in below:
        subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)
    if any(m.startswith(resolved + "/") for m in below):
        # Lazy unmount detaches at once; never delete through a mount that is still attached.
        remaining = Path("/proc/mounts").read_text()
        if any(f" {m} " in remaining for m in below):
            raise RuntimeError(f"refusing to delete {path}: mounts remain below it")
    shutil.rmtree(path, ignore_errors=True)
