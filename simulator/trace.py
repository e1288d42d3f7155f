"""The trace format: what happens to a cluster, one operation per line, replayable by the simulator and by the
real control-plane harness alike (docs/simulator.md documents it).

Each JSONL line is an object with ``t`` (seconds from the start) and ``op``; sizes are bytes (integers) or
quantity strings with a unit. Operations:

    create-pod     namespace, name, cpu ("500m"), memory ("1Gi"), claims: [{name, storage-class, size}],
                   owner (optional: the StatefulSet it belongs to)
    delete-pod     namespace, name, delete-claims (bool: also delete its claims)
    expand-claim   namespace, name, size
    snapshot       namespace, claim, name             delete-snapshot   name
    add-node       pool, name (optional)              fail-node / drain-node   name
    add-disk       node, volume-group, size
    place-claim    namespace, name, storage-class, size, node: a claim whose volume already exists on that node
                   (``topolvm-sim snapshot`` writes one per LogicalVolume of a live cluster). The claim is created
                   with kube-scheduler's selected-node annotation already set (once the node has published its
                   capacity), so the provisioner model puts its volume there; no pod uses it. A placement that
                   fails (no room on the node) is recorded as a workload error, like any other failed operation.

Generated workloads are recorded in this format (``topolvm-sim run --record-trace``), so a generated run can be
replayed exactly, here or against a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import msgspec

from simulator import units
from topolvm import errors

Size = int | str
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class _Op(msgspec.Struct, forbid_unknown_fields=True, rename="kebab", kw_only=True, tag_field="op", tag=str.lower):
    t: NonNegative


class Claim(msgspec.Struct, forbid_unknown_fields=True, rename="kebab", kw_only=True):
    name: str
    storage_class: str
    size: Size

    @property
    def bytes(self) -> int:
        return size_of(self.size)


class CreatePod(_Op, tag="create-pod"):
    namespace: str
    name: str
    claims: list[Claim]
    cpu: str = "500m"
    memory: str = "1Gi"
    owner: str = ""


class DeletePod(_Op, tag="delete-pod"):
    namespace: str
    name: str
    delete_claims: bool = True


class ExpandClaim(_Op, tag="expand-claim"):
    namespace: str
    name: str
    size: Size


class Snapshot(_Op, tag="snapshot"):
    namespace: str
    claim: str
    name: str


class DeleteSnapshot(_Op, tag="delete-snapshot"):
    name: str


class AddNode(_Op, tag="add-node"):
    pool: str
    name: str = ""


class FailNode(_Op, tag="fail-node"):
    name: str


class DrainNode(_Op, tag="drain-node"):
    name: str


class AddDisk(_Op, tag="add-disk"):
    node: str
    volume_group: str
    size: Size


class PlaceClaim(_Op, tag="place-claim"):
    namespace: str
    name: str
    storage_class: str
    size: Size
    node: str


Op = (
    CreatePod
    | DeletePod
    | ExpandClaim
    | Snapshot
    | DeleteSnapshot
    | AddNode
    | FailNode
    | DrainNode
    | AddDisk
    | PlaceClaim
)
_decoder = msgspec.json.Decoder(Op)
_encoder = msgspec.json.Encoder()


def size_of(value: Size) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"size {value} must not be negative")
        return value
    return units.size(value)


def encode(op: Op) -> bytes:
    return _encoder.encode(op)


def decode_line(line: bytes | str, where: str) -> Op:
    try:
        op = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise errors.ConfigError(f"{where}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise errors.ConfigError(f"{where}: not JSON: {exc}") from None
    for value in _sizes(op):
        try:
            size_of(value)
        except ValueError as exc:
            raise errors.ConfigError(f"{where}: {exc}") from None
    return op


def _sizes(op: Op) -> Iterable[Size]:
    if isinstance(op, CreatePod):
        return [c.size for c in op.claims]
    if isinstance(op, ExpandClaim | AddDisk | PlaceClaim):
        return [op.size]
    return []


def read(path: str | Path) -> Iterator[Op]:
    """Operations of a JSONL trace in file order; ConfigError naming the line."""
    p = Path(path)
    try:
        handle = p.open("rb")
    except OSError as exc:
        raise errors.ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    with handle:
        last = 0.0
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            op = decode_line(line, f"{p}:{number}")
            if op.t < last:
                raise errors.ConfigError(f"{p}:{number}: t={op.t} goes back in time (previous line t={last})")
            last = op.t
            yield op


def write(path: str | Path, ops: Iterable[Op]) -> int:
    count = 0
    with Path(path).open("wb") as handle:
        for op in ops:
            handle.write(encode(op) + b"\n")
            count += 1
    return count


def as_dict(op: Op) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(op)
    return result
