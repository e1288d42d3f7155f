"""Kubernetes quantities to bytes, rounded up like Go's Quantity.Value()."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topolvm import errors
from topolvm.core import quantity


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1Gi", 1 << 30),
        ("1.5Gi", 3 << 29),
        ("500M", 500_000_000),
        ("1k", 1000),
        ("100m", 1),  # 0.1 byte rounds up
        ("0", 0),
        ("1e3", 1000),
        ("1E3", 1000),
        ("2.5e-1", 1),
        (".5Ki", 512),
        ("10", 10),
        ("+3", 3),
    ],
)
def test_to_bytes(text: str, size: int) -> None:
    assert quantity.to_bytes(text) == size


@pytest.mark.parametrize("text", ["", "Gi", "1GB", "1 Gi", "-1Gi", "1Gi\n", "abc", "1e999", "99999999Ei", "0x10"])
def test_rejects(text: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        quantity.to_bytes(text)


@given(st.text(max_size=30))
def test_never_crashes(text: str) -> None:
    with contextlib.suppress(errors.InvalidArgument):
        assert quantity.to_bytes(text) >= 0
