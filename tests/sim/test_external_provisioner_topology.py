"""external-provisioner's requirement for an Immediate claim, and TopoLVM's controller following it in the
simulator: the node comes from a hash of the claim's name, not from the room nodes have.

The vectors were computed with external-provisioner v6.4.0's own ``getPVCNameHashAndIndexOffset`` (Go's
``hash/fnv``) and its rotation of the sorted requisite list, over the seven node names below.
"""

from __future__ import annotations

import copy

import pytest

from simulator import topology, trace
from tests.sim.test_simulation import FIVE, simulate

GiB = 1 << 30
NODES = ["n-b", "n-a", "node-10", "node-2", "nvme-00000", "nvme-00001", "x"]


@pytest.mark.parametrize(
    ("claim", "hashed", "index", "first"),
    [
        ("data", 1959470013, 0, "nvme-00000"),
        ("a", 84696446, 0, "node-10"),
        ("foobar", 837857890, 0, "node-10"),
        ("db-0-c0", 2422006056, 0, "n-b"),
        ("db-17-c0", 2274126124, 0, "nvme-00000"),
        ("data-web-0", 1181096325, 0, "node-2"),  # a StatefulSet's claims: "web" hashed, the index added
        ("data-web-1", 1181096325, 1, "nvme-00000"),
        ("data-web-2", 1181096325, 2, "nvme-00001"),
        ("www-web-4294967295", 1181096325, 4294967295, "node-10"),  # the sum wraps at 32 bits
        ("www-web-4294967296", 3063072526, 0, "node-2"),  # not a uint32: the whole name is hashed
        ("pvc-007", 964120306, 7, "node-10"),
        ("x-", 1500973320, 0, "n-a"),
        ("-3", 2166136261, 3, "nvme-00001"),
        ("scratch-12", 2077382857, 12, "node-10"),
    ],
)
def test_the_first_preferred_node_is_external_provisioners(claim: str, hashed: int, index: int, first: str) -> None:
    assert topology.claim_name_hash(claim) == (hashed, index)
    preferred, requisite = topology.immediate_requirements(NODES, claim)
    assert requisite == tuple(sorted(NODES)) and preferred[0] == first
    assert preferred == requisite[requisite.index(first) :] + requisite[: requisite.index(first)]


def test_no_registered_node_no_requirement() -> None:
    assert topology.immediate_requirements([], "data") == ((), ())


FIVE_NODES = ["big-00000", "big-00001", "mid-00000", "small-00000", "tiny-00000"]


def claim_on(node: str, prefix: str = "imm-") -> str:
    """A claim name external-provisioner sends to ``node`` first."""
    return next(n for n in (f"{prefix}{c}" for c in "abcdefghijklmnopqrstuvwxyz") if _first(n) == node)


def _first(name: str) -> str:
    return topology.immediate_requirements(FIVE_NODES, name)[0][0]


def test_an_immediate_claim_goes_to_the_hashed_node_whatever_room_the_others_have() -> None:
    """TopoLVM's controller takes the first preferred node, as upstream: a 10 GiB claim hashed to the 50 GiB
    node goes there, not to a 400 GiB one; a 100 GiB claim hashed there is retried (with external-provisioner's
    backoff, which never gives up) and never bound, though four nodes have room. Its pod waits for the claim."""
    data = copy.deepcopy(FIVE)
    data["cluster"]["storage-classes"].append({"name": "imm", "device-class": "ssd", "binding-mode": "Immediate"})
    small = claim_on("tiny-00000")
    big = claim_on("tiny-00000", prefix=small)
    ops: list[trace.Op] = [
        trace.CreatePod(
            t=60, namespace="default", name="p", claims=[trace.Claim(name=small, storage_class="imm", size=10 * GiB)]
        ),
        trace.CreatePod(
            t=60, namespace="default", name="q", claims=[trace.Claim(name=big, storage_class="imm", size=100 * GiB)]
        ),
    ]
    result = simulate(data, ops)
    bound = {d.pod[1]: d.node for d in result.decisions if d.bound_at is not None}
    assert bound == {"p": "tiny-00000"}
    s = result.summary
    assert s["provisioner"]["provisioned"] == 1 and s["provisioner"]["retried"] >= 5
    assert s["provisioner"]["rescheduled"] == 0 and s["pods"]["pending_at_end"] == 1
    assert set(s["scheduling"]["reasons"]) == {"pod has unbound immediate PersistentVolumeClaims"}
