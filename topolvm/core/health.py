"""Volume health from LVM's ``lv_attr`` (lvs(8)), for CSI's NodeGetVolumeHealth (spec v1.13).

An LV's adverse conditions as CSI VolumeHealth entries: a status (DEGRADED: usable but not as it should be;
INACCESSIBLE: I/O cannot reach the data; DATA_LOSS: data is known lost), a CamelCase reason for machines and a
message for people. No entry means healthy. kubelet (feature gate CSIVolumeHealth) asks once per
volumeStatsAggPeriod and puts the entries in the pod's ``status.volumeHealth``.

Called by the node service (``topolvm.services.publish``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    DEGRADED = "DEGRADED"
    INACCESSIBLE = "INACCESSIBLE"
    DATA_LOSS = "DATA_LOSS"


@dataclass(frozen=True)
class Problem:
    status: Status
    reason: str
    message: str


# lv_attr[4] of an LV in a VG lvm2 no longer reports (lvmd's own letter: lvm2's states are a h s I S m M d i c C X -;
# 'X', unknown, is what every LV says where activation is off, so it cannot mean "lost").
LOST_STATE = "L"
_MISSING_PV = "one or more PVs of this LV are missing (lvs: partial)"
_LOST_VG = "its volume group is no longer found: every PV of it is missing (a VG's only disk died?)"
# lv_attr[8], "volume health" (lvs(8)); 'p' (partial) depends on the layout, below. 'w' (writemostly) and
# 'X' (unknown) are not problems.
_HEALTH = {
    "r": Problem(Status.DEGRADED, "RaidImageFailed", "a RAID image failed (lvs: refresh needed: lvchange --refresh)"),
    "m": Problem(Status.DEGRADED, "RaidMismatches", "the RAID scrub found mismatches between images"),
    "F": Problem(Status.INACCESSIBLE, "ThinPoolFailed", "the thin pool or thin volume failed"),
    "D": Problem(Status.DEGRADED, "ThinPoolOutOfDataSpace", "the thin pool is out of data space: writes fail"),
    "M": Problem(Status.DEGRADED, "ThinPoolMetadataReadOnly", "the thin pool's metadata failed and is read only"),
    "E": Problem(Status.DEGRADED, "WritecacheError", "dm-writecache reports an error"),
}
# lv_attr[4], the state; 'a' (active) and '-' (inactive: nothing is mounted from it) are not problems.
_STATE = {
    "s": Problem(Status.INACCESSIBLE, "Suspended", "the LV is suspended: I/O waits"),
    "I": Problem(Status.DATA_LOSS, "SnapshotInvalid", "the snapshot overflowed and is invalid"),
    "S": Problem(Status.DATA_LOSS, "SnapshotInvalid", "the snapshot overflowed and is invalid (suspended)"),
    "m": Problem(Status.DEGRADED, "SnapshotMergeFailed", "merging the snapshot failed"),
    "M": Problem(Status.DEGRADED, "SnapshotMergeFailed", "merging the snapshot failed (suspended)"),
    "d": Problem(Status.INACCESSIBLE, "DeviceWithoutTable", "the mapped device has no table"),
    "i": Problem(Status.INACCESSIBLE, "DeviceInactiveTable", "the mapped device has only an inactive table"),
    "c": Problem(Status.DEGRADED, "ThinPoolCheckNeeded", "the thin pool needs a check (thin_check)"),
    "C": Problem(Status.DEGRADED, "ThinPoolCheckNeeded", "the thin pool needs a check (thin_check; suspended)"),
}


def problems(attr: str) -> tuple[Problem, ...]:
    """What is wrong with an LV, from its ``lv_attr`` alone (what lvmd's gRPC API carries)."""
    found = []
    state = attr[4:5]
    if state not in ("a", "-", "X", LOST_STATE, ""):
        found.append(_STATE.get(state, Problem(Status.DEGRADED, "UnknownState", f"LV state {state!r} (lvs(8))")))
    letter = attr[8:9]
    if state == LOST_STATE:  # lvmd's mark for a VG lvm2 no longer reports at all (mark_lost)
        found.append(Problem(Status.INACCESSIBLE, "VolumeGroupLost", _LOST_VG))
    elif letter == "p":
        # RAID or mirror: the surviving images serve the data. lvmd's API carries no segment type, so raid0
        # (no redundancy) and a RAID LV that lost more images than it can spare are reported so too.
        if attr[:1] in ("r", "R", "m", "M"):
            found.append(Problem(Status.DEGRADED, "PhysicalVolumeMissing", f"{_MISSING_PV}; running on the rest"))
        else:
            found.append(Problem(Status.INACCESSIBLE, "PhysicalVolumeMissing", _MISSING_PV))
    elif letter in _HEALTH:
        found.append(_HEALTH[letter])
    return tuple(found)


def mark_partial(attr: str) -> str:
    """``attr`` with volume health 'p', as lvm2 reports an LV with extents on a missing PV."""
    return attr[:8] + "p" + attr[9:]


def with_pool_health(attr: str, pool_attr: str) -> str:
    """A thin LV's ``attr`` carrying its pool's failure (out of data space, metadata read only, failed), which
    lvm2 reports on the pool alone; the LV's own health letter, if any, wins."""
    letter = pool_attr[8:9]
    if len(attr) < 9 or attr[8] != "-" or letter not in ("D", "M", "F"):
        return attr
    return attr[:8] + letter + attr[9:]


def mark_lost(attr: str) -> str:
    """``attr`` of an LV whose whole VG lvm2 no longer reports: state ``LOST_STATE`` and health 'p'."""
    return attr[:4] + LOST_STATE + attr[5:8] + "p" + attr[9:]
