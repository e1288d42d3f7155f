"""Fixtures for tests that run inside the HIL VM (collected only when TOPOLVM_HIL_GUEST=1).

Disks come from TOPOLVM_TEST_PVS (the VM's NVMe namespaces, ordered nvme0n1, nvme1n1, ...). Every test gets
them blank: leftover VGs, dm devices and signatures from the previous test are removed first.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from harness import faults


def _quiet(*argv: str) -> None:
    subprocess.run(list(argv), capture_output=True, check=False)


def _reset(disks: list[str]) -> None:
    for line in subprocess.run(["mount"], capture_output=True, text=True, check=False).stdout.splitlines():
        target = line.split()[2]
        if target.startswith("/mnt/hil"):
            _quiet("umount", "-l", target)
    vgs = subprocess.run(
        ["vgs", "--noheadings", "-o", "vg_name"], capture_output=True, text=True, check=False
    ).stdout.split()
    for vg in vgs:
        _quiet("vgchange", "-an", "--force", vg)
        _quiet("vgremove", "-ff", "-y", vg)
    for name in subprocess.run(["dmsetup", "ls"], capture_output=True, text=True, check=False).stdout.split():
        if name.startswith("hil-fault-"):
            _quiet("dmsetup", "remove", "--force", name)
    for disk in disks:
        _quiet("pvremove", "-ff", "-y", disk)
        _quiet("wipefs", "-a", "-q", disk)
        _quiet("dd", "if=/dev/zero", f"of={disk}", "bs=1M", "count=4", "oflag=direct", "status=none")
    _quiet("udevadm", "settle")


@pytest.fixture
def disks() -> Iterator[list[str]]:
    # By serial rather than from TOPOLVM_TEST_PVS: a re-plugged disk can come back under a new name.
    names = faults.nvme_disks() or [d for d in os.environ.get("TOPOLVM_TEST_PVS", "").split(",") if d]
    if len(names) < 2:
        pytest.fail("the HIL VM must provide at least two NVMe disks in TOPOLVM_TEST_PVS", pytrace=False)
    _reset(names)
    yield names
    _reset(names)


@pytest.fixture
def vg(disks: list[str]) -> str:
    """A VG named hilvg across the first two NVMe disks."""
    faults.run("pvcreate", "-y", disks[0], disks[1])
    faults.run("vgcreate", "-y", "hilvg", disks[0], disks[1])
    return "hilvg"
