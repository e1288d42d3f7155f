"""admission.k8s.io/v1 AdmissionReview and the parts of a v1.Pod the webhook reads (msgspec, JSON names).

Unknown fields are skipped, so any Pod decodes; fields we only test for presence are kept raw.
"""

from __future__ import annotations

import msgspec

API_VERSION = "admission.k8s.io/v1"


class ObjectMeta(msgspec.Struct, frozen=True):
    name: str = ""
    generateName: str = ""  # Kubernetes JSON names follow
    namespace: str = ""
    annotations: dict[str, str] | None = None


class ClaimSource(msgspec.Struct, frozen=True):
    claimName: str = ""


class ResourceRequirements(msgspec.Struct, frozen=True):
    requests: dict[str, msgspec.Raw] | None = None
    limits: dict[str, msgspec.Raw] | None = None


class ClaimSpec(msgspec.Struct, frozen=True):
    storageClassName: str | None = None
    resources: ResourceRequirements | None = None


class ClaimTemplate(msgspec.Struct, frozen=True):
    spec: ClaimSpec = ClaimSpec()


class EphemeralSource(msgspec.Struct, frozen=True):
    volumeClaimTemplate: ClaimTemplate | None = None


class Volume(msgspec.Struct, frozen=True):
    name: str = ""
    persistentVolumeClaim: ClaimSource | None = None
    ephemeral: EphemeralSource | None = None


class Container(msgspec.Struct, frozen=True):
    name: str = ""
    resources: ResourceRequirements | None = None


class PodSpec(msgspec.Struct, frozen=True):
    volumes: list[Volume] | None = None
    containers: list[Container] | None = None


class Pod(msgspec.Struct, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()


class GroupVersionKind(msgspec.Struct, frozen=True):
    group: str = ""
    version: str = ""
    kind: str = ""


class Request(msgspec.Struct, frozen=True):
    uid: str
    kind: GroupVersionKind = GroupVersionKind()
    namespace: str = ""
    operation: str = ""
    # Absent -> empty Raw (msgspec has no Optional[Raw]); ``mutate`` treats empty and ``null`` alike.
    object: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class Review(msgspec.Struct, frozen=True):
    apiVersion: str = API_VERSION
    kind: str = "AdmissionReview"
    request: Request | None = None


class Status(msgspec.Struct, frozen=True, omit_defaults=True):
    code: int = 0
    message: str = ""


class Response(msgspec.Struct, frozen=True, omit_defaults=True):
    uid: str
    allowed: bool
    patchType: str | None = None
    patch: bytes | None = None  # msgspec writes bytes as base64, as the API expects
    status: Status | None = None


class ReviewReply(msgspec.Struct, frozen=True):
    response: Response
    apiVersion: str = API_VERSION
    kind: str = "AdmissionReview"


review_decoder = msgspec.json.Decoder(Review)
pod_decoder = msgspec.json.Decoder(Pod)
encoder = msgspec.json.Encoder()
