"""Conversions between ``topolvm.core.model`` values and lvmd protobuf messages, used by server and client."""

from __future__ import annotations

from topolvm.core import model
from topolvm.lvmd.proto import lvmd_pb2 as pb


def lv_to_pb(lv: model.LogicalVolume) -> pb.LogicalVolume:
    return pb.LogicalVolume(
        name=lv.name, size_bytes=lv.size, vg_name=lv.vg_name, uuid=lv.uuid, path=lv.path, attr=lv.attr,
        tags=list(lv.tags), pool=lv.pool, origin=lv.origin,
    )  # fmt: skip


def lv_from_pb(msg: pb.LogicalVolume) -> model.LogicalVolume:
    return model.LogicalVolume(
        name=msg.name, vg_name=msg.vg_name, size=msg.size_bytes, uuid=msg.uuid, path=msg.path, attr=msg.attr,
        tags=tuple(msg.tags), pool=msg.pool, origin=msg.origin,
    )  # fmt: skip


def capacity_to_pb(cap: model.NodeCapacity) -> pb.WatchResponse:
    items = []
    for s in cap.device_classes:
        item = pb.DeviceClassStats(
            device_class=s.device_class, default=s.default, size_bytes=s.size_bytes, free_bytes=s.free_bytes
        )
        if s.thin_pool is not None:
            item.thin_pool.CopyFrom(
                pb.ThinPoolStats(
                    size_bytes=s.thin_pool.size_bytes,
                    data_percent=s.thin_pool.data_percent,
                    metadata_percent=s.thin_pool.metadata_percent,
                    overprovisioned_available_bytes=s.thin_pool.overprovisioned_available,
                )
            )
        items.append(item)
    return pb.WatchResponse(device_classes=items)


def capacity_from_pb(msg: pb.WatchResponse) -> model.NodeCapacity:
    stats = []
    for item in msg.device_classes:
        thin = None
        if item.HasField("thin_pool"):
            t = item.thin_pool
            thin = model.ThinPoolStats(
                t.size_bytes, t.data_percent, t.metadata_percent, t.overprovisioned_available_bytes
            )
        stats.append(model.DeviceClassStats(item.device_class, item.default, item.size_bytes, item.free_bytes, thin))
    return model.NodeCapacity(tuple(stats))


def access_to_pb(access: model.AccessType) -> pb.AccessType:
    return pb.ACCESS_TYPE_READ_ONLY if access is model.AccessType.READ_ONLY else pb.ACCESS_TYPE_READ_WRITE


def access_from_pb(value: int) -> model.AccessType:
    return model.AccessType.READ_ONLY if value == pb.ACCESS_TYPE_READ_ONLY else model.AccessType.READ_WRITE
