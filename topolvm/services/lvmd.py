"""``LvmdService``: lvmd's logic over an ``Lvm`` port; it is also the embedded ``Lvmd`` adapter.

Requests are decided on the VGs' state from one report call (``topolvm.services.lvm_state``: while idle no lvm
command runs; a mutation is one lvm call plus one report) and checked against it before any command runs, so bad
input changes nothing. lvmd only touches LVs that carry a TopoLVM tag (it tags every LV it makes), so a VG shared
with the OS never loses a volume TopoLVM did not create.

Called by the lvmd gRPC server (``topolvm.lvmd.server``), by node code in embedded mode, and by the simulator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Sequence

from topolvm import constants, errors, ports
from topolvm.core import capacity, devclass, health, model, names
from topolvm.services import lvm_state, thick_copy

log = logging.getLogger(__name__)


def _check_request(name: str, size_bytes: int | None, tags: Sequence[str] = ()) -> None:
    names.check_lv_name(name)
    if size_bytes is not None and size_bytes <= 0:
        raise errors.InvalidArgument(f"size_bytes must be positive, got {size_bytes}")
    for tag in tags:
        names.check_tag(tag)


def _with_managed_tag(tags: Sequence[str]) -> list[str]:
    return [*dict.fromkeys([*tags, constants.MANAGED_TAG])]


class LvmdService(lvm_state.StateKeeper):
    def __init__(
        self,
        *,
        lvm: ports.Lvm,
        config: model.LvmdConfig,
        max_state_age: float | None = None,
        clock: ports.Clock | None = None,
    ) -> None:
        """``max_state_age``: seconds a request may act on the last report (None: until a mutation or
        ``refresh``), measured by ``clock``."""
        super().__init__(lvm=lvm, config=config, max_state_age=max_state_age, clock=clock)
        self._copies = thick_copy.ThickCopies(self)

    # --- lifecycle ---
    def start(self) -> None:
        """Read the VGs once and check that every configured VG and thin pool exists."""
        self.refresh()
        for i, dc in enumerate(self._config.device_classes):
            vg = self._state.vg(dc.volume_group)
            if vg is None:
                raise errors.ConfigError(
                    f"device-classes[{i}].volume-group: volume group {dc.volume_group!r} not found"
                )
            if dc.thin_pool is not None and capacity.thin_pool_lv(vg, dc.thin_pool.name) is None:
                raise errors.ConfigError(
                    f"device-classes[{i}].thin-pool.name: thin pool {dc.volume_group}/{dc.thin_pool.name} not found"
                )
            if vg.missing_pvs:
                log.warning(
                    "volume group %s has %d missing PVs: allocation refused until repaired", vg.name, vg.missing_pvs
                )
            elif dc.type is model.DeviceType.THICK:
                with self._transaction():
                    self._copies.sweep_locked(dc)  # what a copy killed with the last lvmd left behind

    # --- LVService ---
    def create_lv(
        self,
        *,
        name: str,
        device_class: str,
        size_bytes: int,
        tags: Sequence[str] = (),
        lvcreate_option_class: str = "",
    ) -> model.LogicalVolume:
        _check_request(name, size_bytes, tags)
        dc = devclass.find(self._config.device_classes, device_class)
        option_class = devclass.find_option_class(self._config.lvcreate_option_classes, lvcreate_option_class)
        if option_class is not None and dc.type is model.DeviceType.THIN:
            raise errors.InvalidArgument(f"device class {dc.name!r} is thin: lvcreate option classes do not apply")
        layout = devclass.layout(dc, option_class)
        with self._transaction():
            vg = self._writable_vg(dc)
            # Any positive size is taken and rounded up to whole extents (and stripes), the size lvm2 would
            # allocate anyway; lvm2 is handed that size, so it never refuses one that is not whole sectors.
            rounding = layout if dc.type is model.DeviceType.THICK else capacity.LINEAR
            wanted = capacity.round_up(size_bytes, rounding, vg.extent_size)
            existing = self._same_or_conflict(dc, vg, name, wanted)
            if existing is not None:
                return existing
            if dc.type is model.DeviceType.THIN:
                pool = self._pool(dc, vg)
                self._check_thin_room(dc, vg, wanted)
                op = functools.partial(
                    self._lvm.create_thin_lv, vg=vg.name, pool=pool.name, name=name, size=wanted,
                    tags=_with_managed_tag(tags),
                )  # fmt: skip
            else:
                if not capacity.fits(vg, size_bytes, layout):
                    raise errors.InsufficientCapacity(
                        f"device class {dc.name!r} cannot fit {wanted} bytes: at most "
                        f"{capacity.largest_lv(vg, layout)} bytes can be allocated now"
                    )
                options = option_class.options if option_class is not None else dc.lvcreate_options
                op = functools.partial(
                    self._lvm.create_lv, vg=vg.name, name=name, size=wanted, tags=_with_managed_tag(tags),
                    stripes=dc.stripes, stripe_size=dc.stripe_size, options=options,
                )  # fmt: skip
            try:
                self._mutate(op)
            except errors.AlreadyExists:
                # Our state was behind LVM (another writer, or a retry after a lost reply): decide again.
                existing = self._same_or_conflict(dc, self._vg(dc), name, wanted)
                if existing is None:
                    raise
                return existing
            log.info("created LV %s/%s (%d bytes, class %s)", vg.name, name, wanted, dc.name)
            return self._require_lv(dc, name)

    def remove_lv(self, *, name: str, device_class: str) -> None:
        _check_request(name, None)
        dc = devclass.find(self._config.device_classes, device_class)
        with self._transaction():
            vg = self._vg(dc)
            lv = vg.find_lv(name)
            if lv is None:
                return
            if not self._belongs(dc, lv):
                raise errors.FailedPrecondition(
                    f"LV {vg.name}/{name} is not a TopoLVM volume of device class {dc.name!r}; not removing it"
                )
            self._mutate(lambda: self._lvm.remove_lv(vg=vg.name, name=name))
            log.info("removed LV %s/%s (class %s)", vg.name, name, dc.name)
            if dc.type is model.DeviceType.THICK:
                self._copies.sweep_locked(dc, destination=name)  # an interrupted copy's transient snapshot

    def resize_lv(self, *, name: str, device_class: str, size_bytes: int) -> model.LogicalVolume:
        _check_request(name, size_bytes)
        dc = devclass.find(self._config.device_classes, device_class)
        with self._transaction():
            vg = self._writable_vg(dc)
            lv = self._require_lv(dc, name)
            if dc.type is model.DeviceType.THICK:
                self._copies.check_not_copied(vg, lv)
            return self._grow_locked(dc, vg, lv, size_bytes)

    def _grow_locked(
        self, dc: model.DeviceClass, vg: model.VolumeGroup, lv: model.LogicalVolume, size_bytes: int
    ) -> model.LogicalVolume:
        # Grow by the LV's own layout (it may have come from an lvcreate option class), not the class default.
        layout = capacity.layout_of(lv) if dc.type is model.DeviceType.THICK else capacity.LINEAR
        wanted = capacity.round_up(size_bytes, layout, vg.extent_size)
        if wanted < lv.size:
            raise errors.OutOfRange(
                f"LV {vg.name}/{lv.name} is {lv.size} bytes; shrinking to {wanted} is not supported"
            )
        if wanted == lv.size:
            return lv
        if dc.type is model.DeviceType.THIN:
            self._check_thin_room(dc, vg, wanted - lv.size)
        elif wanted - lv.size > capacity.largest_growth(vg, layout):
            raise errors.InsufficientCapacity(
                f"device class {dc.name!r} cannot grow {lv.name!r} by {wanted - lv.size} bytes"
            )
        self._mutate(lambda: self._lvm.resize_lv(vg=vg.name, name=lv.name, size=wanted))
        log.info("resized LV %s/%s to %d bytes", vg.name, lv.name, wanted)
        return self._require_lv(dc, lv.name)

    def create_lv_snapshot(
        self,
        *,
        name: str,
        device_class: str,
        source_volume: str,
        size_bytes: int,
        access_type: model.AccessType = model.AccessType.READ_WRITE,
        tags: Sequence[str] = (),
    ) -> model.LogicalVolume:
        _check_request(name, size_bytes, tags)
        names.check_lv_name(source_volume)
        dc = devclass.find(self._config.device_classes, device_class)
        if dc.type is model.DeviceType.THICK:
            read_only = access_type is model.AccessType.READ_ONLY
            with self._copies.slot(name, source_volume):
                return self._copies.create(dc, name, source_volume, size_bytes, read_only=read_only, tags=tags)
        with self._transaction():
            vg = self._writable_vg(dc)
            source = self._require_lv(dc, source_volume)
            wanted = max(capacity.round_up(size_bytes, capacity.LINEAR, vg.extent_size), source.size)
            if vg.find_lv(name) is None:
                self._check_thin_room(dc, vg, wanted)
                read_only = access_type is model.AccessType.READ_ONLY
                create = functools.partial(
                    self._lvm.create_snapshot, vg=vg.name, source=source_volume, name=name,
                    tags=_with_managed_tag(tags), read_only=read_only,
                )  # fmt: skip
                with contextlib.suppress(errors.AlreadyExists):  # state was behind: judge the LV that is there
                    self._mutate(create)
                    log.info("created snapshot %s/%s of %s", vg.name, name, source_volume)
            vg = self._vg(dc)
            existing = vg.find_lv(name)
            assert existing is not None
            if existing.origin != source_volume or not self._belongs(dc, existing) or existing.size > wanted:
                raise errors.AlreadyExists(f"logical volume {name!r} already exists and is not this snapshot")
            # Grow to the requested size; on a retry this finishes what an interrupted attempt began.
            return self._grow_locked(dc, vg, existing, wanted)

    # --- VGService ---
    def list_lvs(self, *, device_class: str) -> list[model.LogicalVolume]:
        dc = devclass.find(self._config.device_classes, device_class)
        with self._transaction():
            vg = self._vg(dc)
            lvs = [lv for lv in vg.lvs if self._belongs(dc, lv)]
            pool = capacity.thin_pool_lv(vg, dc.thin_pool.name) if dc.thin_pool is not None else None
        if pool is None:
            return lvs
        # lvm2 shows a full or failed pool on the pool's lv_attr only: its thin volumes carry it (core.health).
        return [dataclasses.replace(lv, attr=health.with_pool_health(lv.attr, pool.attr)) for lv in lvs]

    def free_bytes(self, *, device_class: str) -> int:
        dc = devclass.find(self._config.device_classes, device_class)
        with self._transaction():
            stats = self._capacity_locked().for_class(dc.name)
        return stats.free_bytes if stats is not None else 0

    def capacity(self) -> model.NodeCapacity:
        with self._transaction():
            return self._capacity_locked()

    # --- internals ---
    def _vg(self, dc: model.DeviceClass) -> model.VolumeGroup:
        vg = self._state.vg(dc.volume_group)
        if vg is None:
            raise errors.NotFound(f"volume group {dc.volume_group!r} of device class {dc.name!r} not found")
        return vg

    def _writable_vg(self, dc: model.DeviceClass) -> model.VolumeGroup:
        vg = self._vg(dc)
        if vg.missing_pvs:
            raise errors.FailedPrecondition(
                f"volume group {vg.name!r} has {vg.missing_pvs} missing PVs; repair it before allocating"
            )
        return vg

    def _same_or_conflict(
        self, dc: model.DeviceClass, vg: model.VolumeGroup, name: str, wanted: int
    ) -> model.LogicalVolume | None:
        """The existing LV if it is this very request's result; AlreadyExists if the name is taken otherwise."""
        existing = vg.find_lv(name)
        if existing is None:
            return None
        if existing.size == wanted and self._belongs(dc, existing):
            return existing
        raise errors.AlreadyExists(
            f"logical volume {name!r} already exists with size {existing.size} (requested {wanted})"
        )

    def _pool(self, dc: model.DeviceClass, vg: model.VolumeGroup) -> model.LogicalVolume:
        assert dc.thin_pool is not None
        pool = capacity.thin_pool_lv(vg, dc.thin_pool.name)
        if pool is None:
            raise errors.NotFound(f"thin pool {vg.name}/{dc.thin_pool.name} of device class {dc.name!r} not found")
        return pool

    def _check_thin_room(self, dc: model.DeviceClass, vg: model.VolumeGroup, extra: int) -> None:
        assert dc.thin_pool is not None
        pool = self._pool(dc, vg)
        used = capacity.thin_virtual_used(vg, pool.name)
        free = capacity.thin_free_bytes(pool.size, dc.thin_pool.overprovision_ratio, used)
        if extra > free:
            raise errors.InsufficientCapacity(
                f"thin pool {vg.name}/{pool.name} can provide {free} more bytes (overprovision ratio "
                f"{dc.thin_pool.overprovision_ratio}), {extra} requested"
            )

    def _belongs(self, dc: model.DeviceClass, lv: model.LogicalVolume) -> bool:
        if lv.is_hidden or lv.is_thin_pool:
            return False
        tagged = any(t.startswith(constants.TOPOLVM_TAG_PREFIXES) for t in lv.tags)
        if not tagged and not self._config.manage_untagged_lvs:
            return False
        if dc.type is model.DeviceType.THIN:
            assert dc.thin_pool is not None
            return lv.is_thin and lv.pool == dc.thin_pool.name
        return not lv.is_thin and not lv.origin  # a thick COW snapshot is only ever a copy's transient source

    def _require_lv(self, dc: model.DeviceClass, name: str) -> model.LogicalVolume:
        lv = self._vg(dc).find_lv(name)
        if lv is None or not self._belongs(dc, lv):
            raise errors.NotFound(f"logical volume {name!r} of device class {dc.name!r} not found")
        return lv
