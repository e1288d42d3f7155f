"""Frozen value objects for device classes, volume groups and logical volumes.

Built by the lvm report parser (``topolvm.lvm.parse``), the in-memory adapters and the lvmd config loader;
read by capacity policy and every service.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class DeviceType(enum.StrEnum):
    THICK = "thick"
    THIN = "thin"


class AccessType(enum.StrEnum):
    READ_WRITE = "rw"
    READ_ONLY = "ro"


@dataclass(frozen=True)
class ThinPoolConfig:
    name: str
    overprovision_ratio: float


@dataclass(frozen=True)
class DeviceClass:
    """One entry of lvmd.yaml ``device-classes`` (upstream names, converted units)."""

    name: str
    volume_group: str
    default: bool = False
    spare_bytes: int = 10 << 30
    stripes: int | None = None
    stripe_size: str | None = None
    lvcreate_options: tuple[str, ...] = ()
    type: DeviceType = DeviceType.THICK
    thin_pool: ThinPoolConfig | None = None


@dataclass(frozen=True)
class LvcreateOptionClass:
    name: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class LvmdConfig:
    """What lvmd needs to run, once the YAML is validated (``topolvm.lvmd.config``)."""

    device_classes: tuple[DeviceClass, ...]
    lvcreate_option_classes: tuple[LvcreateOptionClass, ...] = ()
    socket_name: str = "/run/topolvm/lvmd.sock"
    lvm_command_prefix: tuple[str, ...] = ()
    lvm_config: str = ""
    lvm_timeout_seconds: float = 120.0
    # LVs without a TopoLVM tag are left alone unless this is set (e.g. after migrating from a TopoLVM that did
    # not tag its LVs), so a VG shared with the OS never loses a volume TopoLVM did not make.
    manage_untagged_lvs: bool = False

    def volume_groups(self) -> tuple[str, ...]:
        """Distinct VG names in config order."""
        return tuple(dict.fromkeys(dc.volume_group for dc in self.device_classes))


@dataclass(frozen=True)
class PhysicalVolume:
    name: str
    size: int
    free: int
    missing: bool = False


@dataclass(frozen=True)
class LogicalVolume:
    """One LV as LVM reports it. ``size`` is the virtual size for thin LVs."""

    name: str
    vg_name: str
    size: int
    uuid: str = ""
    path: str = ""
    attr: str = "-wi-------"
    tags: tuple[str, ...] = ()
    pool: str = ""
    origin: str = ""
    data_percent: float | None = None
    metadata_percent: float | None = None
    # Layout of the LV's first segment, as lvm reports it (segtype, images, data stripes).
    segtype: str = "linear"
    stripes: int = 1
    data_stripes: int = 1

    @property
    def is_thin_pool(self) -> bool:
        return self.attr[:1] == "t"

    @property
    def is_thin(self) -> bool:
        return self.attr[:1] == "V"

    @property
    def is_hidden(self) -> bool:
        """Sub-LVs (rimage, tdata, pmspare...) that LVM reports in brackets."""
        return self.name.startswith("[")

    @property
    def read_only(self) -> bool:
        return self.attr[1:2] == "r"


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    size: int
    free: int
    extent_size: int
    uuid: str = ""
    missing_pvs: int = 0
    pvs: tuple[PhysicalVolume, ...] = ()
    lvs: tuple[LogicalVolume, ...] = ()

    def find_lv(self, name: str) -> LogicalVolume | None:
        for lv in self.lvs:
            if lv.name == name:
                return lv
        return None

    def thin_lvs(self, pool: str) -> tuple[LogicalVolume, ...]:
        return tuple(lv for lv in self.lvs if lv.is_thin and lv.pool == pool)


@dataclass(frozen=True)
class LvmState:
    """Everything one report call returns for the VGs lvmd manages."""

    vgs: Mapping[str, VolumeGroup] = field(default_factory=dict)

    def vg(self, name: str) -> VolumeGroup | None:
        return self.vgs.get(name)


@dataclass(frozen=True)
class ThinPoolStats:
    size_bytes: int
    data_percent: float
    metadata_percent: float
    overprovisioned_available: int


@dataclass(frozen=True)
class DeviceClassStats:
    """Capacity of one device class as lvmd reports it (the Watch payload, per class)."""

    device_class: str
    default: bool
    size_bytes: int
    free_bytes: int
    thin_pool: ThinPoolStats | None = None


@dataclass(frozen=True)
class NodeCapacity:
    device_classes: tuple[DeviceClassStats, ...] = ()

    def for_class(self, name: str) -> DeviceClassStats | None:
        for stats in self.device_classes:
            if stats.device_class == name or (not name and stats.default):
                return stats
        return None


@dataclass(frozen=True)
class VolumeUsage:
    """Filesystem usage of a published volume (NodeGetVolumeStats); inodes are None for raw block."""

    total_bytes: int
    used_bytes: int
    available_bytes: int
    total_inodes: int | None = None
    used_inodes: int | None = None
    available_inodes: int | None = None
