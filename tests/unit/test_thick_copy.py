"""Thick snapshots as full copies (topolvm.services.thick_copy) on in-memory LVM: what is left after a copy that
failed or was interrupted, a second request while a copy runs, and the tags that tell a finished copy apart."""

from __future__ import annotations

import threading
import time

import pytest

from topolvm import errors
from topolvm.core import model
from topolvm.lvm import memory
from topolvm.services import lvmd, thick_copy

MiB = 1 << 20
GiB = 1 << 30
RO = model.AccessType.READ_ONLY


class ControlledLvm(memory.InMemoryLvm):
    """copy_lv can be made to fail, or to wait until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: errors.TopoLVMError | None = None
        self.started = threading.Event()
        self.go_on = threading.Event()
        self.go_on.set()

    def copy_lv(self, *, vg: str, source: str, name: str, cow_size: int) -> None:
        self.started.set()
        self.go_on.wait(10)
        if self.fail is not None:
            raise self.fail
        super().copy_lv(vg=vg, source=source, name=name, cow_size=cow_size)


@pytest.fixture
def world() -> tuple[lvmd.LvmdService, ControlledLvm]:
    lvm = ControlledLvm()
    lvm.add_vg("vg", [4 * GiB])
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),)))
    svc.start()
    svc.create_lv(name="src", device_class="ssd", size_bytes=GiB)
    return svc, lvm


def _names(svc: lvmd.LvmdService) -> list[str]:
    return sorted(lv.name for lv in svc.list_lvs(device_class="ssd"))


def test_a_snapshot_is_a_read_only_copy_of_its_source(world: tuple[lvmd.LvmdService, ControlledLvm]) -> None:
    svc, lvm = world
    snap = svc.create_lv_snapshot(name="snap", device_class="ssd", source_volume="src", size_bytes=GiB, access_type=RO)
    assert lvm.copied_from("vg", "snap") == "src"
    assert snap.attr[1] == "r" and thick_copy.COPYING_TAG not in snap.tags
    clone = svc.create_lv_snapshot(name="clone", device_class="ssd", source_volume="snap", size_bytes=3 * GiB // 2)
    assert lvm.copied_from("vg", "clone") == "snap" and clone.size == 3 * GiB // 2 and clone.attr[1] == "w"
    assert svc.free_bytes(device_class="ssd") == GiB // 2  # full copies take full space


def test_a_failed_copy_leaves_nothing(world: tuple[lvmd.LvmdService, ControlledLvm]) -> None:
    svc, lvm = world
    lvm.fail = errors.Unavailable("copying failed: Input/output error")
    free = svc.free_bytes(device_class="ssd")
    with pytest.raises(errors.Unavailable, match="Input/output error"):
        svc.create_lv_snapshot(name="snap", device_class="ssd", source_volume="src", size_bytes=GiB, access_type=RO)
    assert _names(svc) == ["src"]
    assert svc.free_bytes(device_class="ssd") == free


def test_an_interrupted_copy_is_made_again(world: tuple[lvmd.LvmdService, ControlledLvm]) -> None:
    svc, lvm = world
    # What lvmd leaves when it dies mid-copy: the destination, still tagged as being copied.
    lvm.create_lv(
        vg="vg", name="snap", size=GiB,
        tags=["topolvm.io/managed", thick_copy.COPYING_TAG, thick_copy.COPY_OF_TAG + "src"],
    )  # fmt: skip
    svc.refresh()
    snap = svc.create_lv_snapshot(name="snap", device_class="ssd", source_volume="src", size_bytes=GiB, access_type=RO)
    assert lvm.copied_from("vg", "snap") == "src" and thick_copy.COPYING_TAG not in snap.tags


def test_a_second_request_while_copying_is_told_to_retry(world: tuple[lvmd.LvmdService, ControlledLvm]) -> None:
    svc, lvm = world
    lvm.go_on.clear()
    lvm.started.clear()
    result: list[model.LogicalVolume] = []
    first = threading.Thread(
        target=lambda: result.append(
            svc.create_lv_snapshot(name="snap", device_class="ssd", source_volume="src", size_bytes=GiB)
        )
    )
    first.start()
    assert lvm.started.wait(10)
    with pytest.raises(errors.Unavailable, match="still being copied"):
        svc.create_lv_snapshot(name="snap", device_class="ssd", source_volume="src", size_bytes=GiB)
    # Other requests are not held up by the copy.
    svc.create_lv(name="other", device_class="ssd", size_bytes=GiB)
    lvm.go_on.set()
    first.join(10)
    assert result and result[0].name == "snap"
    assert svc.create_lv_snapshot(name="snap", device_class="ssd", source_volume="src", size_bytes=GiB) == result[0]


def test_a_volume_by_that_name_that_is_not_this_copy_is_a_conflict(
    world: tuple[lvmd.LvmdService, ControlledLvm],
) -> None:
    svc, _ = world
    svc.create_lv(name="taken", device_class="ssd", size_bytes=GiB)
    with pytest.raises(errors.AlreadyExists):
        svc.create_lv_snapshot(name="taken", device_class="ssd", source_volume="src", size_bytes=GiB)
    svc.create_lv_snapshot(name="copy", device_class="ssd", source_volume="src", size_bytes=GiB)
    svc.create_lv(name="src2", device_class="ssd", size_bytes=GiB // 2)
    with pytest.raises(errors.AlreadyExists):  # a copy of another source
        svc.create_lv_snapshot(name="copy", device_class="ssd", source_volume="src2", size_bytes=GiB)


def _all(lvm: ControlledLvm) -> set[str]:
    return {lv.name for lv in lvm.report(vg_names=["vg"]).vgs["vg"].lvs}


def test_a_killed_copys_transient_snapshot_is_swept_with_its_destination(
    world: tuple[lvmd.LvmdService, ControlledLvm],
) -> None:
    svc, lvm = world
    lvm.create_lv(vg="vg", name="snap", size=GiB, tags=["topolvm.io/managed", thick_copy.COPYING_TAG])
    lvm.leave_copy_snapshot(vg="vg", source="src", name="snap-copy", size=100 * MiB)
    svc.refresh()
    assert _names(svc) == ["snap", "src"]  # the transient snapshot is never listed as a volume
    with pytest.raises(errors.Unavailable, match="being copied"):  # lvm2 cannot grow a snapshot origin
        svc.resize_lv(name="src", device_class="ssd", size_bytes=2 * GiB)
    svc.remove_lv(name="snap", device_class="ssd")  # the VolumeSnapshot was deleted meanwhile
    assert _all(lvm) == {"src"}
    assert svc.resize_lv(name="src", device_class="ssd", size_bytes=2 * GiB).size == 2 * GiB


def test_lvmd_sweeps_transient_snapshots_at_start_and_leaves_others_alone() -> None:
    lvm = ControlledLvm()
    lvm.add_vg("vg", [4 * GiB])
    lvm.create_lv(vg="vg", name="src", size=GiB, tags=["topolvm.io/managed"])
    lvm.create_lv(vg="vg", name="os", size=GiB)  # not TopoLVM's
    lvm.leave_copy_snapshot(vg="vg", source="src", name="snap-copy", size=100 * MiB)
    lvm.leave_copy_snapshot(vg="vg", source="os", name="backup-copy", size=100 * MiB)  # someone else's
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", spare_bytes=0),)))
    svc.start()
    assert _all(lvm) == {"src", "os", "backup-copy"}


def test_copies_are_capped_per_node(world: tuple[lvmd.LvmdService, ControlledLvm]) -> None:
    svc, lvm = world
    lvm.go_on.clear()
    threads = [
        threading.Thread(
            target=svc.create_lv_snapshot,
            kwargs={"name": f"snap-{i}", "device_class": "ssd", "source_volume": "src", "size_bytes": GiB},
        )
        for i in range(thick_copy.MAX_COPIES)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(svc._copies._running) < thick_copy.MAX_COPIES and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(errors.Unavailable, match="the most allowed"):
        svc.create_lv_snapshot(name="snap-x", device_class="ssd", source_volume="src", size_bytes=GiB)
    lvm.go_on.set()
    for t in threads:
        t.join(10)
    assert _names(svc) == ["snap-0", "snap-1", "src"]


def test_a_finished_copy_left_writable_is_made_read_only_on_retry(
    world: tuple[lvmd.LvmdService, ControlledLvm],
) -> None:
    svc, lvm = world
    # A crash between its two lvchange calls cannot leave this (read-only goes first); the retry checks anyway.
    lvm.create_lv(vg="vg", name="snap", size=GiB, tags=["topolvm.io/managed", thick_copy.COPY_OF_TAG + "src"])
    svc.refresh()
    snap = svc.create_lv_snapshot(name="snap", device_class="ssd", source_volume="src", size_bytes=GiB, access_type=RO)
    assert snap.read_only
