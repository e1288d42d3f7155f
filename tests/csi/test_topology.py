"""CreateVolume placement over gRPC, with the CreateVolumeRequests external-provisioner really sends.

external-provisioner (pkg/controller/topology.go, GenerateAccessibilityRequirements) lists, for a driver with
the one key ``topology.topolvm.io/node``: as requisite every node carrying the key (sorted) or, with
allowedTopologies, those terms; with --strict-topology and a selected node, only that node. As preferred, the
requisite list rotated to start at the selected node (WaitForFirstConsumer) or at a hash of the PVC name
(immediate binding). The volume must land on the first preferred node or the call must fail RESOURCE_EXHAUSTED,
with nothing created, so the provisioner asks the scheduler for another node.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.csi.conftest import KEY, CsiCluster, GiB, create_request, csi_cluster
from topolvm.csi.proto import csi_pb2 as csi

EVERY = ["n1", "n2", "n3"]  # VG sizes below: n1 20 GiB, n2 8 GiB, n3 40 GiB


def rotated(first: str, nodes: list[str]) -> list[str]:
    i = nodes.index(first)
    return nodes[i:] + nodes[:i]


@pytest.fixture(scope="module")
def world() -> Iterator[CsiCluster]:
    with csi_cluster({"n1": 20 * GiB, "n2": 8 * GiB, "n3": 40 * GiB}) as w:
        yield w


@pytest.mark.parametrize(
    ("preferred", "requisite", "node"),
    [
        pytest.param(rotated("n2", EVERY), EVERY, "n2", id="wffc-selected"),
        pytest.param(["n2"], ["n2"], "n2", id="wffc-strict-topology"),
        pytest.param(["n2", "n1"], ["n1", "n2"], "n2", id="allowed-topologies-selected"),
        pytest.param(["n1"], ["n1"], "n1", id="allowed-topologies-strict"),
        pytest.param(rotated("n1", EVERY), EVERY, "n1", id="immediate-binding-hash-first"),
        pytest.param(None, ["n1", "n2"], "n1", id="requisite-only-most-room"),
        pytest.param(None, None, "n3", id="no-topology-most-room"),
    ],
)
def test_volume_lands_on_the_chosen_node(
    world: CsiCluster,
    preferred: list[str] | None,
    requisite: list[str] | None,
    node: str,
    request: pytest.FixtureRequest,
) -> None:
    name = f"pvc-{request.node.callspec.id}"
    vol = world.ctrl.CreateVolume(create_request(name, 2 * GiB, preferred=preferred, requisite=requisite), timeout=15)
    assert [t.segments[KEY] for t in vol.volume.accessible_topology] == [node]
    assert world.lv_nodes()[name] == node
    lvs = world.lvms[node].report(vg_names=["vg"]).vgs["vg"].lvs
    assert vol.volume.volume_id in {lv.name for lv in lvs}
    world.ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=vol.volume.volume_id), timeout=15)


@pytest.mark.parametrize(
    ("preferred", "requisite"),
    [
        pytest.param(rotated("n2", EVERY), EVERY, id="wffc-selected"),
        pytest.param(["n2"], ["n2"], id="wffc-strict-topology"),
        pytest.param(["n2", "n1"], ["n1", "n2"], id="allowed-topologies-selected"),
    ],
)
def test_selected_node_without_room_is_resource_exhausted(
    world: CsiCluster, preferred: list[str], requisite: list[str], request: pytest.FixtureRequest
) -> None:
    """n2 has 8 GiB; n1 and n3 could hold 10 GiB, but the pod is bound for n2: nothing is created anywhere."""
    name = f"pvc-big-{request.node.callspec.id}"
    before = {n: lvm.report(vg_names=["vg"]).vgs["vg"].lvs for n, lvm in world.lvms.items()}
    with pytest.raises(grpc.RpcError) as info:
        world.ctrl.CreateVolume(create_request(name, 10 * GiB, preferred=preferred, requisite=requisite), timeout=15)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "n2" in (info.value.details() or "")
    assert name not in world.lv_nodes()
    assert {n: lvm.report(vg_names=["vg"]).vgs["vg"].lvs for n, lvm in world.lvms.items()} == before


def test_topology_without_the_node_key_is_invalid(world: CsiCluster) -> None:
    req = create_request("pvc-zone", GiB)
    req.accessibility_requirements.requisite.add().segments["topology.kubernetes.io/zone"] = "a"
    with pytest.raises(grpc.RpcError) as info:
        world.ctrl.CreateVolume(req, timeout=15)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "pvc-zone" not in world.lv_nodes()
