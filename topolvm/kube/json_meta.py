"""What every codec of ``topolvm.kube`` shares: resource quantities as ints, metadata, and the rule that a write
starts from the JSON last read (``Meta.wire``) and overlays what this project changes."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from topolvm import errors
from topolvm.core import quantity, resources, workloads

JsonDict = dict[str, Any]


def amount(resource: str, value: Any) -> int:
    """A resource quantity as an int: millicores for cpu, whole units otherwise."""
    if isinstance(value, bool):
        raise errors.InvalidArgument(f"{resource}: not a quantity: {value!r}")
    if isinstance(value, int):
        return value * 1000 if resource == workloads.CPU else value
    text = str(value)
    return quantity.to_milli(text) if resource == workloads.CPU else quantity.to_bytes(text)


def amount_text(resource: str, value: int) -> str:
    return f"{value}m" if resource == workloads.CPU else str(value)


def amounts(raw: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: amount(k, v) for k, v in (raw or {}).items()}


def amount_texts(values: Mapping[str, int]) -> dict[str, str]:
    return {k: amount_text(k, v) for k, v in values.items()}


def meta_from(raw: Mapping[str, Any]) -> resources.Meta:
    md = raw.get("metadata") or {}
    return resources.Meta(
        name=md.get("name", ""),
        namespace=md.get("namespace", ""),
        uid=md.get("uid", ""),
        resource_version=md.get("resourceVersion", ""),
        labels=dict(md.get("labels") or {}),
        annotations=dict(md.get("annotations") or {}),
        finalizers=tuple(md.get("finalizers") or ()),
        deletion_timestamp=md.get("deletionTimestamp"),
        creation_timestamp=md.get("creationTimestamp"),
        wire=raw,
    )


def start(obj: resources.Object, api_version: str, kind: str) -> JsonDict:
    """The object's last-read JSON (a deep copy) with its metadata overlaid, or a fresh skeleton."""
    base = obj.meta.wire
    out: JsonDict = copy.deepcopy(dict(base)) if isinstance(base, Mapping) else {}
    out["apiVersion"], out["kind"] = api_version, kind
    md = out.setdefault("metadata", {})
    md["name"] = obj.meta.name
    if obj.meta.namespace:
        md["namespace"] = obj.meta.namespace
    md["labels"] = dict(obj.meta.labels)
    md["annotations"] = dict(obj.meta.annotations)
    md["finalizers"] = list(obj.meta.finalizers)
    if obj.meta.resource_version:
        md["resourceVersion"] = obj.meta.resource_version
    else:
        md.pop("resourceVersion", None)
    return out


def fresh(obj: resources.Object) -> bool:
    return not isinstance(obj.meta.wire, Mapping)


def size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else quantity.to_bytes(str(value))


def text(raw: Mapping[str, Any], key: str, default: str = "") -> str:
    """A string field; ValueError naming it when the JSON holds something else (admission sees unvalidated pods)."""
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def optional_text(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def string_map(raw: Mapping[str, Any], key: str) -> dict[str, str]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{key}: expected a map of strings")
    return dict(value)
