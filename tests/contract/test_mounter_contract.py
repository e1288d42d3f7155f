"""The ``Mounter`` port's contract: the in-memory adapter and the system tools on loop devices (root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXT4_ONLINE_RESIZE_REASON
from topolvm import errors, ports
from topolvm.mount import memory, system

MiB = 1 << 20


@dataclass
class MountWorld:
    mounter: ports.Mounter
    devices: list[str]
    grow: Callable[[str, int], None]  # make a device larger
    base: Path


@pytest.fixture(params=["memory", pytest.param("system", marks=pytest.mark.root)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MountWorld]:
    if request.param == "memory":
        mem = memory.InMemoryMounter()
        devices = ["/dev/fake0", "/dev/fake1"]
        for d in devices:
            mem.sizes[d] = 400 * MiB

        def grow_mem(device: str, size: int) -> None:
            mem.sizes[device] = size

        yield MountWorld(mem, devices, grow_mem, tmp_path)
        return
    loops: dict[str, Path] = {}
    try:
        for i in range(2):
            img = tmp_path / f"disk{i}.img"
            with img.open("wb") as f:
                f.truncate(400 * MiB)
            dev = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True, check=True)
            loops[dev.stdout.strip()] = img

        def grow_loop(device: str, size: int) -> None:
            with loops[device].open("r+b") as f:
                f.truncate(size)
            subprocess.run(["losetup", "-c", device], check=True)

        yield MountWorld(system.SystemMounter(), list(loops), grow_loop, tmp_path)
    finally:
        for target in sorted((tmp_path / "mnt").glob("*"), reverse=True) if (tmp_path / "mnt").exists() else []:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs"])
def test_format_mount_is_idempotent_and_unmount_cleans_up(world: MountWorld, fstype: str) -> None:
    target = str(world.base / "mnt" / "vol")
    dev = world.devices[0]
    assert world.mounter.mounted_from(target=target, device=dev) is None
    world.mounter.mount_filesystem(device=dev, target=target, fstype=fstype)
    world.mounter.mount_filesystem(device=dev, target=target, fstype=fstype)  # idempotent
    assert world.mounter.mounted_from(target=target, device=dev) is True
    assert world.mounter.mounted_from(target=target, device=world.devices[1]) is False
    usage = world.mounter.usage(target=target)
    assert 200 * MiB < usage.total_bytes <= 400 * MiB and usage.available_bytes <= usage.total_bytes
    with pytest.raises(errors.AlreadyExists):
        world.mounter.mount_filesystem(device=world.devices[1], target=target, fstype=fstype)
    world.mounter.unmount(target=target)
    world.mounter.unmount(target=target)  # idempotent
    assert world.mounter.mounted_from(target=target, device=dev) is None


def test_never_reformats_another_filesystem(world: MountWorld) -> None:
    target = str(world.base / "mnt" / "a")
    dev = world.devices[0]
    world.mounter.mount_filesystem(device=dev, target=target, fstype="ext4")
    world.mounter.unmount(target=target)
    with pytest.raises(errors.FailedPrecondition, match="holds a ext4 filesystem"):
        world.mounter.mount_filesystem(device=dev, target=target, fstype="xfs")
    world.mounter.mount_filesystem(device=dev, target=target, fstype="ext4")  # still there, still ext4
    world.mounter.unmount(target=target)


def test_unsupported_filesystem(world: MountWorld) -> None:
    with pytest.raises(errors.InvalidArgument):
        world.mounter.mount_filesystem(device=world.devices[0], target=str(world.base / "mnt" / "x"), fstype="ntfs")


def test_raw_block_bind_mount(world: MountWorld) -> None:
    target = str(world.base / "mnt" / "blockdev")
    dev = world.devices[1]
    world.mounter.mount_block(device=dev, target=target, read_only=True)
    world.mounter.mount_block(device=dev, target=target, read_only=True)
    assert world.mounter.mounted_from(target=target, device=dev) is True
    assert world.mounter.usage(target=target).total_bytes == 400 * MiB
    world.mounter.unmount(target=target)
    assert world.mounter.mounted_from(target=target, device=dev) is None


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
def test_online_grow(world: MountWorld, fstype: str) -> None:
    target = str(world.base / "mnt" / "grow")
    dev = world.devices[0]
    world.mounter.mount_filesystem(device=dev, target=target, fstype=fstype)
    before = world.mounter.usage(target=target).total_bytes
    world.grow(dev, 800 * MiB)
    try:
        world.mounter.resize_filesystem(device=dev, target=target)
    except errors.CommandError as exc:
        # This host's kernel refuses ext4's online-resize ioctl; the VM's real kernel must not.
        if "Permission denied to resize" in exc.stderr and os.environ.get("TOPOLVM_DM") != "1":
            world.mounter.unmount(target=target)
            pytest.skip(EXT4_ONLINE_RESIZE_REASON)
        raise
    after = world.mounter.usage(target=target).total_bytes
    assert after > before + 300 * MiB
    world.mounter.unmount(target=target)
