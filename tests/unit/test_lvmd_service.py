"""LvmdService behaviour beyond the port contract: start-up checks, layouts, ownership, notifications."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from topolvm import errors
from topolvm.clock import ManualClock
from topolvm.core import health, model
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


class FlakyReportLvm(memory.InMemoryLvm):
    """Reports fail while ``fail_reports`` is positive (a fullreport timing out, say)."""

    fail_reports = 0

    def report(self, *, vg_names: Sequence[str]) -> model.LvmState:
        if self.fail_reports:
            self.fail_reports -= 1
            raise errors.Unavailable("lvm fullreport timed out")
        return super().report(vg_names=vg_names)


def test_a_failed_refresh_is_caught_up_before_the_next_decision() -> None:
    lvm = FlakyReportLvm()
    lvm.add_vg("vg", [GiB])
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),)))
    svc.start()
    lvm.fail_reports = 1
    with pytest.raises(errors.Unavailable):  # lvcreate worked, the report after it did not
        svc.create_lv(name="a", device_class="ssd", size_bytes=8 * MiB)
    # A retry must see the LV (not run lvcreate again and fail), and a remove must really remove it.
    assert svc.create_lv(name="a", device_class="ssd", size_bytes=8 * MiB).size == 8 * MiB
    svc.remove_lv(name="a", device_class="ssd")
    assert lvm.report(vg_names=["vg"]).vgs["vg"].lvs == ()


def test_already_exists_from_lvm_is_rechecked_against_fresh_state() -> None:
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB])
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),)))
    svc.start()
    # Another lvmd call path (a lost reply, say) made the LV behind this service's back.
    lvm.create_lv(vg="vg", name="a", size=8 * MiB, tags=["topolvm.io/managed"])
    assert svc.create_lv(name="a", device_class="ssd", size_bytes=8 * MiB).size == 8 * MiB


def test_missing_pvs_report_no_capacity_and_refuse_allocation() -> None:
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB, GiB])
    lvm.mark_pv_missing("vg", 1)
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),)))
    svc.start()
    assert svc.free_bytes(device_class="ssd") == 0
    with pytest.raises(errors.FailedPrecondition, match="missing PVs"):
        svc.create_lv(name="a", device_class="ssd", size_bytes=8 * MiB)


def test_manage_untagged_lvs_opt_in() -> None:
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB])
    lvm.create_lv(vg="vg", name="legacy", size=8 * MiB)
    cfg = model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),), manage_untagged_lvs=True)
    svc = lvmd.LvmdService(lvm=lvm, config=cfg)
    svc.start()
    assert [lv.name for lv in svc.list_lvs(device_class="ssd")] == ["legacy"]
    svc.remove_lv(name="legacy", device_class="ssd")
    assert lvm.report(vg_names=["vg"]).vgs["vg"].lvs == ()


def test_resize_uses_the_lvs_own_layout() -> None:
    mirror = model.LvcreateOptionClass("mirror", ("--type=raid1",))
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB, 512 * MiB])
    svc = lvmd.LvmdService(
        lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),), (mirror,))
    )
    svc.start()
    svc.create_lv(name="m", device_class="ssd", size_bytes=400 * MiB, lvcreate_option_class="mirror")
    # Linear growth would fit in the big PV; a mirror must grow on both PVs, and the small one is nearly full.
    with pytest.raises(errors.InsufficientCapacity):
        svc.resize_lv(name="m", device_class="ssd", size_bytes=600 * MiB)
    assert svc.resize_lv(name="m", device_class="ssd", size_bytes=500 * MiB).size == 500 * MiB


def test_snapshot_retry_finishes_an_interrupted_grow() -> None:
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB])
    lvm.create_thin_pool(vg="vg", name="pool", size=512 * MiB)
    thin = model.DeviceClass("thin", "vg", type=model.DeviceType.THIN, thin_pool=model.ThinPoolConfig("pool", 4.0))
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((thin,)))
    svc.start()
    svc.create_lv(name="src", device_class="thin", size_bytes=100 * MiB)
    # A first attempt made the snapshot but died before growing it to the requested size.
    lvm.create_snapshot(vg="vg", source="src", name="snap", tags=["topolvm.io/managed"])
    snap = svc.create_lv_snapshot(name="snap", device_class="thin", source_volume="src", size_bytes=200 * MiB)
    assert snap.size == 200 * MiB and snap.origin == "src"


@pytest.mark.parametrize(
    ("device_class", "size", "expected"),
    [
        pytest.param(model.DeviceClass("ssd", "vg", spare_bytes=0), 1, 4 * MiB, id="one-byte-linear"),
        pytest.param(model.DeviceClass("ssd", "vg", spare_bytes=0), 4 * MiB + 1, 8 * MiB, id="extent-plus-one"),
        pytest.param(model.DeviceClass("ssd", "vg", spare_bytes=0, stripes=2), 1, 8 * MiB, id="one-byte-striped"),
        pytest.param(
            model.DeviceClass("ssd", "vg", type=model.DeviceType.THIN, thin_pool=model.ThinPoolConfig("pool", 2.0)),
            1,
            4 * MiB,
            id="one-byte-thin",
        ),
    ],
)
def test_odd_sizes_are_rounded_up_and_lvm_gets_whole_extents(
    device_class: model.DeviceClass, size: int, expected: int
) -> None:
    """lvm2 refuses byte sizes that are not whole sectors (the in-memory adapter does too): lvmd rounds first."""
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [4 * GiB, 2 * GiB])
    lvm.create_thin_pool(vg="vg", name="pool", size=GiB)
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((device_class,)))
    svc.start()
    calls = lvm.calls
    lv = svc.create_lv(name="tiny", device_class="ssd", size_bytes=size)
    assert lv.size == expected
    assert lvm.calls - calls == 2  # one lvcreate, one report: lvm2 was not asked twice or refused
    grown = svc.resize_lv(name="tiny", device_class="ssd", size_bytes=expected + 1)
    assert grown.size > expected


def test_adapters_refuse_sizes_lvm2_refuses_before_counting_a_command() -> None:
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB])
    with pytest.raises(errors.InvalidArgument, match="multiple of 512"):
        lvm.create_lv(vg="vg", name="odd", size=1000)
    assert lvm.calls == 0


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """The age-driven re-read runs in a thread of its own: wait for what it brings."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the background re-read did not land"
        time.sleep(0.01)


