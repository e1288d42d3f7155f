"""Capacity policy: layouts from lvcreate options, footprints, and what a class can still allocate."""

from __future__ import annotations

import pytest

from topolvm.core import capacity, model

MiB = 1 << 20
GiB = 1 << 30
EXT = 4 * MiB


def vg(*pv_free: int, size: int | None = None) -> model.VolumeGroup:
    pvs = tuple(model.PhysicalVolume(f"/dev/pv{i}", f, f) for i, f in enumerate(pv_free))
    total = sum(pv_free)
    return model.VolumeGroup("vg", size if size is not None else total, total, EXT, pvs=pvs)


@pytest.mark.parametrize(
    ("options", "stripes", "layout"),
    [
        pytest.param([], None, capacity.Layout(1, 1, 0), id="linear"),
        pytest.param([], 2, capacity.Layout(2, 2, 0), id="class-stripe"),
        pytest.param(["--type=raid1"], None, capacity.Layout(2, 1, 1), id="raid1-default-mirror"),
        pytest.param(["--type", "raid1", "-m", "2"], None, capacity.Layout(3, 1, 1), id="raid1-m2"),
        pytest.param(["--type=raid1", "--mirrors=2"], None, capacity.Layout(3, 1, 1), id="raid1-mirrors-eq"),
        pytest.param(["-m1"], None, capacity.Layout(2, 1, 1), id="mirror-flag-only"),
        pytest.param(["--type=raid5", "-i", "3"], None, capacity.Layout(4, 3, 1), id="raid5-3"),
        pytest.param(["--type=raid6"], None, capacity.Layout(5, 3, 1), id="raid6-default"),
        pytest.param(["--type=raid10", "--stripes=2"], None, capacity.Layout(4, 2, 1), id="raid10"),
        pytest.param(["--type=raid0", "-i2"], None, capacity.Layout(2, 2, 0), id="raid0"),
        pytest.param(["--stripes", "3"], None, capacity.Layout(3, 3, 0), id="stripes-option"),
        pytest.param(["--alloc=anywhere"], None, capacity.Layout(1, 1, 0), id="unrelated-option"),
    ],
)
def test_layout_for(options: list[str], stripes: int | None, layout: capacity.Layout) -> None:
    assert capacity.layout_for(options, stripes) == layout


def test_footprint_of_raid1_is_twice_plus_metadata() -> None:
    raid1 = capacity.layout_for(["--type=raid1"])
    assert capacity.footprint(40 * MiB, raid1, EXT) == 2 * (40 + 4) * MiB
    assert capacity.footprint(41 * MiB, raid1, EXT) == 2 * (44 + 4) * MiB  # rounded to extents first


def test_striped_sizes_round_to_stripe_boundary() -> None:
    striped = capacity.Layout(2, 2, 0)
    assert capacity.round_up(20 * MiB, striped, EXT) == 24 * MiB
    assert capacity.footprint(20 * MiB, striped, EXT) == 24 * MiB


def test_linear_free_is_vg_free_minus_spare_like_upstream() -> None:
    v = vg(10 * GiB, 6 * GiB)
    assert capacity.largest_lv(v, capacity.LINEAR, reserve=GiB) == 15 * GiB
    assert capacity.largest_lv(v, capacity.LINEAR, reserve=20 * GiB) == 0


def test_raid1_free_counts_both_images_and_distinct_pvs() -> None:
    raid1 = capacity.layout_for(["--type=raid1"])
    # Upstream would report 16 GiB here (#433); two images on distinct PVs fit at most 6 GiB - 1 extent.
    assert capacity.largest_lv(vg(10 * GiB, 6 * GiB), raid1) == 6 * GiB - EXT
    # One PV cannot hold a mirror at all.
    assert capacity.largest_lv(vg(16 * GiB), raid1) == 0


def test_striped_free_is_bounded_by_the_kth_largest_pv() -> None:
    assert capacity.largest_lv(vg(10 * GiB, 2 * GiB, 1 * GiB), capacity.Layout(2, 2, 0)) == 4 * GiB


def test_missing_pvs_do_not_count() -> None:
    pvs = (model.PhysicalVolume("/dev/a", GiB, GiB), model.PhysicalVolume("/dev/b", GiB, GiB, missing=True))
    v = model.VolumeGroup("vg", 2 * GiB, 2 * GiB, EXT, pvs=pvs)
    assert capacity.largest_lv(v, capacity.Layout(2, 2, 0)) == 0


def test_fits_uses_raw_free_space() -> None:
    v = vg(GiB)
    assert capacity.fits(v, GiB, capacity.LINEAR)
    assert not capacity.fits(v, GiB + 1, capacity.LINEAR)


def test_thin_free_bytes_formula() -> None:
    assert capacity.thin_free_bytes(100, 10.0, 250) == 750
    assert capacity.thin_free_bytes(100, 1.5, 151) == 0  # never negative
    assert capacity.thin_free_bytes(3, 1.5, 0) == 4  # floor(4.5)


def test_class_stats_for_thin_class() -> None:
    pool = model.LogicalVolume("pool", "vg", 100 * MiB, attr="twi-a-tz--", data_percent=12.5, metadata_percent=3.0)
    thin = model.LogicalVolume("t", "vg", 300 * MiB, attr="Vwi-a-tz--", pool="pool")
    v = model.VolumeGroup("vg", GiB, GiB - 100 * MiB, EXT, lvs=(pool, thin))
    dc = model.DeviceClass("thin", "vg", type=model.DeviceType.THIN, thin_pool=model.ThinPoolConfig("pool", 5.0))
    stats = capacity.class_stats(dc, v, capacity.LINEAR)
    assert stats.free_bytes == 200 * MiB
    assert stats.thin_pool == model.ThinPoolStats(100 * MiB, 12.5, 3.0, 200 * MiB)
