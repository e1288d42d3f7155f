"""external-provisioner's accessibility requirements for a claim of an Immediate StorageClass (v6.4.0,
pkg/controller/topology.go ``GenerateAccessibilityRequirements`` with ``--immediate-topology``, its default, and
no ``allowedTopologies``), for TopoLVM's one topology key.

Requisite: the value of ``topology.topolvm.io/node`` of every Node that carries it (topolvm-node registers it),
sorted. Preferred: the same list rotated to start at (FNV-32 of the claim's name + an index) modulo its length —
for a name ``<base>-<n>`` the hash is of the part of ``<base>`` after its last dash and ``n`` is added, so the
claims of a StatefulSet's members go round the nodes. TopoLVM's CreateVolume then takes the first preferred node
(``topolvm.core.placement``), as upstream does: an Immediate claim lands on a node chosen by its name, whatever
room that node has. (A WaitForFirstConsumer claim's request starts at kube-scheduler's selected node; the
provisioner model sends only that node, all the service reads.)
"""

from __future__ import annotations

from collections.abc import Iterable

_FNV32_OFFSET = 2166136261
_FNV32_PRIME = 16777619
_U32 = 0xFFFFFFFF


def fnv32(data: bytes) -> int:
    """FNV-1, 32 bits (Go's ``hash/fnv.New32``)."""
    value = _FNV32_OFFSET
    for byte in data:
        value = (value * _FNV32_PRIME) & _U32
        value ^= byte
    return value


def claim_name_hash(name: str) -> tuple[int, int]:
    """``getPVCNameHashAndIndexOffset``: the hash and the StatefulSet index of a claim's name."""
    hashed, index = name, 0
    base, dash, suffix = name.rpartition("-")
    if dash and suffix.isascii() and suffix.isdigit() and int(suffix) <= _U32:
        index, hashed = int(suffix), base.rpartition("-")[2]
    return fnv32(hashed.encode()), index


def immediate_requirements(topologies: Iterable[str], claim_name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(preferred, requisite) node names for a claim of an Immediate class; both empty when no node carries the
    topology label (external-provisioner then fails the attempt and retries)."""
    requisite = tuple(sorted(set(topologies)))
    if not requisite:
        return (), ()
    hashed, index = claim_name_hash(claim_name)
    start = ((hashed + index) & _U32) % len(requisite)
    return requisite[start:] + requisite[:start], requisite
