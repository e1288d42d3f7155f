from __future__ import annotations

import pytest

from topolvm import errors
from topolvm.core import sizing

MiB = 1 << 20
GiB = 1 << 30


@pytest.mark.parametrize(
    ("required", "limit", "fstype", "expected"),
    [
        pytest.param(0, 0, "ext4", GiB, id="default-1GiB"),
        pytest.param(1, 0, "ext4", 32 * MiB, id="ext4-minimum"),
        pytest.param(1, 0, "xfs", 300 * MiB, id="xfs-minimum"),
        pytest.param(1, 0, "btrfs", 200 * MiB, id="btrfs-minimum"),
        pytest.param(1, 0, "block", 8 * MiB, id="block-minimum"),
        pytest.param(GiB + 1, 0, "ext4", GiB + 4096, id="aligned-4k"),
        pytest.param(0, 512 * MiB, "ext4", 512 * MiB, id="no-minimum-but-limit"),
        pytest.param(100 * MiB, 100 * MiB, "", 100 * MiB, id="default-fs-is-ext4"),
    ],
)
def test_volume_size(required: int, limit: int, fstype: str, expected: int) -> None:
    assert sizing.volume_size(required, limit, fstype) == expected


@pytest.mark.parametrize(
    ("required", "limit", "fstype", "error"),
    [
        pytest.param(2 * GiB, GiB, "ext4", errors.OutOfRange, id="required-above-limit"),
        pytest.param(0, 100 * MiB, "xfs", errors.OutOfRange, id="limit-below-xfs-minimum"),
        pytest.param(-1, 0, "ext4", errors.OutOfRange, id="negative"),
        pytest.param(GiB, 0, "ntfs", errors.InvalidArgument, id="unsupported-fs"),
    ],
)
def test_volume_size_errors(required: int, limit: int, fstype: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        sizing.volume_size(required, limit, fstype)
