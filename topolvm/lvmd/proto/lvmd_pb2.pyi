from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccessType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_TYPE_READ_WRITE: _ClassVar[AccessType]
    ACCESS_TYPE_READ_ONLY: _ClassVar[AccessType]
ACCESS_TYPE_READ_WRITE: AccessType
ACCESS_TYPE_READ_ONLY: AccessType

class LogicalVolume(_message.Message):
    __slots__ = ("name", "size_bytes", "vg_name", "uuid", "path", "attr", "tags", "pool", "origin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    VG_NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    vg_name: str
    uuid: str
    path: str
    attr: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    pool: str
    origin: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., vg_name: _Optional[str] = ..., uuid: _Optional[str] = ..., path: _Optional[str] = ..., attr: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., pool: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class CreateLVRequest(_message.Message):
    __slots__ = ("name", "size_bytes", "tags", "device_class", "lvcreate_option_class")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    LVCREATE_OPTION_CLASS_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    device_class: str
    lvcreate_option_class: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., device_class: _Optional[str] = ..., lvcreate_option_class: _Optional[str] = ...) -> None: ...

class CreateLVResponse(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: LogicalVolume
    def __init__(self, volume: _Optional[_Union[LogicalVolume, _Mapping]] = ...) -> None: ...

class RemoveLVRequest(_message.Message):
    __slots__ = ("name", "device_class")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    name: str
    device_class: str
    def __init__(self, name: _Optional[str] = ..., device_class: _Optional[str] = ...) -> None: ...

class RemoveLVResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResizeLVRequest(_message.Message):
    __slots__ = ("name", "size_bytes", "device_class")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    device_class: str
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., device_class: _Optional[str] = ...) -> None: ...

class ResizeLVResponse(_message.Message):
    __slots__ = ("volume",)
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    volume: LogicalVolume
    def __init__(self, volume: _Optional[_Union[LogicalVolume, _Mapping]] = ...) -> None: ...

class CreateLVSnapshotRequest(_message.Message):
    __slots__ = ("name", "tags", "device_class", "source_volume", "size_bytes", "access_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    device_class: str
    source_volume: str
    size_bytes: int
    access_type: AccessType
    def __init__(self, name: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., device_class: _Optional[str] = ..., source_volume: _Optional[str] = ..., size_bytes: _Optional[int] = ..., access_type: _Optional[_Union[AccessType, str]] = ...) -> None: ...

class CreateLVSnapshotResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: LogicalVolume
    def __init__(self, snapshot: _Optional[_Union[LogicalVolume, _Mapping]] = ...) -> None: ...

class GetLVListRequest(_message.Message):
    __slots__ = ("device_class",)
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    device_class: str
    def __init__(self, device_class: _Optional[str] = ...) -> None: ...

class GetLVListResponse(_message.Message):
    __slots__ = ("volumes",)
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    volumes: _containers.RepeatedCompositeFieldContainer[LogicalVolume]
    def __init__(self, volumes: _Optional[_Iterable[_Union[LogicalVolume, _Mapping]]] = ...) -> None: ...

class GetFreeBytesRequest(_message.Message):
    __slots__ = ("device_class",)
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    device_class: str
    def __init__(self, device_class: _Optional[str] = ...) -> None: ...

class GetFreeBytesResponse(_message.Message):
    __slots__ = ("free_bytes",)
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    free_bytes: int
    def __init__(self, free_bytes: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ThinPoolStats(_message.Message):
    __slots__ = ("size_bytes", "data_percent", "metadata_percent", "overprovisioned_available_bytes")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_PERCENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_PERCENT_FIELD_NUMBER: _ClassVar[int]
    OVERPROVISIONED_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    data_percent: float
    metadata_percent: float
    overprovisioned_available_bytes: int
    def __init__(self, size_bytes: _Optional[int] = ..., data_percent: _Optional[float] = ..., metadata_percent: _Optional[float] = ..., overprovisioned_available_bytes: _Optional[int] = ...) -> None: ...

class DeviceClassStats(_message.Message):
    __slots__ = ("device_class", "default", "size_bytes", "free_bytes", "thin_pool")
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    THIN_POOL_FIELD_NUMBER: _ClassVar[int]
    device_class: str
    default: bool
    size_bytes: int
    free_bytes: int
    thin_pool: ThinPoolStats
    def __init__(self, device_class: _Optional[str] = ..., default: _Optional[bool] = ..., size_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., thin_pool: _Optional[_Union[ThinPoolStats, _Mapping]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("device_classes",)
    DEVICE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    device_classes: _containers.RepeatedCompositeFieldContainer[DeviceClassStats]
    def __init__(self, device_classes: _Optional[_Iterable[_Union[DeviceClassStats, _Mapping]]] = ...) -> None: ...
