"""Volume health from LVM's ``lv_attr`` (lvs(8)), for CSI VolumeCondition.

Called by the node service (NodeGetVolumeStats) and by anything that reports LV health.
"""

from __future__ import annotations

from dataclasses import dataclass

# lv_attr[8], "volume health": what each letter means (lvs(8)).
_HEALTH = {
    "p": "partial: one or more PVs of this LV are missing",
    "r": "refresh needed: a RAID image failed and needs repair",
    "m": "mismatches: the RAID scrub found mismatches",
    "w": "writemostly",
    "X": "unknown",
    "F": "failed: the thin pool or LV failed",
    "D": "out of data space: the thin pool is full",
    "M": "metadata read only: the thin pool metadata failed",
    "E": "dm-writecache reports an error",
}
_ABNORMAL = set("prmFDME")


@dataclass(frozen=True)
class Condition:
    abnormal: bool
    message: str


def condition(attr: str) -> Condition:
    if len(attr) < 9:
        return Condition(False, "healthy")
    letter = attr[8]
    if letter in _ABNORMAL:
        return Condition(True, _HEALTH[letter])
    if attr[4:5] not in ("a", "-", "X", ""):
        # lv_attr[4] is the activation state: suspended ('s'), invalid snapshot ('I'), ...
        return Condition(True, f"LV state {attr[4]!r} (see lvs(8))")
    return Condition(False, "healthy")