def _problems(svc: lvmd.LvmdService) -> list[tuple[str, str]]:
    return [(p.status, p.reason) for p in health.problems(svc.list_lvs(device_class="ssd")[0].attr)]


def test_a_request_rereads_lvm_when_the_state_is_older_than_max_state_age() -> None:
    """A disk that fails while nothing changes the VG still reaches volume health an age (and one request)
    later, at one report per age however often the state is read (kubelet asks for every volume each minute)."""
    lvm = CountingLvm()
    lvm.add_vg("vg", [GiB, GiB])
    clock = ManualClock()
    cfg = model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),))
    svc = lvmd.LvmdService(lvm=lvm, config=cfg, max_state_age=60, clock=clock)
    svc.start()
    svc.create_lv(name="a", device_class="ssd", size_bytes=8 * MiB)
    after_create = lvm.reports
    lvm.mark_pv_missing("vg", 0)  # the disk under "a" dies; lvmd is not told
    for _ in range(100):
        assert _problems(svc) == []  # cached, no lvm call
    assert lvm.reports == after_create
    clock.advance(60)
    assert _problems(svc) == []  # this request starts the re-read and goes on with what it has
    _eventually(lambda: _problems(svc) == [("INACCESSIBLE", "PhysicalVolumeMissing")])
    for _ in range(100):
        assert _problems(svc) == [("INACCESSIBLE", "PhysicalVolumeMissing")]
    assert lvm.reports == after_create + 1
    assert svc.free_bytes(device_class="ssd") == 0  # and capacity follows: a VG with a missing PV gives none


def test_a_failing_or_hung_reread_delays_no_request_and_is_retried_an_age_later() -> None:
    lvm = GatedLvm()
    lvm.add_vg("vg", [GiB])
    clock = ManualClock()
    cfg = model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),))
    svc = lvmd.LvmdService(lvm=lvm, config=cfg, max_state_age=60, clock=clock)
    svc.start()
    svc.create_lv(name="a", device_class="ssd", size_bytes=8 * MiB)
    lvm.gate.clear()  # the next report hangs (a dying disk)
    clock.advance(60)
    for _ in range(50):  # requests are served meanwhile, from the last report; one report is running
        assert [lv.name for lv in svc.list_lvs(device_class="ssd")] == ["a"]
    _eventually(lambda: lvm.waiting == 1)
    lvm.fail_next = True
    lvm.gate.set()  # it fails
    _eventually(lambda: lvm.waiting == 0 and not svc._refreshing)
    for _ in range(50):  # no retry storm: the failed try counts as the last one
        svc.list_lvs(device_class="ssd")
    assert lvm.reports_started == 3  # start, after the create, the failed one
    svc.create_lv(name="b", device_class="ssd", size_bytes=8 * MiB)  # mutations still read LVM themselves
    assert {lv.name for lv in svc.list_lvs(device_class="ssd")} == {"a", "b"}


