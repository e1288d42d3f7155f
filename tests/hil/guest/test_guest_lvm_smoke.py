"""Smoke tests of the VM's storage stack: what the driver relies on and this host kernel cannot do.

Runs inside the HIL VM (tests/hil/test_vm_suites.py boots it). Each test uses a VG across two NVMe disks.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import faults

pytestmark = [pytest.mark.root, pytest.mark.dm]

MiB = 1024 * 1024


def lv_rows(vg: str, fields: str) -> list[dict[str, str]]:
    """All LVs of ``vg`` including hidden ones ([pool_tdata], [mirror_rimage_0], ...)."""
    report = json.loads(
        faults.run("lvs", "-a", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields, vg)
    )
    return list(report["report"][0]["lv"])


@pytest.fixture
def mountpoint() -> Iterator[Path]:
    path = Path("/mnt/hil-smoke")
    path.mkdir(parents=True, exist_ok=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def test_device_mapper_targets_load() -> None:
    faults.run("modprobe", "dm-thin-pool")
    faults.run("modprobe", "dm-raid")
    assert Path("/sys/module/dm_thin_pool").is_dir()
    targets = faults.run("dmsetup", "targets")
    for target in ("thin-pool", "thin", "raid", "striped", "error", "flakey"):
        assert f"\n{target} " in f"\n{targets}", targets


def test_thin_pool_overprovisioned_thin_lv_with_xfs(vg: str, mountpoint: Path) -> None:
    faults.run("lvcreate", "-y", "--type", "thin-pool", "-L", "256m", "-n", "pool", vg)
    # 1 GiB virtual on a 256 MiB pool: overprovisioning, as TopoLVM's thin device classes allow.
    faults.run("lvcreate", "-y", "--type", "thin", "-V", "1g", "--thinpool", "pool", "-n", "thin1", vg)
    faults.run("mkfs.xfs", "-q", f"/dev/{vg}/thin1")
    faults.run("mount", f"/dev/{vg}/thin1", str(mountpoint))
    (mountpoint / "data").write_bytes(os.urandom(8 * MiB))
    faults.run("sync")
    assert faults.run("findmnt", "-n", "-o", "FSTYPE", str(mountpoint)).strip() == "xfs"
    rows = {r["lv_name"]: r for r in lv_rows(vg, "lv_name,lv_size,data_percent,pool_lv")}
    assert int(rows["thin1"]["lv_size"]) == 1024 * MiB
    assert rows["thin1"]["pool_lv"] == "pool"
    assert float(rows["pool"]["data_percent"]) > 0


def test_thin_snapshot_keeps_point_in_time_content(vg: str, mountpoint: Path) -> None:
    faults.run("lvcreate", "-y", "--type", "thin-pool", "-L", "256m", "-n", "pool", vg)
    faults.run("lvcreate", "-y", "-V", "512m", "--thinpool", "pool", "-n", "origin", vg)  # xfs: >= 300 MiB
    faults.run("mkfs.xfs", "-q", f"/dev/{vg}/origin")
    faults.run("mount", f"/dev/{vg}/origin", str(mountpoint))
    (mountpoint / "file").write_text("before")
    faults.run("umount", str(mountpoint))
    faults.run("lvcreate", "-y", "-s", "-n", "snap", f"{vg}/origin")
    faults.run("mount", f"/dev/{vg}/origin", str(mountpoint))
    (mountpoint / "file").write_text("after")
    faults.run("umount", str(mountpoint))
    # Thin snapshots carry the activation-skip flag: -K activates anyway. Same XFS UUID: nouuid.
    faults.run("lvchange", "-ay", "-K", f"{vg}/snap")
    faults.run("mount", "-o", "nouuid,ro", f"/dev/{vg}/snap", str(mountpoint))
    assert (mountpoint / "file").read_text() == "before"
    rows = {r["lv_name"]: r for r in lv_rows(vg, "lv_name,origin,pool_lv")}
    assert rows["snap"]["origin"] == "origin"


def test_lvextend_then_resize2fs_grows_ext4(vg: str, mountpoint: Path) -> None:
    faults.run("lvcreate", "-y", "-L", "64m", "-n", "grow", vg)
    faults.run("mkfs.ext4", "-q", f"/dev/{vg}/grow")
    faults.run("mount", f"/dev/{vg}/grow", str(mountpoint))
    before = os.statvfs(mountpoint)
    faults.run("lvextend", "-L", "192m", f"{vg}/grow")
    faults.run("resize2fs", f"/dev/{vg}/grow")  # online grow of a mounted ext4
    after = os.statvfs(mountpoint)
    assert after.f_blocks * after.f_frsize > 2.5 * before.f_blocks * before.f_frsize
    assert int(lv_rows(vg, "lv_name,lv_size")[0]["lv_size"]) == 192 * MiB


def test_two_stripe_lv_spans_both_disks(vg: str, disks: list[str]) -> None:
    faults.run("lvcreate", "-y", "-i", "2", "-I", "64k", "-L", "128m", "-n", "striped", vg)
    row = lv_rows(vg, "lv_name,stripes,stripe_size,devices,segtype")[0]
    assert row["segtype"] == "striped"
    assert int(row["stripes"]) == 2
    assert int(row["stripe_size"]) == 64 * 1024
    assert disks[0] in row["devices"] and disks[1] in row["devices"], row["devices"]


def test_raid1_lv_mirrors_across_disks(vg: str, disks: list[str]) -> None:
    faults.run("lvcreate", "-y", "--type", "raid1", "-m", "1", "-L", "64m", "-n", "mirror", vg)
    rows = {r["lv_name"]: r for r in lv_rows(vg, "lv_name,segtype,devices,lv_health_status,lv_attr")}
    assert rows["mirror"]["segtype"] == "raid1"
    assert rows["mirror"]["lv_attr"][0] == "r"
    image_devices = [rows[name]["devices"] for name in ("[mirror_rimage_0]", "[mirror_rimage_1]")]
    assert disks[0] in image_devices[0] and disks[1] in image_devices[1], image_devices
    assert rows["mirror"]["lv_health_status"] == ""


def test_lvs_json_report_in_bytes(vg: str) -> None:
    faults.run("lvcreate", "-y", "-L", "32m", "-n", "plain", vg)
    faults.run("lvcreate", "-y", "-L", "32m", "-n", "tagged", "--addtag", "topolvm.io/test", vg)
    raw = faults.run(
        "lvs",
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-a",
        "-o",
        "lv_uuid,lv_name,lv_full_name,lv_path,lv_size,lv_kernel_major,lv_kernel_minor,"
        "origin,pool_lv,lv_tags,lv_attr,vg_name,data_percent,metadata_percent",
        vg,
    )
    rows = {r["lv_name"]: r for r in json.loads(raw)["report"][0]["lv"]}
    assert set(rows) == {"plain", "tagged"}
    assert rows["tagged"]["lv_tags"] == "topolvm.io/test"
    assert int(rows["plain"]["lv_size"]) == 32 * MiB
    assert rows["plain"]["lv_path"] == f"/dev/{vg}/plain"
    assert int(rows["plain"]["lv_kernel_major"]) > 0  # active, has a device node
    assert Path(rows["plain"]["lv_path"]).is_block_device()
