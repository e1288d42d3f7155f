"""Fault injection inside the HIL VM: a failing or vanished PV shows up in lvm2's reports.

These pin down what volume-health code can observe: the VG attr's partial flag (4th char 'p'), the VG's
missing-PV count, and an LV's health (lv_health_status 'partial', 9th lv_attr char 'p').
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

from harness import faults
from topolvm.clock import ManualClock
from topolvm.core import health, model
from topolvm.lvm import cli as lvm_cli
from topolvm.lvm import command
from topolvm.services import lvmd

pytestmark = [pytest.mark.root, pytest.mark.dm]


def _mirror(vg: str) -> dict[str, str]:
    return {r["lv_name"]: r for r in faults.lvs(vg)}["mirror"]


def _assert_degraded(vg: str) -> None:
    vg_row = faults.vgs(vg)[0]
    assert vg_row["vg_attr"][3] == "p", vg_row
    assert int(vg_row["vg_missing_pv_count"]) == 1, vg_row
    mirror = _mirror(vg)
    assert mirror["lv_health_status"] == "partial", mirror
    assert mirror["lv_attr"][8] == "p", mirror


def test_dm_error_under_a_pv_makes_vg_partial(disks: list[str]) -> None:
    with faults.FaultablePV(disks[0], "a") as pv_a, faults.FaultablePV(disks[1], "b") as pv_b:
        faults.run("pvcreate", "-y", pv_a.path, pv_b.path)
        faults.run("vgcreate", "-y", "faultvg", pv_a.path, pv_b.path)
        faults.run("lvcreate", "-y", "--type", "raid1", "-m", "1", "-L", "32m", "-n", "mirror", "faultvg")
        assert faults.vgs("faultvg")[0]["vg_attr"][3] == "-"
        assert _mirror("faultvg")["lv_health_status"] == ""
        # The raw disk carries no PV label (the dm mapping starts 1 MiB in), so lvm2 cannot fall back to it.
        assert subprocess.run(["pvs", disks[1]], capture_output=True, check=False).returncode != 0

        pv_b.fail()
        _assert_degraded("faultvg")

        pv_b.restore()
        faults.run("vgck", "--updatemetadata", "faultvg")
        assert faults.vgs("faultvg")[0]["vg_attr"][3] == "-"
        faults.run("vgchange", "-an", "faultvg")


def test_flaky_pv_fails_io_during_down_interval(disks: list[str]) -> None:
    with faults.FaultablePV(disks[0], "flaky") as pv:
        pv.flaky(up_seconds=0, down_seconds=60)
        read = subprocess.run(
            ["dd", f"if={pv.path}", "of=/dev/null", "bs=4k", "count=1", "iflag=direct"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert read.returncode != 0
        assert "Input/output error" in read.stderr
        pv.restore()
        faults.run("dd", f"if={pv.path}", "of=/dev/null", "bs=4k", "count=1", "iflag=direct")


def test_unplugged_nvme_disk_makes_vg_partial_until_it_returns(disks: list[str]) -> None:
    first, second = disks[-2], disks[-1]
    faults.run("pvcreate", "-y", first, second)
    faults.run("vgcreate", "-y", "plugvg", first, second)
    faults.run("lvcreate", "-y", "--type", "raid1", "-m", "1", "-L", "32m", "-n", "mirror", "plugvg")
    with faults.nvme_unplugged(second) as pulled:
        _assert_degraded("plugvg")
    # Back on the bus, under a new controller number while the raid1 LV still holds the old device open:
    # lvm2 finds the PV by its label wherever it is and the VG is complete again.
    faults.run("vgck", "--updatemetadata", "plugvg")
    assert faults.vgs("plugvg")[0]["vg_missing_pv_count"] == "0"
    assert pulled.disk in faults.run("pvs", "--noheadings", "-o", "pv_name", "-S", "vg_name=plugvg")
    faults.run("vgchange", "-an", "plugvg")


def _problems(service: lvmd.LvmdService) -> list[tuple[str, str]]:
    return [(p.status, p.reason) for p in health.problems(service.list_lvs(device_class="ssd")[0].attr)]


def _eventually(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_lvmd_reports_a_dead_disk_as_abnormal_volume_health_after_max_state_age(disks: list[str]) -> None:
    """lvmd (over real lvm2) learns of the death of a VG's only disk while nothing changed the VG once its
    state is older than ``max_state_age`` (the re-read runs in the background of the request that finds it
    old); lvm2 then reports nothing of the VG, which lvmd keeps as lost, so NodeGetVolumeHealth (core.health)
    says INACCESSIBLE instead of "no such volume". Until the age it runs no lvm command. The disk back, so is the
    VG."""
    with faults.FaultablePV(disks[0], "health") as pv:
        faults.run("pvcreate", "-y", pv.path)
        faults.run("vgcreate", "-y", "healthvg", pv.path)
        clock = ManualClock()
        cfg = model.LvmdConfig((model.DeviceClass("ssd", "healthvg", default=True, spare_bytes=0),))
        runner = command.Runner(timeout=60)
        service = lvmd.LvmdService(lvm=lvm_cli.LvmCli(runner), config=cfg, max_state_age=60, clock=clock)
        service.start()
        service.create_lv(name="vol", device_class="ssd", size_bytes=16 << 20)
        assert _problems(service) == []

        pv.fail()
        before = runner.calls
        assert _problems(service) == []  # not re-read yet
        assert runner.calls == before
        clock.advance(60)
        _eventually(lambda: _problems(service) == [("INACCESSIBLE", "VolumeGroupLost")], "the VG lost")
        assert service.free_bytes(device_class="ssd") == 0

        pv.restore()
        clock.advance(60)
        _eventually(lambda: _problems(service) == [], "the VG back")
        faults.run("vgchange", "-an", "healthvg")
