"""``InMemoryLvm``: the ``Lvm`` port without disks, with lvm2's semantics.

Extents, rounding to stripe boundaries, per-PV placement of RAID images and stripes, thin pools with virtual
sizes, and the same domain errors the real adapter raises — so unit tests and the simulator meet the same
failures real disks produce. The contract suite (tests/contract/test_lvm_contract.py) holds it to ``LvmCli``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from topolvm import constants, errors
from topolvm.core import capacity, health, model, names

DEFAULT_EXTENT = 4 << 20


@dataclass
class _Lv:
    name: str
    size: int
    attr: str
    tags: tuple[str, ...]
    layout: capacity.Layout = capacity.LINEAR
    placement: dict[str, int] = field(default_factory=dict)  # PV name -> bytes
    pool: str = ""
    origin: str = ""
    uuid: str = ""
    copied_from: str = ""  # copy_lv's source (no data is kept: tests read what was copied from where)


@dataclass
class _Vg:
    name: str
    extent_size: int
    pv_sizes: dict[str, int]
    lvs: dict[str, _Lv] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)

    def pv_free(self) -> dict[str, int]:
        free = dict(self.pv_sizes)
        for lv in self.lvs.values():
            for pv, used in lv.placement.items():
                free[pv] -= used
        return free

    def snapshot(self) -> model.VolumeGroup:
        free = self.pv_free()
        pvs = tuple(model.PhysicalVolume(n, s, free[n], missing=n in self.missing) for n, s in self.pv_sizes.items())
        lvs = tuple(
            model.LogicalVolume(
                name=lv.name, vg_name=self.name, size=lv.size, uuid=lv.uuid, path=f"/dev/{self.name}/{lv.name}",
                attr=health.mark_partial(lv.attr) if self.missing & lv.placement.keys() else lv.attr,
                tags=lv.tags, pool=lv.pool, origin=lv.origin,
                data_percent=0.0 if lv.attr[0] in "tV" else None,
                metadata_percent=0.0 if lv.attr[0] == "t" else None,
                segtype=_segtype(lv), stripes=lv.layout.images, data_stripes=lv.layout.data_stripes,
            )
            for lv in self.lvs.values()
        )  # fmt: skip
        return model.VolumeGroup(
            name=self.name, uuid=f"uuid-{self.name}", size=sum(self.pv_sizes.values()),
            free=sum(free.values()), extent_size=self.extent_size, pvs=pvs, lvs=lvs, missing_pvs=len(self.missing),
        )  # fmt: skip


def _segtype(lv: _Lv) -> str:
    if lv.attr[0] == "V":
        return "thin"
    if lv.attr[0] == "t":
        return "thin-pool"
    if lv.layout.meta_extents:
        return "raid1" if lv.layout.data_stripes == 1 else "raid5"  # enough for layout_of(); not every raid level
    return "striped" if lv.layout.images > 1 else "linear"


def _tags(tags: Sequence[str]) -> tuple[str, ...]:
    """lvm stores tags as a set and reports them sorted."""
    return tuple(sorted(set(tags)))


def _place(vg: _Vg, need_per_image: int, layout: capacity.Layout) -> dict[str, int]:
    """Pick PVs like lvm's normal policy would: linear spans PVs; each image of a layout gets its own PV."""
    free = vg.pv_free()
    if layout.linear:
        placement: dict[str, int] = {}
        remaining = need_per_image
        for pv, avail in sorted(free.items(), key=lambda kv: -kv[1]):
            take = min(avail, remaining)
            if take > 0:
                placement[pv] = take
                remaining -= take
        if remaining > 0:
            raise errors.InsufficientCapacity(
                f"Volume group {vg.name!r} has insufficient free space: {need_per_image} bytes required"
            )
        return placement
    candidates = sorted((pv for pv, avail in free.items() if avail >= need_per_image), key=lambda p: -free[p])
    if len(candidates) < layout.images:
        raise errors.InsufficientCapacity(
            f"Insufficient suitable allocatable extents in {vg.name!r}: {layout.images} PVs with "
            f"{need_per_image} bytes each required"
        )
    return {pv: need_per_image for pv in candidates[: layout.images]}


