"""Volume sizing rules of CreateVolume/ControllerExpandVolume (upstream-compatible, docs/compat.md).

Called by the CSI controller service; pure so the simulator sizes volumes exactly as the driver does.
"""

from __future__ import annotations

from topolvm import errors

GiB = 1 << 30
MiB = 1 << 20
DEFAULT_SIZE = 1 * GiB
ALIGNMENT = 4096

# Smallest volume each filesystem can be made on ("block" is a raw block volume).
MINIMUM_SIZE = {"block": 8 * MiB, "ext4": 32 * MiB, "xfs": 300 * MiB, "btrfs": 200 * MiB}


def align(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


def volume_size(required_bytes: int, limit_bytes: int, fstype: str) -> int:
    """Bytes to allocate for a CSI CapacityRange.

    ``required == 0`` means "no minimum": use 1 GiB (or the limit if that is smaller). The result is aligned to
    4 KiB and at least the filesystem's minimum; a limit that rules all of that out is OUT_OF_RANGE.
    """
    if required_bytes < 0 or limit_bytes < 0:
        raise errors.OutOfRange("capacity range must not be negative")
    if limit_bytes and required_bytes > limit_bytes:
        raise errors.OutOfRange(f"required bytes {required_bytes} exceed the limit {limit_bytes}")
    minimum = MINIMUM_SIZE.get(fstype or "ext4")
    if minimum is None:
        raise errors.InvalidArgument(f"unsupported filesystem type {fstype!r}")
    size = required_bytes or DEFAULT_SIZE
    if not required_bytes and limit_bytes:
        size = min(size, limit_bytes)
    size = max(align(size), minimum)
    if limit_bytes and size > limit_bytes:
        raise errors.OutOfRange(
            f"limit {limit_bytes} bytes is below the smallest {fstype or 'ext4'} volume ({size} bytes)"
        )
    return size
