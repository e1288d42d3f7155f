"""Validation of every name that can reach an lvm command line or a Kubernetes key.

Called by the lvmd service before any command runs, by the config loader, and by adapters as a last guard.
Rules follow lvm(8) "VALID NAMES" and Kubernetes qualified names; they are stricter where LVM's own parser
would accept something surprising (a leading '-' would be read as an option).
"""

from __future__ import annotations

import re

from topolvm import errors

MAX_LV_NAME = 127
MAX_VG_NAME = 127
MAX_TAG = 1024
MAX_DEVICE_CLASS_NAME = 63

_LVM_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.\-]*")
# lvm(8): an LV name may not contain these strings, which name LVM's own sub-volumes.
_RESERVED_LV_PARTS = (
    "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_iorig", "_imeta", "_mimage", "_mlog", "_pmspare",
    "_rimage", "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata", "_wcorig",
)  # fmt: skip
_RESERVED_LV_PREFIXES = ("snapshot", "pvmove")
_TAG = re.compile(r"[A-Za-z0-9_+.\-/=!:&#]+")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.\-]*[A-Za-z0-9])?")
# Upstream's pattern is ^[0-9]*(k|m|g|t|p|e|b|s)?$; we also require a digit, since "k" alone or "0" fails
# every lvcreate rather than at load time.
_STRIPE_SIZE = re.compile(r"[0-9]*[1-9][0-9]*(k|m|g|t|p|e|b|s)?", re.IGNORECASE)


def _check_lvm_name(kind: str, name: str, limit: int) -> None:
    if not name:
        raise errors.InvalidArgument(f"{kind} name is empty")
    if len(name) > limit:
        raise errors.InvalidArgument(f"{kind} name {name[:40]!r}... is longer than {limit} characters")
    if name in (".", ".."):
        raise errors.InvalidArgument(f"{kind} name {name!r} is reserved")
    if not _LVM_NAME.fullmatch(name):
        raise errors.InvalidArgument(
            f"{kind} name {name!r} is invalid: use letters, digits and + _ . -, not starting with '-'"
        )


def check_lv_name(name: str) -> None:
    """Raise InvalidArgument unless ``name`` is safe as an LV name."""
    _check_lvm_name("logical volume", name, MAX_LV_NAME)
    if name.startswith(_RESERVED_LV_PREFIXES):
        raise errors.InvalidArgument(f"logical volume name {name!r} starts with a prefix LVM reserves")
    for part in _RESERVED_LV_PARTS:
        if part in name:
            raise errors.InvalidArgument(f"logical volume name {name!r} contains {part!r}, which LVM reserves")


def check_vg_name(name: str) -> None:
    _check_lvm_name("volume group", name, MAX_VG_NAME)


def check_tag(tag: str) -> None:
    """LVM tags: [A-Za-z0-9_+.-/=!:&#], at most 1024 characters, not starting with '-'."""
    if not tag or len(tag) > MAX_TAG:
        raise errors.InvalidArgument(f"tag must be 1..{MAX_TAG} characters")
    if tag.startswith("-") or not _TAG.fullmatch(tag):
        raise errors.InvalidArgument(f"tag {tag!r} is invalid: use letters, digits and _ + . - / = ! : & #")


def check_device_class_name(name: str) -> None:
    """Device class names end up in annotation keys, so they follow Kubernetes' qualified-name syntax."""
    if not name or len(name) > MAX_DEVICE_CLASS_NAME or not _QUALIFIED_NAME.fullmatch(name):
        raise errors.InvalidArgument(
            f"device class name {name!r} is invalid: 1..{MAX_DEVICE_CLASS_NAME} characters, alphanumeric "
            "at both ends, '-', '_' or '.' inside"
        )


def check_stripe_size(value: str) -> None:
    """Upstream's stripe-size syntax: digits with an optional unit letter."""
    if not value or not _STRIPE_SIZE.fullmatch(value):
        raise errors.InvalidArgument(
            f"stripe size {value!r} must be a positive number with an optional unit (k, m, g...)"
        )
