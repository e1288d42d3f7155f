"""lvmd.yaml: upstream files load unchanged; bad ones fail with the field and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from topolvm import constants, errors
from topolvm.core import model
from topolvm.lvmd import config

UPSTREAM = """
socket-name: /run/topolvm/lvmd.sock
device-classes:
  - name: ssd
    volume-group: myvg1
    default: true
    spare-gb: 10
  - name: hdd
    volume-group: myvg2
    spare-gb: 0
    stripe: 2
    stripe-size: "64"
  - name: raid
    volume-group: raid-vg
    lvcreate-options:
      - --type=raid1
  - name: ssd-thin
    volume-group: myvg1
    type: thin
    thin-pool:
      name: thinpool
      overprovision-ratio: 10.0
lvcreate-option-classes:
  - name: mirror
    options: ["--type=raid1", "-m", "1"]
"""


def test_upstream_file_loads_unchanged() -> None:
    cfg = config.parse(UPSTREAM)
    ssd, hdd, raid, thin = cfg.device_classes
    assert ssd == model.DeviceClass("ssd", "myvg1", default=True, spare_bytes=10 << 30)
    assert hdd.spare_bytes == 0 and hdd.stripes == 2 and hdd.stripe_size == "64"
    assert raid.lvcreate_options == ("--type=raid1",) and raid.spare_bytes == constants.DEFAULT_SPARE_GB << 30
    assert thin.type is model.DeviceType.THIN and thin.thin_pool == model.ThinPoolConfig("thinpool", 10.0)
    assert cfg.lvcreate_option_classes == (model.LvcreateOptionClass("mirror", ("--type=raid1", "-m", "1")),)
    assert cfg.socket_name == "/run/topolvm/lvmd.sock"
    assert cfg.lvm_command_prefix == constants.DEFAULT_LVM_COMMAND_PREFIX
    assert cfg.volume_groups() == ("myvg1", "myvg2", "raid-vg")


def test_our_additions_and_empty_prefix() -> None:
    cfg = config.parse(
        "device-classes: [{name: a, volume-group: v}]\nlvm-command-prefix: []\n"
        "lvm-config: 'global { activation = 0 }'\nlvm-timeout-seconds: 5\n"
    )
    assert cfg.lvm_command_prefix == ()
    assert cfg.lvm_config == "global { activation = 0 }"
    assert cfg.lvm_timeout_seconds == 5


def test_settings_upstream_ignores_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.parse(
        "device-classes:\n  - {name: a, volume-group: v, stripe: 0, thin-pool: {name: p, overprovision-ratio: 2}}\n"
    )
    assert cfg.device_classes[0].stripes is None and cfg.device_classes[0].thin_pool is None
    assert "device-classes[0].thin-pool: ignored" in caplog.text


def test_unknown_keys_are_warned_about_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.parse("device-classes: [{name: a, volume-group: v, spare_gb: 3}]\nfuture-key: 1\n")
    assert cfg.device_classes[0].spare_bytes == 10 << 30
    assert "device-classes[0].spare_gb" in caplog.text and "future-key" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("device-classes: []", "device-classes: at least one", id="no-classes"),
        pytest.param(
            "device-classes: [{name: a, volume-group: v}, {name: a, volume-group: w}]",
            "device-classes[1].name: duplicate device class 'a'",
            id="duplicate-class",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, default: true}, {name: b, volume-group: w, default: true}]",
            "more than one default device class: a, b",
            id="two-defaults",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, type: thin, thin-pool: {name: p, overprovision-ratio: 0.9}}]",
            "device-classes[0].thin-pool.overprovision-ratio: must be at least 1.0",
            id="ratio-below-one",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, stripe-size: 64x}]",
            "device-classes[0].stripe-size",
            id="bad-stripe-size",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, type: thin}]",
            "device-classes[0].thin-pool: required when type is thin",
            id="thin-without-pool",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v}, {name: b, volume-group: v}]",
            "device-classes[1].volume-group: 'v' is used by thick device-classes[0] too",
            id="two-thick-on-one-vg",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, type: thin, thin-pool: {name: p, overprovision-ratio: 2}},"
            " {name: b, volume-group: v, type: thin, thin-pool: {name: p, overprovision-ratio: 3}}]",
            "thin pool v/p is used by device-classes[0] too",
            id="two-thin-on-one-pool",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, type: fat}]",
            "device-classes[0].type: must be 'thick' or 'thin'",
            id="bad-type",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, spare-gb: ten}]",
            "device-classes[0].spare-gb",
            id="spare-not-int",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, spare-gb: -1}]",
            "device-classes[0].spare-gb: must not be negative",
            id="spare-negative",
        ),
        pytest.param(
            "device-classes: [{name: 'bad name', volume-group: v}]",
            "device-classes[0].name",
            id="bad-class-name",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: '-v'}]",
            "device-classes[0].volume-group",
            id="vg-like-an-option",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, lvcreate-options: ['--type raid1']}]",
            "device-classes[0].lvcreate-options[0]",
            id="option-with-space",
        ),
        pytest.param("device-classes: [{name: a, volume-group: v}", "not valid YAML", id="bad-yaml"),
        pytest.param(
            "device-classes: [{name: a, volume-group: v}]\ndevice-classes: [{name: b, volume-group: w}]\n",
            "duplicate key 'device-classes' (line 2)",
            id="duplicate-key",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, stripe: 2, lvcreate-options: ['-i', '3']}]",
            "sets stripes, and so does stripe",
            id="stripe-twice",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, type: thin, lvcreate-options: [--type=raid1],"
            " thin-pool: {name: p, overprovision-ratio: 2}}]",
            "do not apply to a thin class",
            id="thin-with-options",
        ),
        pytest.param(
            "device-classes: [{name: a, volume-group: v, stripe: 2, stripe-size: k}]",
            "device-classes[0].stripe-size",
            id="stripe-size-without-digits",
        ),
        pytest.param("- a\n- b\n", "top level must be a mapping", id="not-a-mapping"),
    ],
)
def test_bad_config_names_field_and_reason(text: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.parse(text, "lvmd.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("lvmd.yaml")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read"):
        config.load(tmp_path / "nope.yaml")
