"""Fault injection for tests running inside the HIL VM: make a PV fail, flap or vanish under a VG.

Called by in-VM tests (tests/hil/guest, later the volume-health tests); needs root, device-mapper and the
standard library only. Two mechanisms:

* ``FaultablePV``: a dm-linear device over a disk, used as the PV. ``fail()`` swaps its table to dm-error
  (every I/O returns EIO), ``flaky()`` to dm-flakey, ``restore()`` back to linear. The mapping starts 1 MiB
  into the disk so the PV label exists only on the dm device: lvm2 never finds the same PV on the raw disk,
  which would otherwise hide the failure as a "duplicate PV".
* ``nvme_unplugged()``: hot-removes the emulated NVMe disk's PCI function (the disk disappears as if pulled)
  and rescans the PCI bus on exit to bring it back.

Reports: ``lvs()`` / ``vgs()`` return lvm2's JSON report rows (``--reportformat json``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from harness import agent

OFFSET_SECTORS = 2048  # 1 MiB: the raw disk's first sectors, where lvm2 looks for labels, stay blank
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,100}$")
_DISK = re.compile(r"^/dev/[A-Za-z0-9/_.-]+$")


def run(*argv: str) -> str:
    """Run a command, return stdout; raise with stderr on failure."""
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def settle() -> None:
    subprocess.run(["udevadm", "settle", "--timeout=30"], check=False, capture_output=True)


def sectors(disk: str) -> int:
    return int(run("blockdev", "--getsz", disk).strip())


class FaultablePV:
    """A dm device over ``disk`` whose table can be switched between healthy, failing and flaky."""

    def __init__(self, disk: str, name: str) -> None:
        if not _DISK.match(disk) or not _NAME.match(name):
            raise ValueError(f"bad disk {disk!r} or name {name!r}")
        self.disk = disk
        self.name = f"hil-fault-{name}"
        self.size = 0

    @property
    def path(self) -> str:
        return f"/dev/mapper/{self.name}"

    def _linear(self) -> str:
        return f"0 {self.size} linear {self.disk} {OFFSET_SECTORS}"

    def _swap(self, table: str) -> None:
        # load + resume: the kernel suspends, swaps in the inactive table and resumes, atomically for I/O.
        run("dmsetup", "load", self.name, "--table", table)
        run("dmsetup", "resume", self.name)
        settle()

    def create(self) -> FaultablePV:
        self.size = sectors(self.disk) - OFFSET_SECTORS
        run("dmsetup", "create", self.name, "--table", self._linear())
        settle()
        return self

    def fail(self) -> None:
        """Every read and write now fails with EIO, like a dead disk that is still enumerated."""
        self._swap(f"0 {self.size} error")

    def flaky(self, up_seconds: int = 0, down_seconds: int = 1) -> None:
        """dm-flakey: healthy for ``up_seconds``, then all I/O fails for ``down_seconds``, repeating."""
        self._swap(f"0 {self.size} flakey {self.disk} {OFFSET_SECTORS} {up_seconds} {down_seconds}")

    def restore(self) -> None:
        self._swap(self._linear())

    def remove(self) -> None:
        """Remove the dm device; ``--force`` first replaces the table with error if something holds it."""
        subprocess.run(["dmsetup", "remove", "--force", self.name], check=False, capture_output=True)
        settle()

    def __enter__(self) -> FaultablePV:
        return self.create()

    def __exit__(self, *_exc: object) -> None:
        self.remove()


def nvme_disks() -> list[str]:
    """``/dev/nvmeXnY`` ordered by controller serial (nvme0, nvme1, ...), which survives re-plugging.

    Names alone do not: a disk re-plugged while something still holds the old one open comes back under
    a new controller number. The guest agent orders the disks it hands to tests the same way.
    """
    return agent.nvme_namespaces()


def nvme_serial(disk: str) -> str:
    name = Path(disk).name
    if not re.fullmatch(r"nvme\d+n\d+", name):
        raise ValueError(f"not an NVMe namespace: {disk}")
    return (Path("/sys/block") / name / "device" / "serial").read_text().strip()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.1)


def _disk_with_serial(serial: str) -> str | None:
    for disk in nvme_disks():
        if nvme_serial(disk) == serial and Path(disk).exists():
            return disk
    return None


@dataclasses.dataclass
class Unplug:
    """The disk pulled by ``nvme_unplugged``; ``disk`` is its (possibly new) name once it is back."""

    serial: str
    disk: str


@contextlib.contextmanager
def nvme_unplugged(disk: str) -> Iterator[Unplug]:
    """Hot-remove the NVMe disk's PCI function for the duration of the block, rescan the bus afterwards.

    On exit the context waits for a disk with the same serial to reappear and records its name.
    """
    serial = nvme_serial(disk)
    function = (Path("/sys/block") / Path(disk).name / "device" / "device").resolve()  # the PCI device
    (function / "remove").write_text("1")
    wait_until(lambda: not Path(disk).exists(), f"{disk} is gone")
    settle()
    pulled = Unplug(serial=serial, disk=disk)
    try:
        yield pulled
    finally:
        Path("/sys/bus/pci/rescan").write_text("1")
        wait_until(lambda: _disk_with_serial(serial) is not None, f"NVMe serial {serial} is back")
        settle()
        pulled.disk = _disk_with_serial(serial) or disk


def _report(command: str, kind: str, target: str, fields: str) -> list[dict[str, str]]:
    output = run(command, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields, target)
    return list(json.loads(output)["report"][0][kind])


def lvs(vg: str, fields: str = "lv_name,lv_attr,lv_health_status,segtype,devices") -> list[dict[str, str]]:
    return _report("lvs", "lv", vg, fields)


def vgs(vg: str, fields: str = "vg_name,vg_attr,pv_count,vg_missing_pv_count") -> list[dict[str, str]]:
    return _report("vgs", "vg", vg, fields)
