"""The ``Lvmd`` port's contract: embedded service and gRPC client, on in-memory and real LVM, behave alike."""

from __future__ import annotations

import os
import queue
import tempfile
from pathlib import Path

import pytest

from tests.contract.conftest import SPARE_GB, GiB, LvmdWorld, lvmd_config
from topolvm import errors
from topolvm.core import model
from topolvm.lvm import memory as lvm_memory
from topolvm.lvmd import client as lvmd_client
from topolvm.lvmd import server as lvmd_server
from topolvm.services import lvmd as lvmd_service

MiB = 1 << 20


def vg(world: LvmdWorld) -> model.VolumeGroup:
    state = world.backend.lvm.report(vg_names=[world.backend.vg]).vg(world.backend.vg)
    assert state is not None
    return state


def test_free_bytes_is_vg_free_minus_spare(lvmd_world: LvmdWorld) -> None:
    free = vg(lvmd_world).free - (SPARE_GB << 30)
    assert lvmd_world.lvmd.free_bytes(device_class="ssd") == free
    assert lvmd_world.lvmd.free_bytes(device_class="") == free  # "" is the default class
    stats = lvmd_world.lvmd.capacity().for_class("ssd")
    assert stats is not None and stats.default and stats.free_bytes == free and stats.size_bytes == vg(lvmd_world).size


def test_create_list_remove(lvmd_world: LvmdWorld) -> None:
    free = lvmd_world.lvmd.free_bytes(device_class="ssd")
    lv = lvmd_world.lvmd.create_lv(name="vol1", device_class="ssd", size_bytes=10 * MiB, tags=["topolvm.io/owner=u1"])
    assert lv.name == "vol1" and lv.size == 12 * MiB and lv.tags == ("topolvm.io/managed", "topolvm.io/owner=u1")
    assert lv.vg_name == lvmd_world.backend.vg and lv.uuid
    assert [v.name for v in lvmd_world.lvmd.list_lvs(device_class="ssd")] == ["vol1"]
    assert lvmd_world.lvmd.free_bytes(device_class="ssd") == free - 12 * MiB
    lvmd_world.lvmd.remove_lv(name="vol1", device_class="ssd")
    assert lvmd_world.lvmd.list_lvs(device_class="ssd") == []
    assert lvmd_world.lvmd.free_bytes(device_class="ssd") == free


def test_create_is_idempotent_for_the_same_size(lvmd_world: LvmdWorld) -> None:
    first = lvmd_world.lvmd.create_lv(name="same", device_class="ssd", size_bytes=8 * MiB)
    calls = lvmd_world.backend.calls()
    again = lvmd_world.lvmd.create_lv(name="same", device_class="ssd", size_bytes=8 * MiB)
    assert again == first
    assert lvmd_world.backend.calls() == calls  # answered from state: no lvm command
    with pytest.raises(errors.AlreadyExists):
        lvmd_world.lvmd.create_lv(name="same", device_class="ssd", size_bytes=16 * MiB)
    assert [v.size for v in lvmd_world.lvmd.list_lvs(device_class="ssd")] == [8 * MiB]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"name": "x;reboot"}, errors.InvalidArgument, id="metachar-name"),
        pytest.param({"name": "-x"}, errors.InvalidArgument, id="dash-name"),
        pytest.param({"name": "a/b"}, errors.InvalidArgument, id="slash-name"),
        pytest.param({"name": "n" * 128}, errors.InvalidArgument, id="long-name"),
        pytest.param({"size_bytes": 0}, errors.InvalidArgument, id="zero-size"),
        pytest.param({"size_bytes": -5}, errors.InvalidArgument, id="negative-size"),
        pytest.param({"device_class": "nvme"}, errors.NotFound, id="unknown-class"),
        pytest.param({"lvcreate_option_class": "raid9"}, errors.NotFound, id="unknown-option-class"),
        pytest.param({"tags": ["a b"]}, errors.InvalidArgument, id="bad-tag"),
        pytest.param({"size_bytes": 4 * GiB}, errors.InsufficientCapacity, id="too-large"),
    ],
)
def test_bad_create_changes_nothing(lvmd_world: LvmdWorld, kwargs: dict[str, object], error: type[Exception]) -> None:
    lvmd_world.lvmd.create_lv(name="keep", device_class="ssd", size_bytes=8 * MiB)
    before = vg(lvmd_world)
    calls = lvmd_world.backend.calls()
    request: dict[str, object] = {"name": "new", "device_class": "ssd", "size_bytes": 8 * MiB, **kwargs}
    with pytest.raises(error):
        lvmd_world.lvmd.create_lv(**request)  # type: ignore[arg-type]
    assert lvmd_world.backend.calls() == calls  # refused before any lvm command
    assert vg(lvmd_world) == before


