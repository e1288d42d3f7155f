"""Rules over a set of device classes: lookup by name and the config invariants lvmd enforces at start-up.

Called by the lvmd config loader (after types are checked) and by the lvmd service for every request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from topolvm import errors
from topolvm.core import capacity, model, names


def find(classes: Sequence[model.DeviceClass], name: str) -> model.DeviceClass:
    """The class called ``name``; the empty name selects the default class. NotFound otherwise."""
    for dc in classes:
        if (name and dc.name == name) or (not name and dc.default):
            return dc
    if not name:
        raise errors.NotFound("no default device class is configured")
    raise errors.NotFound(f"device class {name!r} not found")


def find_option_class(classes: Sequence[model.LvcreateOptionClass], name: str) -> model.LvcreateOptionClass | None:
    if not name:
        return None
    for oc in classes:
        if oc.name == name:
            return oc
    raise errors.NotFound(f"lvcreate option class {name!r} not found")


def layout(dc: model.DeviceClass, option_class: model.LvcreateOptionClass | None = None) -> capacity.Layout:
    options = option_class.options if option_class is not None else dc.lvcreate_options
    return capacity.layout_for(options, dc.stripes)


def _fail(field: str, reason: str) -> errors.ConfigError:
    return errors.ConfigError(f"{field}: {reason}")


def validate(config: model.LvmdConfig) -> None:
    """Raise ConfigError naming the first offending field (``device-classes[1].thin-pool...: reason``)."""
    if not config.device_classes:
        raise _fail("device-classes", "at least one device class is required")
    seen: dict[str, int] = {}
    thick_vgs: dict[str, int] = {}
    thin_pools: dict[tuple[str, str], int] = {}
    for i, dc in enumerate(config.device_classes):
        where = f"device-classes[{i}]"
        _validate_class(where, dc)
        if dc.name in seen:
            raise _fail(f"{where}.name", f"duplicate device class {dc.name!r} (also device-classes[{seen[dc.name]}])")
        seen[dc.name] = i
        if dc.thin_pool is not None:
            key = (dc.volume_group, dc.thin_pool.name)
            if key in thin_pools:
                raise _fail(where, f"thin pool {key[0]}/{key[1]} is used by device-classes[{thin_pools[key]}] too")
            thin_pools[key] = i
        else:
            if dc.volume_group in thick_vgs:
                other = thick_vgs[dc.volume_group]
                raise _fail(
                    f"{where}.volume-group", f"{dc.volume_group!r} is used by thick device-classes[{other}] too"
                )
            thick_vgs[dc.volume_group] = i
    defaults = [dc.name for dc in config.device_classes if dc.default]
    if len(defaults) > 1:
        raise _fail("device-classes", f"more than one default device class: {', '.join(defaults)}")
    option_names: set[str] = set()
    for i, oc in enumerate(config.lvcreate_option_classes):
        where = f"lvcreate-option-classes[{i}]"
        if not oc.name:
            raise _fail(f"{where}.name", "must not be empty")
        if oc.name in option_names:
            raise _fail(f"{where}.name", f"duplicate lvcreate option class {oc.name!r}")
        option_names.add(oc.name)
        _check_options(f"{where}.options", oc.options)


def _check_name(field: str, check: Callable[[str], None], value: str) -> None:
    try:
        check(value)
    except errors.InvalidArgument as exc:
        raise _fail(field, str(exc)) from None


def _validate_class(where: str, dc: model.DeviceClass) -> None:
    _check_name(f"{where}.name", names.check_device_class_name, dc.name)
    _check_name(f"{where}.volume-group", names.check_vg_name, dc.volume_group)
    if dc.spare_bytes < 0:
        raise _fail(f"{where}.spare-gb", "must not be negative")
    if dc.stripes is not None and dc.stripes < 1:
        raise _fail(f"{where}.stripe", "must be at least 1")
    if dc.stripe_size:
        _check_name(f"{where}.stripe-size", names.check_stripe_size, dc.stripe_size)
    _check_options(f"{where}.lvcreate-options", dc.lvcreate_options)
    if dc.stripes and any(o in ("-i", "--stripes") or o.startswith(("-i", "--stripes=")) for o in dc.lvcreate_options):
        raise _fail(f"{where}.lvcreate-options", "sets stripes, and so does stripe: lvcreate refuses both")
    if dc.type is model.DeviceType.THIN:
        if dc.stripes or dc.lvcreate_options:
            # A thin LV's layout is its pool's; lvcreate options for thin volumes are not supported here.
            raise _fail(where, "stripe and lvcreate-options do not apply to a thin class (the pool's layout does)")
        if dc.thin_pool is None:
            raise _fail(f"{where}.thin-pool", "required when type is thin")
        _check_name(f"{where}.thin-pool.name", names.check_lv_name, dc.thin_pool.name)
        if not dc.thin_pool.overprovision_ratio >= 1.0:
            raise _fail(f"{where}.thin-pool.overprovision-ratio", "must be at least 1.0")
    elif dc.thin_pool is not None:
        raise _fail(f"{where}.thin-pool", "only allowed when type is thin")


def _check_options(field: str, options: Sequence[str]) -> None:
    # Options are handed to lvcreate as separate argv words; a word with whitespace or NUL would be an
    # operator mistake that a shell would have split, so refuse it rather than guess.
    for j, opt in enumerate(options):
        if not opt or any(c.isspace() or c == "\0" for c in opt):
            raise _fail(f"{field}[{j}]", f"{opt!r} must be a single non-empty word without whitespace")
