"""Loads lvmd.yaml in upstream TopoLVM's format (docs/compat.md) into ``model.LvmdConfig``.

Types are checked by msgspec (errors name the field path), invariants by ``topolvm.core.devclass.validate``.
Keys upstream does not know are this project's additions: ``lvm-config`` (an lvm ``--config`` override),
``lvm-timeout-seconds`` and ``manage-untagged-lvs``. Unknown keys are reported as warnings and ignored, as
upstream's YAML loader ignores them, so an upstream file always loads. Where upstream ignores a setting
(``thin-pool`` on a thick class, ``stripe: 0``) we ignore it too, with a warning; duplicate keys are an error,
since silently keeping the last of two ``device-classes`` blocks loses configuration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import yaml

from topolvm import constants, errors
from topolvm.core import devclass, model

log = logging.getLogger(__name__)


class _ThinPool(msgspec.Struct, rename="kebab"):
    name: str = ""
    overprovision_ratio: float | None = None


class _DeviceClass(msgspec.Struct, rename="kebab"):
    name: str = ""
    volume_group: str = ""
    default: bool = False
    spare_gb: int | None = None
    stripe: int | None = None
    stripe_size: str = ""
    lvcreate_options: list[str] | None = None
    type: str = ""
    thin_pool: _ThinPool | None = None


class _OptionClass(msgspec.Struct, rename="kebab"):
    name: str = ""
    options: list[str] | None = None


class _Config(msgspec.Struct, rename="kebab"):
    socket_name: str = constants.DEFAULT_LVMD_SOCKET
    device_classes: list[_DeviceClass] | None = None
    lvcreate_option_classes: list[_OptionClass] | None = None
    lvm_command_prefix: list[str] | None = None
    lvm_config: str = ""
    lvm_timeout_seconds: float = 120.0
    manage_untagged_lvs: bool = False


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _unknown_keys(data: Any, struct: type[msgspec.Struct], path: str) -> list[str]:
    """Keys in ``data`` that ``struct`` does not declare, recursively, as field paths."""
    if not isinstance(data, dict):
        return []
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = {f.encode_name: f for f in info.fields}
    found = []
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            found.append(f"{path}{key}")
            continue
        inner = field.type
        if isinstance(inner, msgspec.inspect.UnionType):
            inner = next((t for t in inner.types if not isinstance(t, msgspec.inspect.NoneType)), inner)
        if isinstance(inner, msgspec.inspect.ListType) and isinstance(inner.item_type, msgspec.inspect.StructType):
            for i, item in enumerate(value or []):
                found += _unknown_keys(item, inner.item_type.cls, f"{path}{key}[{i}].")
        elif isinstance(inner, msgspec.inspect.StructType):
            found += _unknown_keys(value, inner.cls, f"{path}{key}.")
    return found


def _device_class(raw: _DeviceClass, where: str) -> model.DeviceClass:
    try:
        dtype = model.DeviceType(raw.type or "thick")
    except ValueError:
        raise errors.ConfigError(f"{where}.type: must be 'thick' or 'thin', got {raw.type!r}") from None
    thin_pool = None
    if raw.thin_pool is not None and dtype is not model.DeviceType.THIN:
        log.warning("%s.thin-pool: ignored, the class is not thin (as upstream does)", where)
    elif raw.thin_pool is not None:
        ratio = raw.thin_pool.overprovision_ratio
        if ratio is None:
            raise errors.ConfigError(f"{where}.thin-pool.overprovision-ratio: required")
        thin_pool = model.ThinPoolConfig(raw.thin_pool.name, float(ratio))
    spare_gb = constants.DEFAULT_SPARE_GB if raw.spare_gb is None else raw.spare_gb
    if spare_gb < 0:
        raise errors.ConfigError(f"{where}.spare-gb: must not be negative")
    return model.DeviceClass(
        name=raw.name,
        volume_group=raw.volume_group,
        default=raw.default,
        spare_bytes=spare_gb << 30,
        stripes=raw.stripe or None,  # upstream: 0 means no striping
        stripe_size=raw.stripe_size or None,
        lvcreate_options=tuple(raw.lvcreate_options or ()),
        type=dtype,
        thin_pool=thin_pool,
    )


def parse(text: str, source: str = "lvmd.yaml") -> model.LvmdConfig:
    """Parse and validate lvmd.yaml text; ConfigError names ``source`` and the field."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{source}: not valid YAML: {exc}") from None
    return from_mapping({} if data is None else data, source)


def from_mapping(data: Any, source: str = "lvmd.yaml") -> model.LvmdConfig:
    """Validate lvmd.yaml already read into Python values (the simulator embeds it in scenario files)."""
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{source}: the top level must be a mapping")
    for key in _unknown_keys(data, _Config, ""):
        log.warning("%s: ignoring unknown key %s", source, key)
    try:
        raw = msgspec.convert(data, _Config)
    except msgspec.ValidationError as exc:
        raise errors.ConfigError(f"{source}: {exc}") from None
    try:
        config = model.LvmdConfig(
            device_classes=tuple(
                _device_class(dc, f"device-classes[{i}]") for i, dc in enumerate(raw.device_classes or ())
            ),
            lvcreate_option_classes=tuple(
                model.LvcreateOptionClass(oc.name, tuple(oc.options or ())) for oc in raw.lvcreate_option_classes or ()
            ),
            socket_name=raw.socket_name,
            lvm_command_prefix=tuple(
                constants.DEFAULT_LVM_COMMAND_PREFIX if raw.lvm_command_prefix is None else raw.lvm_command_prefix
            ),
            lvm_config=raw.lvm_config,
            lvm_timeout_seconds=raw.lvm_timeout_seconds,
            manage_untagged_lvs=raw.manage_untagged_lvs,
        )
        devclass.validate(config)
    except errors.ConfigError as exc:
        raise errors.ConfigError(f"{source}: {exc}") from None
    if config.lvm_timeout_seconds <= 0:
        raise errors.ConfigError(f"{source}: lvm-timeout-seconds: must be positive")
    return config


def load(path: str | Path) -> model.LvmdConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise errors.ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    return parse(text, str(p))
