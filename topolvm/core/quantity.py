"""Kubernetes resource.Quantity strings ("1Gi", "500M", "1.5e3", "100m") to whole units (bytes), rounded up like
Go's ``Quantity.Value()``, or to thousandths like ``MilliValue()`` (CPU). Used wherever a quantity is read: the
webhook, the node service (inline ephemeral volume sizes), the Kubernetes codecs."""

from __future__ import annotations

import functools
import re
from fractions import Fraction

from topolvm import errors

_PATTERN = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"  # number
    r"(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?[0-9]+))?$"  # binary or decimal suffix, or exponent
)
_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
MAX_TEXT = 64
MAX_EXPONENT = 64
# Parsed values are remembered: a cluster names few distinct quantities ("250m", "512Mi") over and over, and
# parsing one through Fraction costs tens of microseconds. Errors are raised afresh each time (not cached).
_CACHED = 4096


@functools.lru_cache(maxsize=_CACHED)
def to_bytes(text: str) -> int:
    """Bytes a quantity stands for, rounded up; raises InvalidArgument for anything else, negatives included."""
    return _whole(_value(text), text)


@functools.lru_cache(maxsize=_CACHED)
def to_milli(text: str) -> int:
    """Thousandths of a quantity, rounded up ("1500m" and "1.5" -> 1500): how CPU amounts are compared."""
    return _whole(_value(text) * 1000, text)


def _value(text: str) -> Fraction:
    match = _PATTERN.fullmatch(text) if len(text) <= MAX_TEXT else None
    if match is None:
        raise errors.InvalidArgument(f"not a quantity: {text[:MAX_TEXT]!r}")
    number, suffix, exponent = match.groups()
    value = Fraction(number)
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix:
        value *= Fraction(10) ** _DECIMAL[suffix]
    elif exponent is not None:
        power = int(exponent)
        if abs(power) > MAX_EXPONENT:
            raise errors.InvalidArgument(f"quantity out of range: {text!r}")
        value *= Fraction(10) ** power
    if value < 0:
        raise errors.InvalidArgument(f"quantity must not be negative: {text!r}")
    return value


def _whole(value: Fraction, text: str) -> int:
    whole = -(-value.numerator // value.denominator)
    if whole > (1 << 63) - 1:
        raise errors.InvalidArgument(f"quantity out of range: {text!r}")
    return whole