@pytest.mark.parametrize(("size", "expected"), [(1, 4 * MiB), (4 * MiB + 1, 8 * MiB), (4 * MiB - 512, 4 * MiB)])
def test_odd_sizes_round_up_to_whole_extents(lvmd_world: LvmdWorld, size: int, expected: int) -> None:
    """lvm2 itself refuses a byte size that is not whole sectors; lvmd rounds to extents first, so a 1-byte
    CreateLV gets one extent with one lvcreate and one report, and an odd resize grows by whole extents."""
    calls = lvmd_world.backend.calls()
    lv = lvmd_world.lvmd.create_lv(name="odd", device_class="ssd", size_bytes=size)
    assert lv.size == expected
    assert lvmd_world.backend.calls() - calls == 2
    assert lvmd_world.lvmd.resize_lv(name="odd", device_class="ssd", size_bytes=expected + 1).size == expected + 4 * MiB
    assert [v.size for v in lvmd_world.lvmd.list_lvs(device_class="ssd")] == [expected + 4 * MiB]


def test_capacity_accounts_for_spare_when_reporting_only(lvmd_world: LvmdWorld) -> None:
    # Creation may use the spare (upstream checks raw vg_free); reporting hides it.
    free = lvmd_world.lvmd.free_bytes(device_class="ssd")
    lvmd_world.lvmd.create_lv(name="big", device_class="ssd", size_bytes=free + 64 * MiB)
    assert lvmd_world.lvmd.free_bytes(device_class="ssd") == 0


def test_resize(lvmd_world: LvmdWorld) -> None:
    lvmd_world.lvmd.create_lv(name="r", device_class="ssd", size_bytes=8 * MiB)
    grown = lvmd_world.lvmd.resize_lv(name="r", device_class="ssd", size_bytes=30 * MiB)
    assert grown.size == 32 * MiB
    calls = lvmd_world.backend.calls()
    assert lvmd_world.lvmd.resize_lv(name="r", device_class="ssd", size_bytes=32 * MiB) == grown
    assert lvmd_world.backend.calls() == calls
    before = vg(lvmd_world)
    with pytest.raises(errors.OutOfRange):
        lvmd_world.lvmd.resize_lv(name="r", device_class="ssd", size_bytes=8 * MiB)
    with pytest.raises(errors.NotFound):
        lvmd_world.lvmd.resize_lv(name="missing", device_class="ssd", size_bytes=8 * MiB)
    with pytest.raises(errors.InsufficientCapacity):
        lvmd_world.lvmd.resize_lv(name="r", device_class="ssd", size_bytes=3 * GiB)
    with pytest.raises(errors.InvalidArgument):
        lvmd_world.lvmd.resize_lv(name="r", device_class="ssd", size_bytes=-1)
    assert vg(lvmd_world) == before


def test_remove_missing_succeeds(lvmd_world: LvmdWorld) -> None:
    calls = lvmd_world.backend.calls()
    lvmd_world.lvmd.remove_lv(name="never-existed", device_class="ssd")
    assert lvmd_world.backend.calls() == calls
    with pytest.raises(errors.NotFound):
        lvmd_world.lvmd.remove_lv(name="x", device_class="nope")


def test_one_mutation_and_one_report_per_request(lvmd_world: LvmdWorld) -> None:
    calls = lvmd_world.backend.calls()
    lvmd_world.lvmd.create_lv(name="c", device_class="ssd", size_bytes=8 * MiB)
    lvmd_world.lvmd.resize_lv(name="c", device_class="ssd", size_bytes=16 * MiB)
    lvmd_world.lvmd.remove_lv(name="c", device_class="ssd")
    assert lvmd_world.backend.calls() - calls == 6  # (mutation + report) x 3
    calls = lvmd_world.backend.calls()
    lvmd_world.lvmd.list_lvs(device_class="ssd")
    lvmd_world.lvmd.free_bytes(device_class="ssd")
    lvmd_world.lvmd.capacity()
    assert lvmd_world.backend.calls() == calls  # reads are served from state


def test_lvmd_leaves_untagged_lvs_alone(lvmd_world: LvmdWorld) -> None:
    """An LV TopoLVM did not make (e.g. the OS's, in a shared VG) is not listed, resized or removed."""
    lvmd_world.backend.lvm.create_lv(vg=lvmd_world.backend.vg, name="root", size=8 * MiB)
    lvmd_world.lvmd.create_lv(name="ours", device_class="ssd", size_bytes=8 * MiB)  # lvmd re-reads LVM
    assert [lv.name for lv in lvmd_world.lvmd.list_lvs(device_class="ssd")] == ["ours"]
    with pytest.raises(errors.FailedPrecondition):
        lvmd_world.lvmd.remove_lv(name="root", device_class="ssd")
    with pytest.raises(errors.NotFound):
        lvmd_world.lvmd.resize_lv(name="root", device_class="ssd", size_bytes=16 * MiB)
    with pytest.raises(errors.AlreadyExists):
        lvmd_world.lvmd.create_lv(name="root", device_class="ssd", size_bytes=8 * MiB)
    assert vg(lvmd_world).find_lv("root") is not None


