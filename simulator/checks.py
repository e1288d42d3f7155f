"""The checks scenario files go through, each raising ValueError with a message naming the offending value
(``scenario`` prefixes the key). Sizes, durations and rates come from ``simulator.units``."""

from __future__ import annotations

import re
from typing import Any

from simulator import units
from topolvm import errors
from topolvm.core import names, quantity

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def positive_duration(text: object) -> float:
    value = units.duration(text)
    if value <= 0:
        raise ValueError(f"duration {text!r} must be more than 0")
    return value


def positive_size(text: object) -> int:
    value = units.size(text)
    if value <= 0:
        raise ValueError(f"size {text!r} must be more than 0")
    return value


def positive_rate(text: object) -> float:
    value = units.rate(text)
    if value <= 0:
        raise ValueError(f"rate {text!r} must be more than 0")
    return value


def label_key(key: str) -> None:
    """A Kubernetes label or taint key: an optional DNS-subdomain prefix and a name."""
    prefix, _, name = key.rpartition("/")
    if (prefix and not DNS_SUBDOMAIN.match(prefix)) or not LABEL_NAME.match(name):
        raise ValueError(f"{key!r} is not a valid Kubernetes label key")


def vg_name(name: str) -> None:
    try:
        names.check_vg_name(name)
    except errors.InvalidArgument as exc:
        raise ValueError(str(exc)) from None


def cpu(text: object) -> int:
    if not isinstance(text, str):
        raise ValueError(f"cpu {text!r} must be a quantity string like '500m' or '4'")
    try:
        return quantity.to_milli(text)
    except errors.InvalidArgument as exc:
        raise ValueError(f"cpu {text!r}: {exc}") from None


def check(parse: Any, value: object, key: str) -> None:
    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def ok(parse: Any, value: object) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True
