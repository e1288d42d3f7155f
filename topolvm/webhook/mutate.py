"""One AdmissionRequest in, one answer out: screen the request, read the pod, ask the admission service, and
express its decision as a JSONPatch against the pod as it was sent.

Called by ``topolvm.webhook.app`` (off the event loop, since the cluster reads may block). The decision itself
(``topolvm.services.admission``) is shared with the simulator; only the wire lives here. Where the patch adds a
whole map and where it adds a key to an existing one depends on what the sent JSON holds, so that is read from
the raw pod, not from the parsed value (which cannot tell an absent map from an empty one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

from topolvm import constants, errors, ports
from topolvm.core import workloads
from topolvm.kube import codec_workloads
from topolvm.services import admission
from topolvm.webhook import wire

Patch = tuple[dict[str, object], ...]
CAPACITY_QUANTITY = str(admission.CAPACITY_REQUEST)


@dataclasses.dataclass(frozen=True)
class Answer:
    """What to reply: allowed with an optional JSONPatch, or refused with an HTTP-like code and a reason."""

    allowed: bool
    reason: str
    code: int = 200
    patch: Patch = ()
    capacities: Mapping[str, int] = dataclasses.field(default_factory=dict)
    pod: str = ""  # namespace/name of the pod, for the log


def refuse(code: int, reason: str) -> Answer:
    return Answer(False, reason, code=code)


def pointer(*parts: str) -> str:
    """RFC 6901 JSON pointer from unescaped path parts."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _has(raw: Mapping[str, Any], key: str) -> bool:
    return raw.get(key) is not None


def _shape_error(raw: Mapping[str, Any]) -> str | None:
    """Why the maps the patch may add to cannot be patched, if they are not JSON objects (or absent)."""
    for field in ("metadata", "spec"):
        if _has(raw, field) and not isinstance(raw[field], dict):
            return f"{field} is not an object"
    metadata = raw.get("metadata") or {}
    if _has(metadata, "annotations") and not isinstance(metadata["annotations"], dict):
        return "metadata.annotations is not an object"
    first = ((raw.get("spec") or {}).get("containers") or [{}])[0]
    resources = first.get("resources")
    if resources is None:
        return None
    if not isinstance(resources, dict):
        return "spec.containers[0].resources is not an object"
    for field in ("requests", "limits"):
        if _has(resources, field) and not isinstance(resources[field], dict):
            return f"spec.containers[0].resources.{field} is not an object"
    return None


def patch_for(raw: Mapping[str, Any], totals: Mapping[str, int]) -> Patch:
    """The JSONPatch that makes ``raw`` (a pod with at least one container) what ``admission.mutated`` makes it."""
    ops: list[dict[str, object]] = []
    values = {key: str(size) for key, size in sorted(totals.items())}
    if not _has(raw, "metadata"):  # the API server always sends it; a patch cannot add below a missing map
        ops.append({"op": "add", "path": pointer("metadata"), "value": {"annotations": values}})
    elif not _has(raw["metadata"], "annotations"):
        ops.append({"op": "add", "path": pointer("metadata", "annotations"), "value": values})
    else:
        ops.extend({"op": "add", "path": pointer("metadata", "annotations", k), "value": v} for k, v in values.items())
    resources = raw["spec"]["containers"][0].get("resources")
    base = ("spec", "containers", "0", "resources")
    if resources is None:
        value = {"requests": {constants.CAPACITY_RESOURCE: "1"}, "limits": {constants.CAPACITY_RESOURCE: "1"}}
        ops.append({"op": "add", "path": pointer(*base), "value": value})
        return tuple(ops)
    for field in ("requests", "limits"):
        if not _has(resources, field):
            path, item = pointer(*base, field), {constants.CAPACITY_RESOURCE: CAPACITY_QUANTITY}
            ops.append({"op": "add", "path": path, "value": item})
        else:
            path = pointer(*base, field, constants.CAPACITY_RESOURCE)
            ops.append({"op": "add", "path": path, "value": CAPACITY_QUANTITY})
    return tuple(ops)


def _pod(request: wire.Request) -> tuple[dict[str, Any], workloads.Pod] | Answer:
    """The pod of a creation request, as sent and parsed, or the refusal of a malformed one."""
    if not request.object or bytes(request.object) == b"null":
        return refuse(400, "request.object is required")
    raw = msgspec.json.decode(request.object)  # the envelope was valid JSON, so its parts are too
    if not isinstance(raw, dict):
        return refuse(400, "cannot decode pod: not a JSON object")
    try:
        pod = codec_workloads.pod_from_json(raw)
    except errors.InvalidArgument as exc:
        return refuse(400, f"cannot decode pod: {exc}")
    except (AttributeError, TypeError, ValueError) as exc:
        # The API server sends validated pods; anything else is a malformed request, not our failure.
        return refuse(400, f"cannot decode pod: {type(exc).__name__}: {exc}")
    problem = _shape_error(raw)
    if problem is not None:
        return refuse(400, f"cannot decode pod: {problem}")
    # Pods made from templates may have no namespace yet; they are created, and their claims live, in the
    # request's namespace.
    if not pod.meta.namespace and request.namespace:
        pod = dataclasses.replace(pod, meta=dataclasses.replace(pod.meta, namespace=request.namespace))
    return raw, pod


def answer(request: wire.Request, cluster: ports.Cluster) -> Answer:
    """The answer to one AdmissionRequest. Cluster read failures (``errors.TopoLVMError``) propagate."""
    if request.operation not in ("CREATE", "") or request.kind.kind not in ("Pod", ""):
        return Answer(True, "not a pod creation")
    parsed = _pod(request)
    if isinstance(parsed, Answer):
        return parsed
    raw, pod = parsed
    name = pod.meta.name or str((raw.get("metadata") or {}).get("generateName", "")) + "*"
    described = f"{pod.meta.namespace}/{name}"
    decision = admission.decide(pod, cluster)
    if not decision.allowed:
        return Answer(False, decision.reason, code=403, pod=described)
    if not decision.mutates:
        return Answer(True, decision.reason, pod=described)
    return Answer(
        True, decision.reason, patch=patch_for(raw, decision.capacities), capacities=decision.capacities, pod=described
    )