def test_a_failing_watch_listener_keeps_getting_updates(lvmd_world: LvmdWorld) -> None:
    seen: queue.Queue[model.NodeCapacity] = queue.Queue()

    def flaky(cap: model.NodeCapacity) -> None:
        seen.put(cap)
        if seen.qsize() == 2:
            raise RuntimeError("listener bug")

    sub = lvmd_world.lvmd.watch(flaky)
    try:
        _next(seen)
        lvmd_world.lvmd.create_lv(name="a", device_class="ssd", size_bytes=8 * MiB)
        _next(seen)  # this delivery raised
        lvmd_world.lvmd.create_lv(name="b", device_class="ssd", size_bytes=8 * MiB)
        assert _next(seen) is not None
    finally:
        sub.close()


def _next(updates: queue.Queue[model.NodeCapacity]) -> model.NodeCapacity:
    return updates.get(timeout=10)


def test_watch_sends_current_capacity_then_every_change(lvmd_world: LvmdWorld) -> None:
    updates: queue.Queue[model.NodeCapacity] = queue.Queue()
    sub = lvmd_world.lvmd.watch(updates.put)
    try:
        first = _next(updates).for_class("ssd")
        assert first is not None
        lvmd_world.lvmd.create_lv(name="w", device_class="ssd", size_bytes=40 * MiB)
        second = _next(updates).for_class("ssd")
        assert second is not None and second.free_bytes == first.free_bytes - 40 * MiB
        lvmd_world.lvmd.remove_lv(name="w", device_class="ssd")
        third = _next(updates).for_class("ssd")
        assert third is not None and third.free_bytes == first.free_bytes
    finally:
        sub.close()
    lvmd_world.lvmd.create_lv(name="after-close", device_class="ssd", size_bytes=8 * MiB)
    with pytest.raises(queue.Empty):
        updates.get(timeout=0.5)


@pytest.mark.dm
def test_thin_class_overprovision_and_snapshots(lvmd_world: LvmdWorld) -> None:
    assert lvmd_world.thin
    pool = 256 * MiB
    assert lvmd_world.lvmd.free_bytes(device_class="thin") == 2 * pool  # ratio 2.0
    lvmd_world.lvmd.create_lv(name="t1", device_class="thin", size_bytes=200 * MiB)
    assert lvmd_world.lvmd.free_bytes(device_class="thin") == 2 * pool - 200 * MiB
    with pytest.raises(errors.InsufficientCapacity):
        lvmd_world.lvmd.create_lv(name="t2", device_class="thin", size_bytes=400 * MiB)
    with pytest.raises(errors.NotFound):  # a thick class's snapshot copies a thick volume of that class
        lvmd_world.lvmd.create_lv_snapshot(name="s0", device_class="ssd", source_volume="t1", size_bytes=200 * MiB)
    snap = lvmd_world.lvmd.create_lv_snapshot(
        name="s1",
        device_class="thin",
        source_volume="t1",
        size_bytes=100 * MiB,  # smaller than the source: the snapshot keeps the source's size
        access_type=model.AccessType.READ_ONLY,
    )
    assert snap.origin == "t1" and snap.size == 200 * MiB and snap.attr[1] == "r"
    assert lvmd_world.lvmd.free_bytes(device_class="thin") == 2 * pool - 400 * MiB  # snapshots count, like upstream
    with pytest.raises(errors.InsufficientCapacity):  # a third copy would pass the overprovision limit
        lvmd_world.lvmd.create_lv_snapshot(name="s3", device_class="thin", source_volume="t1", size_bytes=200 * MiB)
    assert sorted(v.name for v in lvmd_world.lvmd.list_lvs(device_class="thin")) == ["s1", "t1"]
    assert [v.name for v in lvmd_world.lvmd.list_lvs(device_class="ssd")] == []  # thin LVs are not thick's
    with pytest.raises(errors.NotFound):
        lvmd_world.lvmd.create_lv_snapshot(name="s2", device_class="thin", source_volume="nope", size_bytes=MiB)


