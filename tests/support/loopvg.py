"""Real volume groups for root tests: loop devices over sparse files (or the VM's spare disks).

On this host the kernel has no device-mapper, so LVM runs with ``activation = 0`` (metadata only). Inside the
HIL VM ``TOPOLVM_DM=1`` turns activation back on, and ``TOPOLVM_TEST_PVS`` may name spare block devices to use
instead of loop devices. Every VG is uniquely named and removed afterwards, with its PVs and loop devices;
nothing a test did not create is touched.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from topolvm.lvm import command

HOST_LVM_CONFIG = "global { activation = 0 }"


def dm_available() -> bool:
    return os.environ.get("TOPOLVM_DM") == "1"


def lvm_config() -> str:
    return "" if dm_available() else HOST_LVM_CONFIG


def can_run() -> str | None:
    """None if real-LVM tests can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root to create loop devices and volume groups"
    if subprocess.run(["which", "lvm"], capture_output=True, check=False).returncode != 0:
        return "lvm2 is not installed (apt-get install lvm2)"
    return None


@dataclass
class LoopVg:
    name: str
    pvs: list[str]  # a test that detaches a loop device and attaches its file again puts the new device here
    runner: command.Runner


def _device_size(device: str) -> int:
    try:
        return int(Path(f"/sys/class/block/{Path(device).name}/size").read_text()) * 512
    except (OSError, ValueError):
        return -1


def backing_file(device: str) -> str:
    """The file behind loop ``device``, or "" if none is attached there now."""
    try:
        return Path(f"/sys/class/block/{Path(device).name}/loop/backing_file").read_text().strip()
    except OSError:
        return ""


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def loop_vg(tmp: Path, pv_sizes: tuple[int, ...] = (1 << 30, 1 << 30)) -> Iterator[LoopVg]:
    runner = command.Runner(config=lvm_config(), timeout=60)
    name = f"tlvm-{uuid.uuid4().hex[:10]}"
    loops: list[str] = []
    vg: LoopVg | None = None
    spare = [d for d in os.environ.get("TOPOLVM_TEST_PVS", "").split(",") if d]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        spare = []  # parallel workers would wipe the same disks: each makes its own loop devices
    if spare and [_device_size(d) for d in spare[: len(pv_sizes)]] != list(pv_sizes):
        spare = []  # the test's capacity arithmetic needs exactly the sizes it asked for
    try:
        if spare and len(spare) >= len(pv_sizes):
            devices = spare[: len(pv_sizes)]
            for dev in devices:
                _run(["wipefs", "-a", dev])
        else:
            devices = []
            for i, size in enumerate(pv_sizes):
                img = tmp / f"{name}-{i}.img"
                with img.open("wb") as f:
                    f.truncate(size)
                dev = _run(["losetup", "--find", "--show", str(img)])
                loops.append(dev)
                devices.append(dev)
        runner.run("pvcreate", ["-y", *devices])
        runner.run("vgcreate", ["-y", name, *devices])
        vg = LoopVg(name, devices, runner)
        yield vg
    finally:
        runner.run("vgremove", ["-ff", "-y", name], check=False)
        # Only loop devices still backed by this VG's files: a device a test detached may belong to another
        # test's VG by now (parallel workers take the first free loop device).
        ours = os.path.join(os.path.realpath(tmp), f"{name}-")
        mine = [d for d in (vg.pvs if vg is not None and loops else loops) if backing_file(d).startswith(ours)]
        if mine or (spare and not loops):
            runner.run("pvremove", ["-ff", "-y", *(mine or spare[: len(pv_sizes)])], check=False)
        for dev in mine:
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)
