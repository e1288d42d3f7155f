"""admission.k8s.io/v1 AdmissionReview, the envelope (msgspec, JSON names).

Unknown fields are skipped. The pod inside is kept raw: ``topolvm.webhook.mutate`` reads it with the one pod
parser (``topolvm.kube.codec_workloads``) and builds its patch against the JSON as sent.
"""

from __future__ import annotations

import msgspec

API_VERSION = "admission.k8s.io/v1"


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
encoder = msgspec.json.Encoder()
