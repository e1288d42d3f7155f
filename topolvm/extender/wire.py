"""kube-scheduler extender wire format (k8s.io/kube-scheduler/extender/v1): Go field names, JSON via msgspec.

Only the parts of Pod and Node the extender reads are typed; a Node item is kept as raw JSON as well, because a
non-cache-capable filter reply must echo the full Node objects it keeps (kube-scheduler may use them as-is).
Unknown fields are skipped by msgspec, so any kube-scheduler version's objects decode. Request structs are
``gc=False`` (they cannot form cycles): a 5,000-node request would otherwise feed the cycle collector 10k objects.
"""

from __future__ import annotations

import msgspec


class ObjectMeta(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    annotations: dict[str, str] | None = None


class ClaimSource(msgspec.Struct, frozen=True, gc=False):
    claimName: str = ""


class EphemeralSource(msgspec.Struct, frozen=True, gc=False):
    """A generic ephemeral volume; only its presence matters."""


class Volume(msgspec.Struct, frozen=True, gc=False):
    """A pod volume, as far as the extender cares: which PersistentVolumeClaim it mounts, if any."""

    name: str = ""
    persistentVolumeClaim: ClaimSource | None = None
    ephemeral: EphemeralSource | None = None  # its claim is named <pod>-<volume>


class PodSpecHead(msgspec.Struct, frozen=True, gc=False):
    volumes: list[Volume] | None = None


class PodHead(msgspec.Struct, frozen=True, gc=False):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpecHead = PodSpecHead()

    def claims(self) -> tuple[str, ...]:
        """Names of the claims the pod mounts (in its namespace), generic ephemeral volumes' included."""
        names: list[str] = []
        for volume in self.spec.volumes or ():
            if volume.persistentVolumeClaim is not None and volume.persistentVolumeClaim.claimName:
                names.append(volume.persistentVolumeClaim.claimName)
            elif volume.ephemeral is not None and volume.name:
                names.append(f"{self.metadata.name}-{volume.name}")
        return tuple(names)


class NodeHead(msgspec.Struct, frozen=True, gc=False):
    """What the extender needs from a v1.Node: its name and annotations."""

    metadata: ObjectMeta = ObjectMeta()


class RawNodeList(msgspec.Struct, frozen=True, gc=False):
    items: list[msgspec.Raw] | None = None


class HeadNodeList(msgspec.Struct, frozen=True, gc=False):
    items: list[NodeHead] | None = None


class FilterArgs(msgspec.Struct, frozen=True, gc=False):
    """ExtenderArgs as the filter verb reads it (nodes kept raw for echoing)."""

    Pod: PodHead | None = None
    Nodes: RawNodeList | None = None
    NodeNames: list[str] | None = None


class PrioritizeArgs(msgspec.Struct, frozen=True, gc=False):
    """ExtenderArgs as the prioritize verb reads it (only node heads)."""

    Pod: PodHead | None = None
    Nodes: HeadNodeList | None = None
    NodeNames: list[str] | None = None


class ReplyNodeList(msgspec.Struct):
    items: list[msgspec.Raw]
    apiVersion: str = "v1"  # Kubernetes JSON name
    kind: str = "NodeList"


class FilterResult(msgspec.Struct):
    """ExtenderFilterResult. Exactly one of Nodes/NodeNames is set, matching the request."""

    Nodes: ReplyNodeList | None = None
    NodeNames: list[str] | None = None
    FailedNodes: dict[str, str] = msgspec.field(default_factory=dict)
    FailedAndUnresolvableNodes: dict[str, str] = msgspec.field(default_factory=dict)
    Error: str = ""


class HostPriority(msgspec.Struct, gc=False):
    Host: str
    Score: int


filter_decoder = msgspec.json.Decoder(FilterArgs)
prioritize_decoder = msgspec.json.Decoder(PrioritizeArgs)
head_decoder = msgspec.json.Decoder(NodeHead)
encoder = msgspec.json.Encoder()
