"""Sizes, durations and rates as scenario files write them: always with a unit.

A size is a Kubernetes quantity ("100Gi", "3.84T"); a bare number is refused, because "100" bytes is almost
never what someone writing a capacity plan meant. A duration is a number with ms, s, m, h, d or w; a rate is a
count per unit ("2/h", "0.5/d").
"""

from __future__ import annotations

import functools
import re

from topolvm import errors
from topolvm.core import quantity

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RATE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)/(ms|s|m|h|d|w)$")


@functools.lru_cache(maxsize=4096)
def size(text: object) -> int:
    """Bytes of a quantity with a unit; ValueError (naming the value) otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"size {text!r} needs a unit, e.g. '100Gi'")
    stripped = text.strip()
    if not stripped or stripped[-1].isdigit() or stripped[-1] == ".":
        raise ValueError(f"size {text!r} needs a unit, e.g. '100Gi'")
    try:
        return quantity.to_bytes(stripped)
    except errors.InvalidArgument as exc:
        raise ValueError(f"size {text!r}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def duration(text: object) -> float:
    """Seconds of a duration with a unit ("30d", "250ms")."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"duration {text!r} needs a number and a unit (ms, s, m, h, d, w), e.g. '30d'")
    return float(match.group(1)) * _SECONDS[match.group(2)]


@functools.lru_cache(maxsize=4096)
def rate(text: object) -> float:
    """Events per second of a rate ("2/h")."""
    match = _RATE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"rate {text!r} must be a count per unit, e.g. '2/h'")
    return float(match.group(1)) / _SECONDS[match.group(2)]


def text_of_bytes(value: float) -> str:
    """A human figure for reports: 1.5 TiB, 200 GiB."""
    for unit, factor in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if abs(value) >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value:.0f} B"


def text_of_seconds(value: float) -> str:
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(value) >= factor:
            return f"{value / factor:.1f}{unit}"
    return f"{value:.1f}s"
