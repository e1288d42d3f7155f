"""IO limit parameters at CreateVolume over gRPC: bad values are INVALID_ARGUMENT with nothing created; good ones
come back in the volume context (the PV's volumeAttributes, which kubelet hands to NodePublish)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.csi.conftest import CsiCluster, GiB, create_request, csi_cluster
from topolvm.core import resources
from topolvm.csi.proto import csi_pb2 as csi


@pytest.fixture(scope="module")
def world() -> Iterator[CsiCluster]:
    with csi_cluster({"n1": 20 * GiB}) as w:
        yield w


def test_limits_travel_in_the_volume_context(world: CsiCluster) -> None:
    req = create_request("pvc-limited", GiB, preferred=["n1"], requisite=["n1"])
    req.parameters["topolvm.io/write-iops"] = " 300 "
    req.parameters["topolvm.io/read-bytes-per-second-per-gib"] = "5Mi"
    vol = world.ctrl.CreateVolume(req, timeout=15).volume
    assert dict(vol.volume_context) == {
        "topolvm.io/write-iops": "300",
        "topolvm.io/read-bytes-per-second-per-gib": str(5 << 20),
    }
    again = world.ctrl.CreateVolume(req, timeout=15).volume  # idempotent, same context
    assert again.volume_id == vol.volume_id and dict(again.volume_context) == dict(vol.volume_context)
    world.ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=15)


@pytest.mark.parametrize(
    "params",
    [
        {"topolvm.io/read-iops": "0"},
        {"topolvm.io/write-bytes-per-second": "fast"},
        {"topolvm.io/write-iops": "10", "topolvm.io/write-iops-per-gib": "1"},
    ],
)
def test_bad_limits_are_invalid_argument_and_create_nothing(world: CsiCluster, params: dict[str, str]) -> None:
    req = create_request("pvc-bad-limits", GiB, preferred=["n1"], requisite=["n1"])
    req.parameters.update(params)
    with pytest.raises(grpc.RpcError) as exc:
        world.ctrl.CreateVolume(req, timeout=15)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "topolvm.io/" in (exc.value.details() or "")
    assert world.cluster.list_of(resources.LOGICAL_VOLUME) == []
    assert not world.lvms["n1"].report(vg_names=["vg"]).vgs["vg"].lvs
