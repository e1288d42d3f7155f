"""Thick snapshots as full copies (topolvm.services.thick_copy) on in-memory LVM: what is left after a copy that
failed or was interrupted, a second request while a copy runs, and the tags that tell a finished copy apart."""

from __future__ import annotations

import threading

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
