"""Per-volume IO limits: StorageClass parameters, their validation, and the cgroup v2 ``io.max`` line they make.

Upstream TopoLVM has no IO limits; these parameters are ours (docs/iolimits.md). Each of the four dimensions
(read/write IOPS, read/write bytes per second) is either absolute or per GiB of the volume's size, never both:

    topolvm.io/read-iops                     topolvm.io/read-iops-per-gib
    topolvm.io/write-iops                    topolvm.io/write-iops-per-gib
    topolvm.io/read-bytes-per-second         topolvm.io/read-bytes-per-second-per-gib
    topolvm.io/write-bytes-per-second        topolvm.io/write-bytes-per-second-per-gib

IOPS are positive integers; bytes per second are whole-byte Kubernetes quantities of at least 4 KiB/s ("100Mi",
"5M", "1048576"; "100m", a milli quantity, is refused rather than read as a tenth of a byte). Any other
``topolvm.io/`` parameter that names IOPS or bytes per second is refused as a misspelling.
The controller validates them at CreateVolume (INVALID_ARGUMENT naming the parameter, before anything is made)
and passes them through the volume context, unchanged, to NodePublish, which resolves per-GiB values against the
volume's size at that moment (whole GiB, rounded up) and writes them to the consuming pod's cgroup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from topolvm import errors
from topolvm.core import quantity

GiB = 1 << 30
PREFIX = "topolvm.io/"
# cgroup v2 io.max keys, in the order the kernel prints them.
KEYS = ("rbps", "wbps", "riops", "wiops")
_NAMES = {
    "rbps": "read-bytes-per-second",
    "wbps": "write-bytes-per-second",
    "riops": "read-iops",
    "wiops": "write-iops",
}
PER_GIB = "-per-gib"
PARAMETERS = frozenset(PREFIX + n + suffix for n in _NAMES.values() for suffix in ("", PER_GIB))
_MAX = (1 << 63) - 1  # the kernel parses io.max values as u64; stay well inside it
MIN_BPS = 4096  # one page a second: anything less stalls the pod rather than limiting it
POD_UID = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]{0,63}")  # a Kubernetes UID; it becomes part of a cgroup path


def check_pod_uid(pod_uid: str) -> str:
    if not POD_UID.fullmatch(pod_uid):
        raise errors.InvalidArgument(f"pod UID {pod_uid[:80]!r} is not a Kubernetes UID")
    return pod_uid


@dataclass(frozen=True)
class Limit:
    value: int
    per_gib: bool = False

    def resolve(self, size_bytes: int) -> int:
        if not self.per_gib:
            return self.value
        return min(_MAX, self.value * max(1, math.ceil(size_bytes / GiB)))


@dataclass(frozen=True)
class IoLimits:
    """Limits by io.max key; a key not present is unlimited."""

    limits: Mapping[str, Limit]

    def resolve(self, size_bytes: int) -> dict[str, int]:
        return {key: self.limits[key].resolve(size_bytes) for key in KEYS if key in self.limits}

    def parameters(self) -> dict[str, str]:
        """The StorageClass parameters these limits came from, in canonical form (for the volume context)."""
        return {
            PREFIX + _NAMES[key] + (PER_GIB if limit.per_gib else ""): str(limit.value)
            for key, limit in self.limits.items()
        }


def _value(name: str, raw: str, *, iops: bool) -> int:
    text = raw.strip()
    try:
        if iops and not (text.isascii() and text.isdigit()):
            raise ValueError(text)
        value = int(text) if iops else quantity.to_bytes(text)
        if not iops and quantity.to_milli(text) % 1000:
            raise ValueError(text)  # a fraction of a byte: "100m" is a typo for "100M", not 0.1 byte/s
    except (ValueError, errors.InvalidArgument):
        kind = "a positive integer" if iops else "a whole number of bytes such as 100Mi"
        raise errors.InvalidArgument(f"parameter {name}={raw!r}: must be {kind}") from None
    if value <= 0:
        raise errors.InvalidArgument(f"parameter {name}={raw!r}: must be greater than zero")
    if not iops and value < MIN_BPS:
        raise errors.InvalidArgument(f"parameter {name}={raw!r}: must be at least {MIN_BPS} bytes per second")
    if value > _MAX:
        raise errors.InvalidArgument(f"parameter {name}={raw!r}: must be at most {_MAX}")
    return value


def parse(parameters: Mapping[str, str]) -> IoLimits | None:
    """The IO limits in StorageClass parameters (or a volume context), None if there are none.

    InvalidArgument names the parameter for a bad value, for a ``topolvm.io/`` key that names IOPS or bytes
    per second but is none of ours (a misspelling would leave the volume unlimited), and for absolute plus
    per-GiB in one dimension. Other parameters are not judged here."""
    for param in parameters:
        named = any(word in param.lower() for word in ("iop", "bytes", "per-sec"))
        if param.startswith(PREFIX) and param not in PARAMETERS and named:
            raise errors.InvalidArgument(
                f"parameter {param} is not an IO limit this driver knows: use one of {', '.join(sorted(PARAMETERS))}"
            )
    limits: dict[str, Limit] = {}
    for key, name in _NAMES.items():
        absolute, per_gib = PREFIX + name, PREFIX + name + PER_GIB
        if absolute in parameters and per_gib in parameters:
            raise errors.InvalidArgument(f"parameters {absolute} and {per_gib} are exclusive: set one of them")
        for param, is_per_gib in ((absolute, False), (per_gib, True)):
            if param in parameters:
                limits[key] = Limit(_value(param, parameters[param], iops=key.endswith("iops")), per_gib=is_per_gib)
    return IoLimits(limits) if limits else None


def io_max_line(major: int, minor: int, values: Mapping[str, int]) -> str:
    """The line written to a cgroup's ``io.max`` for one device; keys not in ``values`` are set to ``max``
    (so the same call both sets and clears)."""
    fields = " ".join(f"{key}={values.get(key, 'max')}" for key in KEYS)
    return f"{major}:{minor} {fields}"


def read_io_max(text: str, major: int, minor: int) -> dict[str, int]:
    """The limits a cgroup's ``io.max`` holds for one device (unlimited keys left out)."""
    for line in text.splitlines():
        dev, _, rest = line.partition(" ")
        if dev != f"{major}:{minor}":
            continue
        found = {}
        for field in rest.split():
            key, _, value = field.partition("=")
            if key in KEYS and value != "max":
                found[key] = int(value)
        return found
    return {}