def test_watch_streams_are_capped_so_calls_always_get_a_thread(tmp_path: Path) -> None:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg0", [4 * GiB])
    service = lvmd_service.LvmdService(lvm=lvm, config=lvmd_config("vg0", thin=False))
    service.start()
    sock = Path(tempfile.mkdtemp(prefix="tlvm-", dir="/tmp")) / "lvmd.sock"
    server = lvmd_server.serve(service, str(sock), max_workers=4)  # room for one Watch
    client = lvmd_client.LvmdClient(str(sock), timeout=10)
    try:
        first: queue.Queue[model.NodeCapacity] = queue.Queue()
        sub = client.watch(first.put)
        _next(first)
        with pytest.raises(errors.InsufficientCapacity, match="too many concurrent Watch"):
            client.capacity()  # capacity() opens a second Watch
        assert client.free_bytes(device_class="ssd") > 0  # unary calls still served
        sub.close()
    finally:
        client.close()
        server.stop(None).wait()
        sock.unlink(missing_ok=True)
        sock.parent.rmdir()


def _write(path: str, byte: int, size: int) -> None:
    with open(path, "r+b") as dev:
        dev.write(bytes([byte]) * size)
        dev.flush()
        os.fsync(dev.fileno())


def _read(path: str, size: int) -> bytes:
    with open(path, "rb") as dev:
        return dev.read(size)


@pytest.mark.dm
def test_thick_snapshots_are_independent_full_copies(lvmd_world: LvmdWorld) -> None:
    real = lvmd_world.backend.kind == "lvm2"
    lvmd = lvmd_world.lvmd
    src = lvmd.create_lv(name="vol", device_class="ssd", size_bytes=64 * MiB)
    if real:
        _write(src.path, 0xA5, 64 * MiB)
    free = lvmd.free_bytes(device_class="ssd")
    snap = lvmd.create_lv_snapshot(
        name="snap", device_class="ssd", source_volume="vol", size_bytes=MiB, access_type=model.AccessType.READ_ONLY
    )
    # A full copy: the source's size, read-only, no origin (it does not depend on its source), space taken.
    assert snap.size == 64 * MiB and snap.attr[1] == "r" and not snap.origin
    assert "topolvm.io/copy-of=vol" in snap.tags and "topolvm.io/copying" not in snap.tags
    assert lvmd.free_bytes(device_class="ssd") == free - 64 * MiB
    assert sorted(lv.name for lv in lvmd.list_lvs(device_class="ssd")) == ["snap", "vol"]
    assert "snap-copy" not in {lv.name for lv in vg(lvmd_world).lvs}  # the transient COW snapshot is gone
    again = lvmd.create_lv_snapshot(
        name="snap", device_class="ssd", source_volume="vol", size_bytes=MiB, access_type=model.AccessType.READ_ONLY
    )
    assert again.uuid == snap.uuid  # idempotent
    if real:
        _write(src.path, 0x5A, 4 * MiB)  # the source moves on; the snapshot keeps the instant it was taken
        assert _read(snap.path, 64 * MiB) == bytes([0xA5]) * (64 * MiB)
    # Restore: a writable copy of the snapshot, at least as large as requested.
    restored = lvmd.create_lv_snapshot(name="restored", device_class="ssd", source_volume="snap", size_bytes=80 * MiB)
    assert restored.size == 80 * MiB and restored.attr[1] == "w"
    if real:
        assert _read(restored.path, 64 * MiB) == bytes([0xA5]) * (64 * MiB)
    # The source can go; its snapshot and the restored volume stay.
    lvmd.remove_lv(name="vol", device_class="ssd")
    assert sorted(lv.name for lv in lvmd.list_lvs(device_class="ssd")) == ["restored", "snap"]
    with pytest.raises(errors.AlreadyExists):  # a name taken by another volume is not a copy of this source
        lvmd.create_lv_snapshot(name="restored", device_class="ssd", source_volume="snap", size_bytes=MiB)


@pytest.mark.dm
def test_a_thick_copy_without_room_makes_nothing(lvmd_world: LvmdWorld) -> None:
    lvmd = lvmd_world.lvmd
    # After "big", the VG has room for a copy of it (5 % more than its size) but not for the copy's transient
    # COW snapshot as well (10 % of the source).
    big = int(vg(lvmd_world).free / 2.05) // (4 * MiB) * (4 * MiB)
    lvmd.create_lv(name="big", device_class="ssd", size_bytes=big)
    before = {lv.name for lv in vg(lvmd_world).lvs}
    with pytest.raises(errors.InsufficientCapacity, match="transient snapshot"):
        lvmd.create_lv_snapshot(name="big-snap", device_class="ssd", source_volume="big", size_bytes=big)
    assert {lv.name for lv in vg(lvmd_world).lvs} == before
