"""API load on a real kube-apiserver: with the informer caches, node agents never GET a LogicalVolume, no
LogicalVolume is LISTed per volume, and the webhook answers admissions without a request; without them (the
wiring before the caches) all three happen. bench/api_load_bench.py measures the figures at 20 and 200 nodes.

Asserts on request counts only (the API server's own and each client's), never on time.
Needs etcd and kube-apiserver (ci/peers/build.sh etcd kube-apiserver); skips without them, fails in CI.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support import api_load
from tests.support.controlplane import ControlPlane


@pytest.fixture(scope="module")
def plane(kube_api: ControlPlane) -> ControlPlane:
    kube_api.install_crds()
    return kube_api


def run(plane: ControlPlane, mode: str, volumes: tuple[int, ...]) -> tuple[api_load.Fleet, list[api_load.Counts]]:
    """Start three nodes' agents and the controller, then provision each count of volumes in turn; the API
    server's counts of each round. The fleet is returned closed, its clients' counters kept."""
    prefix = f"{mode[0]}{uuid.uuid4().hex[:6]}"
    nodes = [f"{prefix}-node-{i}" for i in range(3)]
    api_load.add_nodes(plane.kubeconfig, nodes)
    rounds = []
    with api_load.fleet_running(plane.kubeconfig, nodes, mode) as fleet:
        before = api_load.settle(plane)
        for i, count in enumerate(volumes):
            api_load.provision(fleet, count, parallel=2, prefix=f"{prefix}-r{i}")
            after = api_load.settle(plane)
            rounds.append(api_load.delta(after, before))
            before = after
        api_load.check_no_failures(fleet)
    return fleet, rounds


def test_cached_components_read_logical_volumes_from_their_caches(plane: ControlPlane) -> None:
    fleet, (one, five) = run(plane, "cached", (1, 5))
    node_requests = fleet.client_counts("node")
    assert node_requests["GET LogicalVolume"] == 0, node_requests
    assert fleet.client_counts()["LIST LogicalVolume"] == 1 + 3  # the controller's informer and each agent's
    # per round: no read of a LogicalVolume at all; the writes are the volumes' own
    for counts in (one, five):
        assert counts["GET logicalvolumes"] == 0, counts
        assert counts["LIST logicalvolumes"] == 0, counts
    assert five["POST logicalvolumes"] == 5


def test_direct_components_read_per_event(plane: ControlPlane) -> None:
    """The same run without caches: the test above would fail on it (what the caches removed)."""
    fleet, (one, five) = run(plane, "direct", (1, 5))
    assert fleet.client_counts("node")["GET LogicalVolume"] > 0
    assert five["GET logicalvolumes"] > one["GET logicalvolumes"] > 0
    assert five["LIST logicalvolumes"] > one["LIST logicalvolumes"] > 0  # each DeleteVolume looks its ID up


@pytest.mark.parametrize(("mode", "requests_per_admission"), [("cached", 0), ("direct", 4)])
def test_webhook_requests_per_admission(plane: ControlPlane, mode: str, requests_per_admission: int) -> None:
    namespace = f"w{uuid.uuid4().hex[:6]}"
    claims = [f"claim-{i}" for i in range(4)]
    api_load.add_claims(plane.kubeconfig, namespace, claims)
    client = api_load.webhook_client(plane.kubeconfig, mode)
    try:
        before = api_load.settle(plane)
        for i in range(5):
            api_load.admit(client, api_load.pod_request(namespace, f"p{i}", claims[i % 2 :: 2]))
        counts = api_load.delta(api_load.settle(plane), before)
    finally:
        client.close()
    # direct: the namespace, two claims and their StorageClass, every time
    assert sum(counts.values()) == 5 * requests_per_admission, counts


def test_webhook_sees_a_claim_created_just_before_its_pod(plane: ControlPlane) -> None:
    namespace = f"w{uuid.uuid4().hex[:6]}"
    api_load.add_claims(plane.kubeconfig, namespace, [])
    client = api_load.webhook_client(plane.kubeconfig, "cached")
    try:
        for i in range(5):
            api_load.add_claims(plane.kubeconfig, namespace, [f"fresh-{i}"])
            answer = api_load.admit(client, api_load.pod_request(namespace, f"p{i}", [f"fresh-{i}"]))
            assert answer.capacities == {"capacity.topolvm.io/ssd": api_load.GiB}
        # a miss costs one GET, never more; whether the watch was quicker than us varies
        assert client.kube.requests["GET PersistentVolumeClaim"] <= 5
        assert client.kube.requests["GET StorageClass"] + client.kube.requests["GET Namespace"] == 0
    finally:
        client.close()
