"""The ``Lvm`` port's contract: the in-memory adapter and real lvm2 must behave alike."""

from __future__ import annotations

import pytest

from tests.contract.conftest import GiB, LvmWorld
from topolvm import errors
from topolvm.core import model

MiB = 1 << 20


def vg_state(world: LvmWorld) -> model.VolumeGroup:
    vg = world.lvm.report(vg_names=[world.vg]).vg(world.vg)
    assert vg is not None
    return vg


def test_report_of_empty_vg(lvm_world: LvmWorld) -> None:
    vg = vg_state(lvm_world)
    assert vg.extent_size == 4 * MiB
    assert len(vg.pvs) == 2
    assert vg.free == vg.size == sum(pv.size for pv in vg.pvs)
    assert vg.size > 2 * GiB - 16 * MiB
    assert vg.lvs == ()


def test_report_leaves_out_missing_vgs(lvm_world: LvmWorld) -> None:
    state = lvm_world.lvm.report(vg_names=["tlvm-does-not-exist", lvm_world.vg])
    assert set(state.vgs) == {lvm_world.vg}
    assert lvm_world.lvm.report(vg_names=["tlvm-does-not-exist"]).vgs == {}


def test_create_linear_lv_rounds_to_extents_and_keeps_tags(lvm_world: LvmWorld) -> None:
    before = vg_state(lvm_world)
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="lv1", size=10 * MiB, tags=["topolvm.io/owner=abc"])
    after = vg_state(lvm_world)
    lv = after.find_lv("lv1")
    assert lv is not None
    assert lv.size == 12 * MiB  # three 4 MiB extents
    assert lv.tags == ("topolvm.io/owner=abc",)
    assert lv.path == f"/dev/{lvm_world.vg}/lv1"
    assert not lv.is_thin and not lv.is_thin_pool
    assert after.free == before.free - 12 * MiB


def test_tags_are_a_sorted_set(lvm_world: LvmWorld) -> None:
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="tags", size=4 * MiB, tags=["b=1", "a=1", "b=1"])
    lv = vg_state(lvm_world).find_lv("tags")
    assert lv is not None and lv.tags == ("a=1", "b=1")


def test_layout_is_reported(lvm_world: LvmWorld) -> None:
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="lin", size=4 * MiB)
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="str", size=8 * MiB, stripes=2)
    vg = vg_state(lvm_world)
    lin, striped = vg.find_lv("lin"), vg.find_lv("str")
    assert lin is not None and (lin.segtype, lin.stripes, lin.data_stripes) == ("linear", 1, 1)
    assert striped is not None and (striped.segtype, striped.stripes, striped.data_stripes) == ("striped", 2, 2)


def test_more_stripes_than_pvs_is_insufficient_capacity(lvm_world: LvmWorld) -> None:
    with pytest.raises(errors.InsufficientCapacity):
        lvm_world.lvm.create_lv(vg=lvm_world.vg, name="wide", size=12 * MiB, stripes=3)
    assert vg_state(lvm_world).find_lv("wide") is None


def test_striped_lv_takes_half_from_each_pv(lvm_world: LvmWorld) -> None:
    before = {pv.name: pv.free for pv in vg_state(lvm_world).pvs}
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="striped", size=20 * MiB, stripes=2, stripe_size="64k")
    vg = vg_state(lvm_world)
    lv = vg.find_lv("striped")
    assert lv is not None and lv.size == 24 * MiB  # rounded up to a stripe boundary (2 extents)
    assert {pv.name: before[pv.name] - pv.free for pv in vg.pvs} == {name: 12 * MiB for name in before}


def test_duplicate_name_is_already_exists_and_changes_nothing(lvm_world: LvmWorld) -> None:
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="dup", size=8 * MiB)
    before = vg_state(lvm_world)
    with pytest.raises(errors.AlreadyExists):
        lvm_world.lvm.create_lv(vg=lvm_world.vg, name="dup", size=16 * MiB)
    assert vg_state(lvm_world) == before


def test_too_large_is_insufficient_capacity_and_changes_nothing(lvm_world: LvmWorld) -> None:
    before = vg_state(lvm_world)
    with pytest.raises(errors.InsufficientCapacity):
        lvm_world.lvm.create_lv(vg=lvm_world.vg, name="huge", size=3 * GiB)
    assert vg_state(lvm_world) == before


def test_missing_vg_is_not_found(lvm_world: LvmWorld) -> None:
    with pytest.raises(errors.NotFound):
        lvm_world.lvm.create_lv(vg="tlvm-does-not-exist", name="x", size=8 * MiB)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a;rm -rf /", id="shell-metachar"),
        pytest.param("a/b", id="slash"),
        pytest.param("-n", id="leading-dash"),
        pytest.param("x" * 128, id="too-long"),
        pytest.param("", id="empty"),
        pytest.param("..", id="dotdot"),
        pytest.param("a_rimage_0", id="reserved-part"),
        pytest.param("snapshot1", id="reserved-prefix"),
        pytest.param("pvc_cvol", id="reserved-cvol"),
        pytest.param("a_cpool", id="reserved-cpool"),
        pytest.param("a b", id="space"),
        pytest.param("$(id)", id="substitution"),
    ],
)
def test_invalid_lv_names_are_refused_before_lvm_runs(lvm_world: LvmWorld, name: str) -> None:
    before = vg_state(lvm_world)
    calls = lvm_world.calls()
    with pytest.raises(errors.InvalidArgument):
        lvm_world.lvm.create_lv(vg=lvm_world.vg, name=name, size=8 * MiB)
    assert lvm_world.calls() == calls
    assert vg_state(lvm_world) == before


