"""``LvmdService``: lvmd's logic over an ``Lvm`` port; it is also the embedded ``Lvmd`` adapter.

Keeps the state of its VGs from one report call, refreshed after every mutation (one mutating lvm call plus
one report per request) and whenever the runtime asks (``refresh``); while idle it runs no lvm command at all
(upstream #1221 runs about 40 a minute). Requests are checked against that state before any command runs, so
bad input changes nothing. Listeners (the Watch stream, the capacity publisher) hear about every change.

Called by the lvmd gRPC server (``topolvm.lvmd.server``), by node code in embedded mode, and by the simulator.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from topolvm import errors, ports
from topolvm.core import capacity, devclass, model, names

log = logging.getLogger(__name__)


@dataclass
class _Subscription:
    service: LvmdService
    listener: ports.CapacityListener

    def close(self) -> None:
        self.service._unsubscribe(self.listener)


def _check_request(name: str, size_bytes: int | None, tags: Sequence[str] = ()) -> None:
    names.check_lv_name(name)
    if size_bytes is not None and size_bytes <= 0:
        raise errors.InvalidArgument(f"size_bytes must be positive, got {size_bytes}")
    for tag in tags:
        names.check_tag(tag)


class LvmdService:
    def __init__(self, *, lvm: ports.Lvm, config: model.LvmdConfig) -> None:
        devclass.validate(config)
        self._lvm = lvm
        self._config = config
        self._lock = threading.RLock()
        self._state = model.LvmState()
        self._listeners: list[ports.CapacityListener] = []
        self._last_capacity: model.NodeCapacity | None = None

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

    def refresh(self) -> None:
        """Re-read LVM (one report call) and tell listeners if capacity changed."""
        with self._lock:
            self._state = self._lvm.report(vg_names=self._config.volume_groups())
            current = self._capacity_locked()
            changed = current != self._last_capacity
            self._last_capacity = current
            listeners = list(self._listeners) if changed else []
        for listener in listeners:
            try:
                listener(current)
            except Exception:
                log.exception("capacity listener failed")

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
        layout = devclass.layout(dc, option_class)
        with self._lock:
            vg = self._vg(dc)
            rounding = layout if dc.type is model.DeviceType.THICK else capacity.LINEAR
            wanted = capacity.round_up(size_bytes, rounding, vg.extent_size)
            existing = vg.find_lv(name)
            if existing is not None:
                if existing.size == wanted and self._belongs(dc, existing):
                    return existing
                raise errors.AlreadyExists(
                    f"logical volume {name!r} already exists with size {existing.size} (requested {wanted})"
                )
            if dc.type is model.DeviceType.THIN:
                pool = self._pool(dc, vg)
                self._check_thin_room(dc, vg, wanted)
                op = functools.partial(
                    self._lvm.create_thin_lv, vg=vg.name, pool=pool.name, name=name, size=size_bytes, tags=tags
                )
            else:
                if not capacity.fits(vg, size_bytes, layout):
                    raise errors.InsufficientCapacity(
                        f"device class {dc.name!r} cannot fit {wanted} bytes: at most "
                        f"{capacity.largest_lv(vg, layout)} bytes can be allocated now"
                    )
                options = option_class.options if option_class is not None else dc.lvcreate_options
                op = functools.partial(
                    self._lvm.create_lv, vg=vg.name, name=name, size=size_bytes, tags=tags,
                    stripes=dc.stripes, stripe_size=dc.stripe_size, options=options,
                )  # fmt: skip
            self._mutate(op)
            log.info("created LV %s/%s (%d bytes, class %s)", vg.name, name, wanted, dc.name)
            return self._require_lv(dc, name)

    def remove_lv(self, *, name: str, device_class: str) -> None:
        _check_request(name, None)
        dc = devclass.find(self._config.device_classes, device_class)
        with self._lock:
            vg = self._vg(dc)
            lv = vg.find_lv(name)
            if lv is None:
                return
            if not self._belongs(dc, lv):
                raise errors.FailedPrecondition(f"LV {vg.name}/{name} is not a volume of device class {dc.name!r}")
            self._mutate(lambda: self._lvm.remove_lv(vg=vg.name, name=name))
            log.info("removed LV %s/%s (class %s)", vg.name, name, dc.name)

    def resize_lv(self, *, name: str, device_class: str, size_bytes: int) -> model.LogicalVolume:
        _check_request(name, size_bytes)
        dc = devclass.find(self._config.device_classes, device_class)
        with self._lock:
            vg = self._vg(dc)
            lv = self._require_lv(dc, name)
            layout = devclass.layout(dc) if dc.type is model.DeviceType.THICK else capacity.LINEAR
            wanted = capacity.round_up(size_bytes, layout, vg.extent_size)
            if wanted < lv.size:
                raise errors.OutOfRange(
                    f"LV {vg.name}/{name} is {lv.size} bytes; shrinking to {wanted} is not supported"
                )
            if wanted == lv.size:
                return lv
            if dc.type is model.DeviceType.THIN:
                self._check_thin_room(dc, vg, wanted - lv.size)
            elif wanted - lv.size > capacity.largest_growth(vg, layout):
                raise errors.InsufficientCapacity(
                    f"device class {dc.name!r} cannot grow {name!r} by {wanted - lv.size} bytes"
                )
            self._mutate(lambda: self._lvm.resize_lv(vg=vg.name, name=name, size=wanted))
            log.info("resized LV %s/%s to %d bytes", vg.name, name, wanted)
            return self._require_lv(dc, name)

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
        if dc.type is not model.DeviceType.THIN:
            raise errors.InvalidArgument(f"device class {dc.name!r} is thick; snapshots need a thin device class")
        with self._lock:
            vg = self._vg(dc)
            source = self._require_lv(dc, source_volume)
            wanted = max(capacity.round_up(size_bytes, capacity.LINEAR, vg.extent_size), source.size)
            existing = vg.find_lv(name)
            if existing is not None:
                if existing.origin == source_volume and existing.size == wanted and self._belongs(dc, existing):
                    return existing
                raise errors.AlreadyExists(f"logical volume {name!r} already exists and is not this snapshot")
            self._check_thin_room(dc, vg, wanted)
            read_only = access_type is model.AccessType.READ_ONLY
            self._mutate(
                lambda: self._lvm.create_snapshot(
                    vg=vg.name, source=source_volume, name=name, tags=tags, read_only=read_only
                )
            )
            if wanted > source.size:
                self._mutate(lambda: self._lvm.resize_lv(vg=vg.name, name=name, size=wanted))
            log.info("created snapshot %s/%s of %s (%d bytes)", vg.name, name, source_volume, wanted)
            return self._require_lv(dc, name)

    # --- VGService ---
    def list_lvs(self, *, device_class: str) -> list[model.LogicalVolume]:
        dc = devclass.find(self._config.device_classes, device_class)
        with self._lock:
            vg = self._vg(dc)
            return [lv for lv in vg.lvs if self._belongs(dc, lv)]

    def free_bytes(self, *, device_class: str) -> int:
        dc = devclass.find(self._config.device_classes, device_class)
        with self._lock:
            stats = self._capacity_locked().for_class(dc.name)
        return stats.free_bytes if stats is not None else 0

    def capacity(self) -> model.NodeCapacity:
        with self._lock:
            return self._capacity_locked()

    def watch(self, listener: ports.CapacityListener) -> ports.Subscription:
        with self._lock:
            self._listeners.append(listener)
            current = self._capacity_locked()
        listener(current)
        return _Subscription(self, listener)

    # --- internals ---
    def _unsubscribe(self, listener: ports.CapacityListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _mutate(self, op: Callable[[], None]) -> None:
        """Run one mutating lvm call, then refresh state whether it worked or not (it may be stale)."""
        try:
            op()
        finally:
            self.refresh()

    def _capacity_locked(self) -> model.NodeCapacity:
        stats = []
        for dc in self._config.device_classes:
            vg = self._state.vg(dc.volume_group)
            if vg is None:
                stats.append(model.DeviceClassStats(dc.name, dc.default, 0, 0))
                continue
            stats.append(capacity.class_stats(dc, vg, devclass.layout(dc)))
        return model.NodeCapacity(tuple(stats))

    def _vg(self, dc: model.DeviceClass) -> model.VolumeGroup:
        vg = self._state.vg(dc.volume_group)
        if vg is None:
            raise errors.NotFound(f"volume group {dc.volume_group!r} of device class {dc.name!r} not found")
        return vg

    def _pool(self, dc: model.DeviceClass, vg: model.VolumeGroup) -> model.LogicalVolume:
        assert dc.thin_pool is not None
        pool = capacity.thin_pool_lv(vg, dc.thin_pool.name)
        if pool is None:
            raise errors.NotFound(f"thin pool {vg.name}/{dc.thin_pool.name} of device class {dc.name!r} not found")
        return pool

    def _check_thin_room(self, dc: model.DeviceClass, vg: model.VolumeGroup, extra: int) -> None:
        assert dc.thin_pool is not None
        pool = self._pool(dc, vg)
        free = capacity.thin_free_bytes(
            pool.size, dc.thin_pool.overprovision_ratio, capacity.thin_virtual_used(vg, pool.name)
        )
        if extra > free:
            raise errors.InsufficientCapacity(
                f"thin pool {vg.name}/{pool.name} can provide {free} more bytes (overprovision ratio "
                f"{dc.thin_pool.overprovision_ratio}), {extra} requested"
            )

    @staticmethod
    def _belongs(dc: model.DeviceClass, lv: model.LogicalVolume) -> bool:
        if lv.is_hidden or lv.is_thin_pool:
            return False
        if dc.type is model.DeviceType.THIN:
            assert dc.thin_pool is not None
            return lv.is_thin and lv.pool == dc.thin_pool.name
        return not lv.is_thin

    def _require_lv(self, dc: model.DeviceClass, name: str) -> model.LogicalVolume:
        lv = self._vg(dc).find_lv(name)
        if lv is None or not self._belongs(dc, lv):
            raise errors.NotFound(f"logical volume {name!r} of device class {dc.name!r} not found")
        return lv
