"""NodeGetVolumeHealth (CSI v1.13, what kubelet 1.37 asks with feature gate CSIVolumeHealth) over gRPC: a disk
that dies under a quiet VG reaches the answer once lvmd's state is older than its max age, with the CSI status
the layout implies; bad requests get their codes."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.csi.test_allinone import GiB, Mode
from topolvm import constants
from topolvm.clock import ManualClock
from topolvm.cmd import allinone
from topolvm.core import health, model, resources
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc
from topolvm.lvm import memory as lvm_memory
from topolvm.mount import memory as mount_memory
from topolvm.services import lvmd

_RPC = csi.NodeServiceCapability.RPC


@pytest.fixture
def driver() -> Iterator[tuple[allinone.AllInOne, lvm_memory.InMemoryLvm, ManualClock, Path]]:
    sock_dir = Path(tempfile.mkdtemp(prefix="thealth-", dir="/tmp"))
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [4 * GiB, 4 * GiB])
    clock = ManualClock()
    config = model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    built = allinone.AllInOne(
        lvmd_service=lvmd.LvmdService(lvm=lvm, config=config, max_state_age=60, clock=clock),
        mounter=mount_memory.InMemoryMounter(),
        node_name="n1",
        socket_path=str(sock_dir / "csi.sock"),
        allowed_target_prefixes=(str(sock_dir) + "/",),
        create_timeout=10,
    )
    built.start()
    try:
        yield built, lvm, clock, sock_dir
    finally:
        built.stop(grace=0)
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_a_dead_disk_shows_in_node_get_volume_health(
    driver: tuple[allinone.AllInOne, lvm_memory.InMemoryLvm, ManualClock, Path],
) -> None:
    built, lvm, clock, sock_dir = driver
    with grpc.insecure_channel(f"unix:{sock_dir / 'csi.sock'}") as channel:
        node, ctrl = csi_grpc.NodeStub(channel), csi_grpc.ControllerStub(channel)
        caps = {c.rpc.type for c in node.NodeGetCapabilities(csi.NodeGetCapabilitiesRequest()).capabilities}
        assert _RPC.GET_VOLUME_HEALTH in caps
        cap = csi.VolumeCapability(
            access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER), mount=csi.VolumeCapability.MountVolume(fs_type="xfs")
        )
        topology = csi.Topology(segments={constants.TOPOLOGY_NODE_KEY: "n1"})
        vol = ctrl.CreateVolume(
            csi.CreateVolumeRequest(
                name="pvc-1",
                capacity_range=csi.CapacityRange(required_bytes=GiB),
                volume_capabilities=[cap],
                accessibility_requirements=csi.TopologyRequirement(requisite=[topology]),
            ),
            timeout=15,
        ).volume
        ask = csi.NodeGetVolumeHealthRequest(volume_id=vol.volume_id, volume_publish_path=str(sock_dir / "t"))
        healthy = node.NodeGetVolumeHealth(ask, timeout=5).volume_health
        assert healthy.volume_id == vol.volume_id and list(healthy.health_statuses) == []

        lvm.mark_pv_missing("vg", 0)  # the first PV, where the linear LV lives
        assert list(node.NodeGetVolumeHealth(ask, timeout=5).volume_health.health_statuses) == []  # cached
        clock.advance(60)  # the next call starts lvmd's re-read in the background; a later one sees it
        deadline = time.monotonic() + 5
        while not (entries := list(node.NodeGetVolumeHealth(ask, timeout=5).volume_health.health_statuses)):
            assert time.monotonic() < deadline, "lvmd's background re-read did not land"
            time.sleep(0.01)
        [entry] = entries
        assert entry.status == csi.INACCESSIBLE and entry.reason == "PhysicalVolumeMissing"
        assert "missing" in entry.message
        # Operators see the change as an Event on the volume's LogicalVolume, once (kubelet asks every minute).
        node.NodeGetVolumeHealth(ask, timeout=5)
        [lv] = built.cluster.list_of(resources.LOGICAL_VOLUME)
        [abnormal] = _events(built)
        assert (abnormal.reason, abnormal.warning, abnormal.namespace) == ("VolumeConditionAbnormal", True, "default")
        assert abnormal.involved == resources.ObjectRef("topolvm.io/v1", "LogicalVolume", "pvc-1", uid=lv.meta.uid)
        assert lv.meta.uid and "INACCESSIBLE PhysicalVolumeMissing" in abnormal.message
        assert (abnormal.component, abnormal.host) == ("topolvm-node", "n1")

        lvm.mark_pv_present("vg", 0)  # the disk is back
        clock.advance(60)
        deadline = time.monotonic() + 5
        while list(node.NodeGetVolumeHealth(ask, timeout=5).volume_health.health_statuses):
            assert time.monotonic() < deadline, "lvmd's background re-read did not land"
            time.sleep(0.01)
        assert [(e.reason, e.warning) for e in _events(built)] == [
            ("VolumeConditionAbnormal", True),
            ("VolumeConditionNormal", False),
        ]

        for request, code in [
            (csi.NodeGetVolumeHealthRequest(), grpc.StatusCode.INVALID_ARGUMENT),
            (csi.NodeGetVolumeHealthRequest(volume_id="no-such-volume"), grpc.StatusCode.NOT_FOUND),
            (csi.NodeGetVolumeHealthRequest(volume_id="../etc"), grpc.StatusCode.NOT_FOUND),  # cannot be an LV
        ]:
            with pytest.raises(grpc.RpcError) as refused:
                node.NodeGetVolumeHealth(request, timeout=5)
            assert refused.value.code() is code, request


def _events(built: allinone.AllInOne) -> list[resources.ClusterEvent]:
    return sorted(built.cluster.list_of(resources.CLUSTER_EVENT), key=lambda e: e.name)


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("-wi-ao----", []),
        ("Vwi-aotz--", []),
        ("-wi-ao---w", []),  # writemostly is a setting, not a problem
        ("-wi-ao--p-", [("INACCESSIBLE", "PhysicalVolumeMissing")]),
        ("rwi-aor-p-", [("DEGRADED", "PhysicalVolumeMissing")]),  # RAID: the other images serve
        ("mwi-aom-p-", [("DEGRADED", "PhysicalVolumeMissing")]),
        ("rwi-aor-r-", [("DEGRADED", "RaidImageFailed")]),
        ("twi-aotzD-", [("DEGRADED", "ThinPoolOutOfDataSpace")]),  # thin LVs carry it: health.with_pool_health
        ("Vwi-aotzF-", [("INACCESSIBLE", "ThinPoolFailed")]),
        ("swi-Io-s--", [("DATA_LOSS", "SnapshotInvalid")]),
        ("-wi-so--p-", [("INACCESSIBLE", "Suspended"), ("INACCESSIBLE", "PhysicalVolumeMissing")]),
        ("-wi-Qo----", [("DEGRADED", "UnknownState")]),
        ("rwi-Lor-p-", [("INACCESSIBLE", "VolumeGroupLost")]),  # health.mark_lost: even RAID
        ("-wi-XX--p-", [("INACCESSIBLE", "PhysicalVolumeMissing")]),  # lvm2 with activation off: state unknown
        ("-wi-XX----", []),
        ("", []),
    ],
)
def test_problems_from_lv_attr(attr: str, expected: list[tuple[str, str]]) -> None:
    assert [(p.status, p.reason) for p in health.problems(attr)] == expected
