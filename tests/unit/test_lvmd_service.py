"""LvmdService behaviour beyond the port contract: start-up checks, layouts, ownership, notifications."""

from __future__ import annotations

import pytest

from topolvm import errors
from topolvm.core import model
from topolvm.lvm import memory
from topolvm.services import lvmd

MiB = 1 << 20
GiB = 1 << 30


def service(
    *classes: model.DeviceClass, option_classes: tuple[model.LvcreateOptionClass, ...] = ()
) -> lvmd.LvmdService:
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [4 * GiB, 2 * GiB])
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig(classes, option_classes))
    svc.start()
    return svc


def test_start_fails_on_missing_vg_or_pool() -> None:
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB])
    cfg = model.LvmdConfig((model.DeviceClass("a", "other-vg"),))
    with pytest.raises(errors.ConfigError, match=r"device-classes\[0\].volume-group: volume group 'other-vg'"):
        lvmd.LvmdService(lvm=lvm, config=cfg).start()
    thin = model.DeviceClass("t", "vg", type=model.DeviceType.THIN, thin_pool=model.ThinPoolConfig("pool", 2.0))
    with pytest.raises(errors.ConfigError, match=r"thin-pool.name: thin pool vg/pool not found"):
        lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((thin,))).start()


def test_invalid_config_is_refused_at_construction() -> None:
    with pytest.raises(errors.ConfigError):
        lvmd.LvmdService(lvm=memory.InMemoryLvm(), config=model.LvmdConfig(()))


def test_raid1_class_reports_what_a_mirror_can_really_get() -> None:
    svc = service(model.DeviceClass("raid", "vg", spare_bytes=0, lvcreate_options=("--type=raid1",)))
    # Upstream reports vg_free (6 GiB); a mirror needs both images on distinct PVs: the 2 GiB PV bounds it.
    assert svc.free_bytes(device_class="raid") == 2 * GiB - 4 * MiB
    with pytest.raises(errors.InsufficientCapacity):
        svc.create_lv(name="m", device_class="raid", size_bytes=3 * GiB)
    lv = svc.create_lv(name="m", device_class="raid", size_bytes=GiB)
    assert lv.size == GiB
    assert svc.free_bytes(device_class="raid") == GiB - 8 * MiB


def test_option_class_overrides_class_options() -> None:
    mirror = model.LvcreateOptionClass("mirror", ("--type=raid1", "-m", "1"))
    svc = service(model.DeviceClass("ssd", "vg", spare_bytes=0), option_classes=(mirror,))
    with pytest.raises(errors.InsufficientCapacity):  # linear would fit 5 GiB, a mirror cannot
        svc.create_lv(name="m", device_class="ssd", size_bytes=5 * GiB, lvcreate_option_class="mirror")
    svc.create_lv(name="l", device_class="ssd", size_bytes=5 * GiB)


def test_thick_class_does_not_touch_thin_volumes() -> None:
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [4 * GiB])
    lvm.create_thin_pool(vg="vg", name="pool", size=GiB)
    thick = model.DeviceClass("thick", "vg", default=True, spare_bytes=0)
    thin = model.DeviceClass("thin", "vg", type=model.DeviceType.THIN, thin_pool=model.ThinPoolConfig("pool", 1.0))
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((thick, thin)))
    svc.start()
    svc.create_lv(name="t", device_class="thin", size_bytes=GiB)
    with pytest.raises(errors.FailedPrecondition):
        svc.remove_lv(name="t", device_class="thick")
    with pytest.raises(errors.FailedPrecondition):
        svc.remove_lv(name="pool", device_class="thick")
    with pytest.raises(errors.AlreadyExists):  # the name is taken by a volume of another class
        svc.create_lv(name="t", device_class="thick", size_bytes=GiB)
    assert [lv.name for lv in svc.list_lvs(device_class="thin")] == ["t"]
    assert svc.list_lvs(device_class="thick") == []
    assert svc.free_bytes(device_class="thin") == 0


def test_listeners_hear_changes_only_and_a_failing_listener_is_contained() -> None:
    svc = service(model.DeviceClass("ssd", "vg", spare_bytes=0))
    heard: list[int] = []

    seen = []

    def broken(cap: model.NodeCapacity) -> None:
        seen.append(cap)
        if len(seen) > 1:
            raise RuntimeError("listener bug")

    svc.watch(broken)
    svc.watch(lambda cap: heard.append(cap.device_classes[0].free_bytes))
    svc.refresh()  # nothing changed: no notification
    assert len(heard) == 1
    svc.create_lv(name="a", device_class="ssd", size_bytes=GiB)
    assert heard == [6 * GiB, 5 * GiB]
