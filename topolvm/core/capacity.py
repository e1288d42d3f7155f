"""Capacity policy: how many bytes a device class can still hand out, and what an LV really costs.

Upstream reports ``vg_free - spare`` for every thick class, which over-promises for RAID and striped classes
(upstream #433: a raid1 LV needs twice its size, and each image must sit on its own PV). Here the cost of an LV
is derived from its layout: the number of images that need distinct PVs, how the size is split across them,
and the per-image metadata extent RAID adds. Thin classes use upstream's overprovision formula unchanged.

Called by the lvmd service (admission of CreateLV/ResizeLV, and the capacity it reports) and, through lvmd's
reports, by everything that publishes or consumes capacity.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from topolvm import errors
from topolvm.core import model

SECTOR = 512  # lvm2 takes byte sizes (``-L <n>b``) only in whole sectors


@dataclass(frozen=True)
class Layout:
    """How an LV's data is laid over PVs.

    ``images``: allocations that must each sit on a different PV (1 for linear: it may span PVs freely);
    ``data_stripes``: the LV size is split evenly over this many of them;
    ``meta_extents``: extra extents each image needs beside its data (RAID's rmeta sub-LV).
    """

    images: int = 1
    data_stripes: int = 1
    meta_extents: int = 0

    @property
    def linear(self) -> bool:
        return self.images == 1


LINEAR: Layout = Layout()

# Default data stripes lvcreate picks per RAID type when -i is not given (lvcreate(8)).
_RAID_DEFAULT_STRIPES = {"raid0": 2, "raid0_meta": 2, "raid4": 2, "raid5": 2, "raid6": 3, "raid10": 2}
_PARITY = {"raid4": 1, "raid5": 1, "raid6": 2}


def _option_value(options: Sequence[str], short: str | None, long: str) -> str | None:
    """Last value of an option given as ``--long=V``, ``--long V``, ``-sV`` or ``-s V``."""
    value: str | None = None
    i = 0
    while i < len(options):
        opt = options[i]
        nxt = options[i + 1] if i + 1 < len(options) else None
        if opt == long or (short is not None and opt == short):
            value = nxt
            i += 2
            continue
        if opt.startswith(long + "="):
            value = opt[len(long) + 1 :]
        elif short is not None and opt.startswith(short) and not opt.startswith("--") and len(opt) > len(short):
            value = opt[len(short) :]
        i += 1
    return value


def _int_option(options: Sequence[str], short: str, long: str) -> int | None:
    raw = _option_value(options, short, long)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def layout_for(options: Sequence[str], stripes: int | None = None) -> Layout:
    """Layout implied by lvcreate options plus the device class's ``stripe`` setting."""
    segtype = (_option_value(options, None, "--type") or "").lower()
    stripes = _int_option(options, "-i", "--stripes") or stripes
    mirrors = _int_option(options, "-m", "--mirrors")
    if segtype.startswith("raid") and segtype != "raid1":
        base = segtype.split("_")[0] if not segtype.startswith("raid0_meta") else "raid0_meta"
        data = stripes or _RAID_DEFAULT_STRIPES.get(base, 2)
        if base == "raid10":
            copies = (mirrors or 1) + 1
            return Layout(images=data * copies, data_stripes=data, meta_extents=1)
        meta = 0 if base == "raid0" else 1
        return Layout(images=data + _PARITY.get(base, 0), data_stripes=data, meta_extents=meta)
    if segtype in ("raid1", "mirror") or (mirrors and segtype in ("", "mirror")):
        copies = (mirrors if mirrors is not None else 1) + 1
        # raid1 keeps an rmeta extent per image. The legacy mirror type instead keeps a 1-extent log, by
        # default on a PV of its own; charging it like rmeta is an approximation (it may need one more PV).
        return Layout(images=copies, data_stripes=1, meta_extents=1)
    if stripes and stripes > 1:
        return Layout(images=stripes, data_stripes=stripes)
    return LINEAR


def layout_of(lv: model.LogicalVolume) -> Layout:
    """The layout an existing LV was created with, from its first segment (what growing it will cost)."""
    seg = lv.segtype
    if seg.startswith("raid") or seg == "mirror":
        return Layout(
            images=max(1, lv.stripes), data_stripes=max(1, lv.data_stripes), meta_extents=0 if seg == "raid0" else 1
        )
    if lv.stripes > 1:
        return Layout(images=lv.stripes, data_stripes=lv.stripes)
    return LINEAR


def check_lvm_size(size: int) -> None:
    """A byte size lvm2 accepts: positive, whole sectors (it refuses others: "Size is not a multiple of 512").
    Adapters check it before running lvm; lvmd never gets here with an odd size, it rounds to extents first."""
    if size <= 0 or size % SECTOR:
        raise errors.InvalidArgument(f"size {size} is not a positive multiple of {SECTOR} bytes")


def round_up(size: int, layout: Layout, extent_size: int) -> int:
    """The size LVM actually allocates: whole extents, a multiple of the stripe count."""
    unit = extent_size * layout.data_stripes
    return -(-size // unit) * unit


def footprint(size: int, layout: Layout, extent_size: int) -> int:
    """Bytes of VG free space an LV of ``size`` consumes."""
    per_image = round_up(size, layout, extent_size) // layout.data_stripes
    return layout.images * (per_image + layout.meta_extents * extent_size)


def largest_lv(vg: model.VolumeGroup, layout: Layout, reserve: int = 0) -> int:
    """The largest LV of this layout that fits, keeping ``reserve`` bytes of the VG free.

    Multi-image layouts are also bounded by the PVs: each image needs its own PV, so the k-th largest PV's
    free space bounds an image (a bound LVM can always meet by using the k largest PVs).
    """
    extent = vg.extent_size
    if extent <= 0 or vg.missing_pvs:
        return 0  # a VG with missing PVs refuses every allocation until it is repaired
    budget = vg.free - reserve
    per_image_extents = budget // layout.images // extent - layout.meta_extents
    if not layout.linear:
        frees = sorted((pv.free for pv in vg.pvs if not pv.missing), reverse=True)
        if len(frees) < layout.images:
            return 0
        pv_bound = frees[layout.images - 1] // extent - layout.meta_extents
        per_image_extents = min(per_image_extents, pv_bound)
    return max(0, per_image_extents) * extent * layout.data_stripes


def largest_growth(vg: model.VolumeGroup, layout: Layout) -> int:
    """How far an existing LV of this layout can grow: like ``largest_lv`` but its images already have
    their metadata extents."""
    return largest_lv(vg, dataclasses.replace(layout, meta_extents=0))


def fits(vg: model.VolumeGroup, size: int, layout: Layout) -> bool:
    """Whether an LV of ``size`` can be created now (raw VG free space; spare is for reporting only)."""
    return round_up(size, layout, vg.extent_size) <= largest_lv(vg, layout)


def thin_pool_lv(vg: model.VolumeGroup, pool: str) -> model.LogicalVolume | None:
    lv = vg.find_lv(pool)
    return lv if lv is not None and lv.is_thin_pool else None


def thin_free_bytes(pool_size: int, ratio: float, virtual_used: int) -> int:
    """Upstream: ``max(0, floor(ratio * pool_size) - sum(virtual sizes))``."""
    return max(0, math.floor(ratio * pool_size) - virtual_used)


def thin_virtual_used(vg: model.VolumeGroup, pool: str) -> int:
    return sum(lv.size for lv in vg.thin_lvs(pool))


def class_stats(dc: model.DeviceClass, vg: model.VolumeGroup, layout: Layout) -> model.DeviceClassStats:
    """What lvmd reports for one device class: usable bytes after spare, layout and overprovisioning."""
    if dc.type is model.DeviceType.THIN:
        assert dc.thin_pool is not None  # guaranteed by config validation
        pool = thin_pool_lv(vg, dc.thin_pool.name)
        if pool is None:
            return model.DeviceClassStats(dc.name, dc.default, 0, 0, model.ThinPoolStats(0, 0.0, 0.0, 0))
        free = thin_free_bytes(pool.size, dc.thin_pool.overprovision_ratio, thin_virtual_used(vg, pool.name))
        stats = model.ThinPoolStats(
            size_bytes=pool.size,
            data_percent=pool.data_percent or 0.0,
            metadata_percent=pool.metadata_percent or 0.0,
            overprovisioned_available=free,
        )
        return model.DeviceClassStats(dc.name, dc.default, pool.size, free, stats)
    free = largest_lv(vg, layout, reserve=dc.spare_bytes)
    return model.DeviceClassStats(dc.name, dc.default, vg.size, free)
