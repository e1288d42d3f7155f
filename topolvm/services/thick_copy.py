"""Snapshots, restores and clones on thick device classes: full copies, independent of their source.

An LVM COW snapshot of a thick LV needs space of its own, slows every write to its origin, turns invalid when its
COW area fills, and is destroyed with its origin; a CSI snapshot must outlive its source. So a thick snapshot here
is a new LV of the source's size holding a copy of its data as of one instant: lvmd makes the destination (tagged
``topolvm.io/copying`` and ``topolvm.io/copy-of=<source>``), copies the source through a transient COW snapshot
(``Lvm.copy_lv``; 10 % of the source, at least one extent, gone when the copy is done), then drops the copying
tag and, for a snapshot, makes the LV read-only. Restoring a snapshot or cloning a volume is the same copy into a
writable LV. Deleting the source never touches its snapshots. The cost: a snapshot takes its source's full size
(the scheduler and the simulator see it as used space), and creating one reads and writes the whole volume.

The copy runs outside lvmd's lock, so other requests go on meanwhile; at most ``MAX_COPIES`` run at once, and a
request beyond that, or for a copy still running in this process, is told UNAVAILABLE (retry). A destination
still tagged ``copying`` that no copy in this process is writing (lvmd died mid-copy) is removed and copied
again, never handed out half-done. A transient ``-copy`` snapshot no copy is using (lvmd died, or its removal
failed) is swept at start, after each copy and with its destination, so it cannot linger on its origin, slowing
its writes and blocking its expansion. docs/thick-snapshots.md has the design and its limits.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from topolvm import constants, errors
from topolvm.core import capacity, devclass, model

if TYPE_CHECKING:
    from topolvm.services.lvmd import LvmdService

log = logging.getLogger(__name__)

COPYING_TAG = "topolvm.io/copying"
COPY_OF_TAG = "topolvm.io/copy-of="
COW_FRACTION = 10  # the transient COW snapshot holds 1/10 of the source's size
COPY_SUFFIX = constants.COPY_SNAPSHOT_SUFFIX
MAX_COPIES = 2  # each holds an lvmd gRPC thread and the disk's bandwidth for as long as it runs


def cow_size(source_size: int, extent_size: int) -> int:
    return capacity.round_up(max(source_size // COW_FRACTION, 1), capacity.LINEAR, extent_size)


class ThickCopies:
    def __init__(self, service: LvmdService) -> None:
        self._svc = service
        self._running: set[str] = set()  # destinations being copied by this process
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def slot(self, name: str, source_volume: str) -> Iterator[None]:
        """One of MAX_COPIES, and ``name`` copied by nobody else in this process, for the block's length
        (around ``create``)."""
        with self._guard:
            if name in self._running:
                raise errors.Unavailable(f"logical volume {name!r} is still being copied from {source_volume!r}")
            if len(self._running) >= MAX_COPIES:
                raise errors.Unavailable(f"{len(self._running)} copies are running on this node, the most allowed")
            self._running.add(name)
        try:
            yield
        finally:
            with self._guard:
                self._running.discard(name)

    def create(
        self,
        dc: model.DeviceClass,
        name: str,
        source_volume: str,
        size_bytes: int,
        *,
        read_only: bool,
        tags: Sequence[str],
    ) -> model.LogicalVolume:
        svc, lvm = self._svc, self._svc._lvm
        copy_of = COPY_OF_TAG + source_volume
        with svc._transaction():
            vg = svc._writable_vg(dc)
            source = svc._require_lv(dc, source_volume)
            wanted = max(capacity.round_up(size_bytes, capacity.LINEAR, vg.extent_size), source.size)
            existing = vg.find_lv(name)
            if existing is not None and COPYING_TAG in existing.tags and svc._belongs(dc, existing):
                log.warning("LV %s/%s is a copy that was interrupted: removing it to copy again", vg.name, name)
                svc._mutate(functools.partial(lvm.remove_lv, vg=vg.name, name=name))
                vg, existing = svc._vg(dc), None
            if existing is not None:
                if copy_of not in existing.tags or not svc._belongs(dc, existing) or existing.size > wanted:
                    raise errors.AlreadyExists(f"logical volume {name!r} already exists and is not this copy")
                if read_only and not existing.read_only:  # made read-only before its tag went: never needed
                    svc._mutate(functools.partial(lvm.change_lv, vg=vg.name, name=name, read_only=True))
                    vg = svc._vg(dc)
                return svc._grow_locked(dc, vg, svc._require_lv(dc, name), wanted)
            # The copy takes the class's default layout (lvcreate-options, stripes), like a new volume of it.
            layout = devclass.layout(dc)
            wanted = capacity.round_up(wanted, layout, vg.extent_size)
            cow = cow_size(source.size, vg.extent_size)
            if wanted > capacity.largest_lv(vg, layout, reserve=cow):
                raise errors.InsufficientCapacity(
                    f"device class {dc.name!r} cannot fit a copy of {source_volume!r}: {wanted} bytes plus "
                    f"{cow} for the copy's transient snapshot; at most "
                    f"{capacity.largest_lv(vg, layout, reserve=cow)} bytes can be allocated now"
                )
            create = functools.partial(
                lvm.create_lv, vg=vg.name, name=name, size=wanted,
                tags=[*dict.fromkeys([*tags, constants.MANAGED_TAG, COPYING_TAG, copy_of])],
                stripes=dc.stripes, stripe_size=dc.stripe_size, options=dc.lvcreate_options,
            )  # fmt: skip
            svc._mutate(create)
            vg_name = vg.name
        log.info("copying LV %s/%s into %s (%d bytes)", vg_name, source_volume, name, source.size)
        try:
            lvm.copy_lv(vg=vg_name, source=source_volume, name=name, cow_size=cow)
        except errors.TopoLVMError:
            try:
                with svc._transaction():
                    svc._mutate(functools.partial(lvm.remove_lv, vg=vg_name, name=name))
            except errors.TopoLVMError as exc:  # still tagged copying: the next attempt removes it
                log.warning("could not remove the failed copy %s/%s: %s", vg_name, name, exc)
            raise
        finally:
            with svc._transaction(catch_up=False):
                svc._refresh_locked()  # the transient snapshot came and went: capacity listeners hear the end
        with svc._transaction():
            if read_only:  # before the copying tag goes: a finished copy is never writable by mistake
                svc._mutate(functools.partial(lvm.change_lv, vg=vg_name, name=name, read_only=True))
            svc._mutate(functools.partial(lvm.change_lv, vg=vg_name, name=name, del_tags=[COPYING_TAG]))
            log.info("copied LV %s/%s into %s%s", vg_name, source_volume, name, " (read-only)" if read_only else "")
            self.sweep_locked(dc)
            return svc._require_lv(dc, name)

    # --- transient snapshots nobody uses any more ---
    def _stray(self, vg: model.VolumeGroup, dc: model.DeviceClass) -> list[str]:
        """Transient ``-copy`` snapshots of this class's volumes that no running copy is reading."""
        with self._guard:
            running = set(self._running)
        stray = []
        for lv in vg.lvs:
            origin = vg.find_lv(lv.origin) if lv.origin and not lv.is_thin else None
            destination = lv.name.removesuffix(COPY_SUFFIX)
            if origin is None or destination == lv.name or destination in running:
                continue
            if self._svc._belongs(dc, origin):
                stray.append(lv.name)
        return stray

    def sweep_locked(self, dc: model.DeviceClass, destination: str | None = None) -> None:
        """Remove stray transient snapshots (all of them, or ``destination``'s); under lvmd's lock."""
        vg = self._svc._vg(dc)
        for name in self._stray(vg, dc):
            if destination is not None and name != destination + COPY_SUFFIX:
                continue
            log.warning("removing the transient snapshot %s/%s of a copy that is over", vg.name, name)
            try:
                self._svc._mutate(functools.partial(self._svc._lvm.remove_lv, vg=vg.name, name=name))
            except errors.TopoLVMError as exc:  # tried again at the next sweep
                log.warning("could not remove %s/%s: %s", vg.name, name, exc)

    def check_not_copied(self, vg: model.VolumeGroup, lv: model.LogicalVolume) -> None:
        """UNAVAILABLE while ``lv`` is the origin of a transient snapshot: lvm2 resizes a snapshot origin only
        while it is inactive."""
        if any(other.origin == lv.name and not other.is_thin for other in vg.lvs):
            raise errors.Unavailable(
                f"LV {vg.name}/{lv.name} is being copied (a snapshot or clone of it); it can grow once the copy ends"
            )