def test_without_max_state_age_the_state_waits_for_a_change_or_refresh() -> None:
    lvm = CountingLvm()
    lvm.add_vg("vg", [GiB])
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),)))
    svc.start()
    lvm.mark_pv_missing("vg", 0)
    assert svc.free_bytes(device_class="ssd") == GiB
    assert lvm.reports == 1
    svc.refresh()
    assert svc.free_bytes(device_class="ssd") == 0


@pytest.mark.parametrize("age", [0, -1])
def test_max_state_age_must_be_positive_and_timed(age: float) -> None:
    cfg = model.LvmdConfig((model.DeviceClass("ssd", "vg"),))
    with pytest.raises(errors.ConfigError, match="max_state_age"):
        lvmd.LvmdService(lvm=memory.InMemoryLvm(), config=cfg, max_state_age=age, clock=ManualClock())
    with pytest.raises(errors.ConfigError, match="max_state_age"):
        lvmd.LvmdService(lvm=memory.InMemoryLvm(), config=cfg, max_state_age=60)


class GatedLvm(memory.InMemoryLvm):
    """Reports wait at a gate (set: open) and can be made to fail once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = 0
        self.reports_started = 0
        self.fail_next = False

    def report(self, *, vg_names: Sequence[str]) -> model.LvmState:
        self.reports_started += 1
        self.waiting += 1
        try:
            self.gate.wait(10)
            if self.fail_next:
                self.fail_next = False
                raise errors.Unavailable("lvm fullreport timed out")
            return super().report(vg_names=vg_names)
        finally:
            self.waiting -= 1


class CountingLvm(memory.InMemoryLvm):
    reports = 0

    def report(self, *, vg_names: Sequence[str]) -> model.LvmState:
        self.reports += 1
        return super().report(vg_names=vg_names)


def test_a_vg_whose_only_disk_died_is_kept_as_lost_not_forgotten() -> None:
    """lvm2 reports nothing of a VG whose every PV is gone; lvmd keeps what it knew, with all PVs missing and
    the LVs partial, so their health says so (instead of "no such volume") and nothing is allocated there."""
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB])
    lvm.add_vg("other", [GiB])
    cfg = model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0), model.DeviceClass("b", "other")))
    svc = lvmd.LvmdService(lvm=lvm, config=cfg, max_state_age=60, clock=(clock := ManualClock()))
    svc.start()
    svc.create_lv(name="a", device_class="ssd", size_bytes=8 * MiB)
    lvm.mark_pv_missing("vg", 0)
    assert "vg" not in lvm.report(vg_names=["vg"]).vgs
    clock.advance(60)
    svc.list_lvs(device_class="ssd")  # starts the re-read
    _eventually(lambda: _problems(svc) == [("INACCESSIBLE", "VolumeGroupLost")])
    assert svc.free_bytes(device_class="ssd") == 0
    with pytest.raises(errors.FailedPrecondition, match="missing PVs"):
        svc.create_lv(name="b", device_class="ssd", size_bytes=8 * MiB)
    svc.create_lv(name="c", device_class="b", size_bytes=8 * MiB)  # the other class is untouched

    lvm.mark_pv_present("vg", 0)
    clock.advance(60)
    svc.list_lvs(device_class="ssd")
    _eventually(lambda: _problems(svc) == [])
    assert svc.free_bytes(device_class="ssd") == GiB - 8 * MiB


def test_thin_volumes_carry_their_pools_failure() -> None:
    """lvm2 reports a full pool ('D') on the pool alone; each thin volume's health must say so."""
    lvm = memory.InMemoryLvm()
    lvm.add_vg("vg", [4 * GiB])
    lvm.create_thin_pool(vg="vg", name="pool", size=GiB)
    thin = model.DeviceClass("ssd", "vg", type=model.DeviceType.THIN, thin_pool=model.ThinPoolConfig("pool", 2.0))
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((thin,)))
    svc.start()
    svc.create_lv(name="t", device_class="ssd", size_bytes=GiB)
    assert _problems(svc) == []
    lvm.set_health("vg", "pool", "D")
    svc.refresh()
    assert _problems(svc) == [("DEGRADED", "ThinPoolOutOfDataSpace")]
    lvm.set_health("vg", "t", "F")  # the volume's own failure wins
    svc.refresh()
    assert _problems(svc) == [("INACCESSIBLE", "ThinPoolFailed")]
