"""``StateKeeper``: the state of lvmd's VGs from one report call, and when it is read again.

The state is refreshed after every mutation (one mutating lvm call plus one report per request) and whenever the
runtime asks (``refresh``); between requests no lvm command runs (upstream #1221 runs about 40 a minute). A
request that finds the state older than ``max_state_age`` starts a re-read in the background (one at a time,
without the lock: the request does not wait), so what a disk's failure does to a VG (a missing PV, a partial LV)
reaches volume health one age and one request later however rarely lvmd mutates, at most one report per age
however often it is asked, failing or not. If a refresh fails the state is marked stale and the next request
re-reads LVM before deciding anything. A VG that vanishes from the report (every disk dead) is kept as lost.
Listeners (the Watch stream, the capacity publisher) hear about every capacity change, in order, never under the
lock. ``topolvm.services.lvmd.LvmdService`` decides requests on this state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator

from topolvm import errors, ports
from topolvm.core import capacity, devclass, health, model
from topolvm.services import broadcast

log = logging.getLogger("topolvm.services.lvmd")  # lvmd's log, as before this module was split out


def _keep_lost_vgs(last: model.LvmState, fresh: model.LvmState) -> model.LvmState:
    """``fresh``, plus every VG of ``last`` that it no longer has, as lost: all its PVs missing, no free space,
    its LVs marked lost (health: INACCESSIBLE VolumeGroupLost). lvm2 reports nothing of a VG whose every disk
    died (its metadata is nowhere), so its volumes would otherwise vanish; like a VG that lost some PVs it gets
    no allocation. It comes back as lvm2 reports it once its disks do."""
    lost = [vg for name, vg in last.vgs.items() if name not in fresh.vgs]
    if not lost:
        return fresh
    vgs = dict(fresh.vgs)
    for vg in lost:
        if vg.missing_pvs < len(vg.pvs) or not vg.pvs:  # newly lost
            log.warning("volume group %s is no longer found: all its %d PVs are missing, its %d LVs partial",
                        vg.name, len(vg.pvs), len(vg.lvs))  # fmt: skip
        vgs[vg.name] = dataclasses.replace(
            vg,
            free=0,
            missing_pvs=max(len(vg.pvs), 1),
            pvs=tuple(dataclasses.replace(pv, free=0, missing=True) for pv in vg.pvs),
            lvs=tuple(dataclasses.replace(lv, attr=health.mark_lost(lv.attr)) for lv in vg.lvs),
        )
    return model.LvmState(vgs)


class StateKeeper:
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
        devclass.validate(config)
        if max_state_age is not None and (max_state_age <= 0 or clock is None):
            raise errors.ConfigError(f"max_state_age must be positive and come with a clock, got {max_state_age}")
        self._lvm = lvm
        self._config = config
        self._max_age = max_state_age
        self._clock = clock
        self._lock = threading.RLock()
        self._state = model.LvmState()
        self._stale = True  # nothing read yet, or the last refresh failed
        self._read_at = 0.0  # clock time of the last successful report
        self._tried_at = 0.0  # ... and of the last age-driven try (a failing one is retried an age later)
        self._refreshing = False  # an age-driven report is running
        self._generation = 0  # reports installed
        self._seq = 0
        self._last_capacity: model.NodeCapacity | None = None
        self._pending: tuple[int, model.NodeCapacity] | None = None
        self._broadcast: broadcast.Broadcaster[model.NodeCapacity] = broadcast.Broadcaster()

    def refresh(self) -> None:
        """Re-read LVM (one report call) and tell listeners if capacity changed."""
        with self._transaction(catch_up=False):
            self._refresh_locked()

    @contextlib.contextmanager
    def _transaction(self, *, catch_up: bool = True) -> Iterator[None]:
        """Hold the lock for a request (re-reading LVM first if the state is stale); deliver any capacity
        change after releasing the lock, never under it."""
        try:
            with self._lock:
                if catch_up and self._stale:
                    self._refresh_locked()
                elif catch_up:
                    self._refresh_if_old_locked()
                yield
        finally:
            with self._lock:
                pending, self._pending = self._pending, None
            if pending is not None:
                self._broadcast.deliver(*pending)

    def _refresh_if_old_locked(self) -> None:
        """Past ``max_state_age`` since the last report (or the last try), re-read LVM in the background, one
        report at a time, outside the lock: the request goes on with the state it has, so a slow or hung report
        (a dying disk) delays no request, and a failing one is tried again only an age later."""
        if self._clock is None or self._max_age is None or self._refreshing:
            return
        now = self._clock.now()
        if now - max(self._read_at, self._tried_at) < self._max_age:
            return
        self._refreshing, self._tried_at = True, now
        threading.Thread(
            target=self._refresh_in_background, args=(self._generation,), name="lvmd-state-age", daemon=True
        ).start()

    def _refresh_in_background(self, generation: int) -> None:
        try:
            fresh = self._lvm.report(vg_names=self._config.volume_groups())
        except Exception as exc:
            log.warning("re-reading LVM (state older than %gs) failed, serving the last report: %s", self._max_age, exc)
            with self._lock:
                self._refreshing = False
            return
        with self._transaction(catch_up=False):
            self._refreshing = False
            if generation == self._generation:  # else a request re-read LVM meanwhile: its report is newer
                self._install_locked(fresh)

    def _refresh_locked(self) -> None:
        try:
            fresh = self._lvm.report(vg_names=self._config.volume_groups())
        except errors.TopoLVMError as exc:
            self._stale = True
            raise errors.Unavailable(f"cannot read LVM state: {exc}") from exc
        self._install_locked(fresh)

    def _install_locked(self, fresh: model.LvmState) -> None:
        self._state = _keep_lost_vgs(self._state, fresh)
        self._generation += 1
        self._stale = False
        self._read_at = self._clock.now() if self._clock is not None else 0.0
        current = self._capacity_locked()
        if current != self._last_capacity:
            self._last_capacity = current
            self._seq += 1
            self._pending = (self._seq, current)

    def _mutate(self, op: Callable[[], None]) -> None:
        """Run one mutating lvm call, then re-read LVM whether it worked or not (either way state moved)."""
        try:
            op()
        finally:
            self._refresh_locked()

    def watch(self, listener: ports.CapacityListener) -> ports.Subscription:
        def current() -> tuple[int, model.NodeCapacity]:
            with self._lock:
                return self._seq, self._capacity_locked()

        return self._broadcast.subscribe(listener, current)

    def _capacity_locked(self) -> model.NodeCapacity:
        stats = []
        for dc in self._config.device_classes:
            vg = self._state.vg(dc.volume_group)
            if vg is None:
                stats.append(model.DeviceClassStats(dc.name, dc.default, 0, 0))
                continue
            stats.append(capacity.class_stats(dc, vg, devclass.layout(dc)))
        return model.NodeCapacity(tuple(stats))