class InMemoryLvm:
    def __init__(self) -> None:
        self._vgs: dict[str, _Vg] = {}
        self._uuids = itertools.count(1)
        self.calls = 0

    # --- set-up helpers (not part of the port) ---
    def add_vg(self, name: str, pv_sizes: Sequence[int], extent_size: int = DEFAULT_EXTENT) -> None:
        names.check_vg_name(name)
        pvs = {f"/dev/fake-{name}-{i}": size // extent_size * extent_size for i, size in enumerate(pv_sizes)}
        self._vgs[name] = _Vg(name, extent_size, pvs)

    def add_pv(self, vg: str, size: int) -> str:
        """A disk added to a VG (``vgextend``); returns the new PV's name."""
        v = self._vg(vg)
        name = f"/dev/fake-{vg}-{len(v.pv_sizes)}"
        v.pv_sizes[name] = size // v.extent_size * v.extent_size
        return name

    def mark_pv_missing(self, vg: str, index: int) -> None:
        """Fault injection: the PV at ``index`` vanished (as a failed disk does)."""
        v = self._vg(vg)
        v.missing.add(list(v.pv_sizes)[index])

    def set_health(self, vg: str, lv: str, letter: str) -> None:
        """Fault injection: lvs's volume health letter of ``lv`` (lv_attr's 9th), e.g. 'D' for a full pool."""
        found = self._lv(self._vg(vg), lv)
        found.attr = found.attr[:8] + letter + found.attr[9:]

    def mark_pv_present(self, vg: str, index: int) -> None:
        """The PV at ``index`` is back (the disk returned)."""
        v = self._vg(vg)
        v.missing.discard(list(v.pv_sizes)[index])

    def create_thin_pool(self, *, vg: str, name: str, size: int) -> None:
        v = self._vg(vg)
        names.check_lv_name(name)
        self._check_free_name(v, name)
        size = capacity.round_up(size, capacity.LINEAR, v.extent_size)
        v.lvs[name] = _Lv(name, size, "twi-a-tz--", (), placement=_place(v, size, capacity.LINEAR), uuid=self._uuid())

    # --- the port ---
    def report(self, *, vg_names: Sequence[str]) -> model.LvmState:
        for vg in vg_names:
            names.check_vg_name(vg)
        self.calls += 1
        # A VG with every PV missing has its metadata nowhere: lvm2 reports nothing of it.
        found = [n for n in vg_names if n in self._vgs and self._vgs[n].missing != set(self._vgs[n].pv_sizes)]
        return model.LvmState(vgs={n: self._vgs[n].snapshot() for n in found})

    def create_lv(
        self,
        *,
        vg: str,
        name: str,
        size: int,
        tags: Sequence[str] = (),
        stripes: int | None = None,
        stripe_size: str | None = None,
        options: Sequence[str] = (),
    ) -> None:
        if stripe_size:
            names.check_stripe_size(stripe_size)
        v = self._prepare_create(vg, name, size, tags)
        layout = capacity.layout_for(options, stripes)
        rounded = capacity.round_up(size, layout, v.extent_size)
        per_image = rounded // layout.data_stripes + layout.meta_extents * v.extent_size
        placement = _place(v, per_image, layout)
        v.lvs[name] = _Lv(name, rounded, "-wi-a-----", _tags(tags), layout, placement, uuid=self._uuid())

    def create_thin_lv(self, *, vg: str, pool: str, name: str, size: int, tags: Sequence[str] = ()) -> None:
        names.check_lv_name(pool)
        v = self._prepare_create(vg, name, size, tags)
        self._thin_pool(v, pool)
        rounded = capacity.round_up(size, capacity.LINEAR, v.extent_size)
        v.lvs[name] = _Lv(name, rounded, "Vwi-a-tz--", _tags(tags), pool=pool, uuid=self._uuid())

    def create_snapshot(
        self, *, vg: str, source: str, name: str, tags: Sequence[str] = (), read_only: bool = False
    ) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(source)
        names.check_lv_name(name)
        for tag in tags:
            names.check_tag(tag)
        self.calls += 1
        v = self._vg(vg)
        src = v.lvs.get(source)
        if src is None:
            raise errors.NotFound(f"Failed to find logical volume {vg}/{source}")
        self._check_free_name(v, name)
        if src.attr[0] != "V":
            raise errors.InvalidArgument(f"{vg}/{source} is not a thin volume; only thin snapshots are supported")
        attr = "Vri-a-tz--" if read_only else "Vwi-a-tz--"
        v.lvs[name] = _Lv(name, src.size, attr, _tags(tags), pool=src.pool, origin=source, uuid=self._uuid())

    def copy_lv(self, *, vg: str, source: str, name: str, cow_size: int) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(source)
        names.check_lv_name(name)
        names.check_lv_name(name + constants.COPY_SNAPSHOT_SUFFIX)
        capacity.check_lvm_size(cow_size)
        self.calls += 1
        v = self._vg(vg)
        src, dst = self._lv(v, source), self._lv(v, name)
        if dst.size < src.size:
            raise errors.InvalidArgument(f"{vg}/{name} ({dst.size} bytes) is smaller than {vg}/{source}")
        if src.attr[0] in "Vt":
            raise errors.InvalidArgument(f"{vg}/{source} is thin; copy_lv copies thick LVs")
        # The transient COW snapshot must find room, even though it is gone again when the copy is done.
        _place(v, capacity.round_up(cow_size, capacity.LINEAR, v.extent_size), capacity.LINEAR)
        dst.copied_from = source

    def change_lv(self, *, vg: str, name: str, del_tags: Sequence[str] = (), read_only: bool = False) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(name)
        for tag in del_tags:
            names.check_tag(tag)
        self.calls += 1
        lv = self._lv(self._vg(vg), name)
        lv.tags = tuple(t for t in lv.tags if t not in del_tags)
        if read_only:
            lv.attr = lv.attr[0] + "r" + lv.attr[2:]

    def leave_copy_snapshot(self, *, vg: str, source: str, name: str, size: int) -> None:
        """What copy_lv leaves when it is killed mid-copy: a thick COW snapshot ``name`` of ``source``."""
        v = self._vg(vg)
        self._lv(v, source)
        placement = _place(v, capacity.round_up(size, capacity.LINEAR, v.extent_size), capacity.LINEAR)
        v.lvs[name] = _Lv(name, size, "swi-a-s---", (), capacity.LINEAR, placement, origin=source, uuid=self._uuid())

    def copied_from(self, vg: str, name: str) -> str:
        """The LV ``vg/name`` was last copied from by copy_lv ("" if never)."""
        return self._lv(self._vg(vg), name).copied_from

    def resize_lv(self, *, vg: str, name: str, size: int) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(name)
        capacity.check_lvm_size(size)
        self.calls += 1
        v = self._vg(vg)
        lv = self._lv(v, name)
        rounded = capacity.round_up(size, lv.layout, v.extent_size)
        if rounded <= lv.size:
            raise errors.OutOfRange(f"New size for {vg}/{name} not larger than existing size")
        if lv.attr[0] != "V":
            grow = (rounded - lv.size) // lv.layout.data_stripes
            extra = _place(v, grow, lv.layout)
            for pv, used in extra.items():
                lv.placement[pv] = lv.placement.get(pv, 0) + used
        lv.size = rounded

    def remove_lv(self, *, vg: str, name: str) -> None:
        names.check_vg_name(vg)
        names.check_lv_name(name)
        self.calls += 1
        v = self._vg(vg)
        self._lv(v, name)
        del v.lvs[name]

    # --- helpers ---
    def _uuid(self) -> str:
        return f"mem-{next(self._uuids):06d}"

    def _vg(self, name: str) -> _Vg:
        names.check_vg_name(name)
        if name not in self._vgs:
            raise errors.NotFound(f"Volume group {name!r} not found")
        return self._vgs[name]

    @staticmethod
    def _lv(v: _Vg, name: str) -> _Lv:
        names.check_lv_name(name)
        if name not in v.lvs:
            raise errors.NotFound(f"Failed to find logical volume {v.name}/{name}")
        return v.lvs[name]

    @staticmethod
    def _check_free_name(v: _Vg, name: str) -> None:
        if name in v.lvs:
            raise errors.AlreadyExists(f"Logical Volume {name!r} already exists in volume group {v.name!r}")

    def _prepare_create(self, vg: str, name: str, size: int, tags: Sequence[str]) -> _Vg:
        """Validate like the real adapter does before running lvm, count the "command", then look up."""
        names.check_vg_name(vg)
        names.check_lv_name(name)
        for tag in tags:
            names.check_tag(tag)
        capacity.check_lvm_size(size)
        self.calls += 1
        v = self._vg(vg)
        if v.missing:
            raise errors.FailedPrecondition(f"Cannot change VG {vg} while PVs are missing.")
        self._check_free_name(v, name)
        return v

    @staticmethod
    def _thin_pool(v: _Vg, pool: str) -> _Lv:
        names.check_lv_name(pool)
        lv = v.lvs.get(pool)
        if lv is None or lv.attr[0] != "t":
            raise errors.NotFound(f"Pool {pool} not found in Volume group {v.name}")
        return lv