@pytest.mark.parametrize("size", [0, -1, -GiB])
def test_non_positive_size_is_invalid(lvm_world: LvmWorld, size: int) -> None:
    calls = lvm_world.calls()
    with pytest.raises(errors.InvalidArgument):
        lvm_world.lvm.create_lv(vg=lvm_world.vg, name="zero", size=size)
    assert lvm_world.calls() == calls


def test_invalid_tag_is_refused(lvm_world: LvmWorld) -> None:
    with pytest.raises(errors.InvalidArgument):
        lvm_world.lvm.create_lv(vg=lvm_world.vg, name="tagged", size=8 * MiB, tags=["bad tag"])
    assert vg_state(lvm_world).find_lv("tagged") is None


def test_resize_grows_and_refuses_to_shrink(lvm_world: LvmWorld) -> None:
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="grow", size=8 * MiB)
    lvm_world.lvm.resize_lv(vg=lvm_world.vg, name="grow", size=64 * MiB)
    vg = vg_state(lvm_world)
    lv = vg.find_lv("grow")
    assert lv is not None and lv.size == 64 * MiB
    with pytest.raises(errors.OutOfRange):
        lvm_world.lvm.resize_lv(vg=lvm_world.vg, name="grow", size=8 * MiB)
    with pytest.raises(errors.InsufficientCapacity):
        lvm_world.lvm.resize_lv(vg=lvm_world.vg, name="grow", size=4 * GiB)
    with pytest.raises(errors.NotFound):
        lvm_world.lvm.resize_lv(vg=lvm_world.vg, name="nope", size=64 * MiB)
    assert vg_state(lvm_world) == vg


def test_remove_frees_space_and_missing_is_not_found(lvm_world: LvmWorld) -> None:
    empty = vg_state(lvm_world)
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="gone", size=100 * MiB)
    lvm_world.lvm.remove_lv(vg=lvm_world.vg, name="gone")
    assert vg_state(lvm_world).free == empty.free
    assert vg_state(lvm_world).find_lv("gone") is None
    with pytest.raises(errors.NotFound):
        lvm_world.lvm.remove_lv(vg=lvm_world.vg, name="gone")


@pytest.mark.dm
def test_raid1_needs_two_pvs_and_twice_the_space(lvm_world: LvmWorld) -> None:
    before = vg_state(lvm_world)
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="mirror", size=40 * MiB, options=["--type=raid1", "-m", "1"])
    after = vg_state(lvm_world)
    lv = after.find_lv("mirror")
    assert lv is not None and lv.size == 40 * MiB
    # two images of 40 MiB plus one 4 MiB rmeta extent each
    assert before.free - after.free == 2 * (40 + 4) * MiB


@pytest.mark.dm
def test_thin_lv_and_snapshots(lvm_world: LvmWorld) -> None:
    lvm_world.make_thin_pool("pool", 256 * MiB)
    lvm_world.lvm.create_thin_lv(vg=lvm_world.vg, pool="pool", name="thin1", size=GiB, tags=["t=1"])
    free_before = vg_state(lvm_world).free
    lvm_world.lvm.create_snapshot(vg=lvm_world.vg, source="thin1", name="snap1", tags=["t=2"])
    lvm_world.lvm.create_snapshot(vg=lvm_world.vg, source="thin1", name="snap2", read_only=True)
    vg = vg_state(lvm_world)
    pool = vg.find_lv("pool")
    thin, snap, ro = vg.find_lv("thin1"), vg.find_lv("snap1"), vg.find_lv("snap2")
    assert pool is not None and pool.is_thin_pool
    assert thin is not None and thin.is_thin and thin.pool == "pool" and thin.size == GiB
    assert snap is not None and snap.is_thin and snap.origin == "thin1" and snap.tags == ("t=2",)
    assert ro is not None and ro.read_only and not snap.read_only
    assert vg.free == free_before  # thin snapshots take no VG space
    lvm_world.lvm.resize_lv(vg=lvm_world.vg, name="snap1", size=2 * GiB)
    snap = vg_state(lvm_world).find_lv("snap1")
    assert snap is not None and snap.size == 2 * GiB
    with pytest.raises(errors.NotFound):
        lvm_world.lvm.create_thin_lv(vg=lvm_world.vg, pool="nopool", name="thin2", size=GiB)


@pytest.mark.parametrize("size", [1, 1000, 4 * MiB + 1, 0, -512])
def test_sizes_lvm2_refuses_run_no_command(lvm_world: LvmWorld, size: int) -> None:
    """lvm2 takes byte sizes only in whole 512-byte sectors; both adapters refuse others before any command."""
    lvm_world.lvm.create_lv(vg=lvm_world.vg, name="keep", size=4 * MiB)
    calls = lvm_world.calls()
    with pytest.raises(errors.InvalidArgument):
        lvm_world.lvm.create_lv(vg=lvm_world.vg, name="odd", size=size)
    with pytest.raises(errors.InvalidArgument):
        lvm_world.lvm.resize_lv(vg=lvm_world.vg, name="keep", size=size if size <= 0 else size + 8 * MiB)
    assert lvm_world.calls() == calls
    assert [lv.name for lv in vg_state(lvm_world).lvs] == ["keep"]
