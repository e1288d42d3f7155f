"""The pod mutation decision: which TopoLVM capacity a new pod needs, and the JSONPatch that tells the extender.

Called by ``topolvm.webhook.app`` (off the event loop, since lookups block). Follows upstream's pod mutator:
- sums, per device class, the storage requests of the pod's *pending* PVCs and generic ephemeral volumes whose
  StorageClass is provisioned by ``topolvm.io`` (a request of 0 or none counts as 1 GiB);
- a pod with an already bound TopoLVM PVC is left alone (its node is fixed by the PV);
- missing PVCs or StorageClasses are skipped (pods may be created before their claims);
- it adds ``capacity.topolvm.io/<class>`` annotations and ``topolvm.io/capacity: 1`` to the first container's
  requests and limits, so kube-scheduler routes the pod to the extender.
Beyond upstream's webhook configuration, a namespace labelled ``topolvm.io/webhook: ignore`` is also honoured
here, so a missing namespaceSelector in the MutatingWebhookConfiguration cannot wedge system namespaces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import msgspec

from topolvm import constants, errors
from topolvm.core import quantity, sizing
from topolvm.webhook import ports, wire

# Namespace opt-out label of upstream's chart (namespaceSelector ``topolvm.io/webhook NotIn [ignore]``).
CAPACITY_QUANTITY = "1"


@dataclasses.dataclass(frozen=True)
class Decision:
    """``allowed`` with an optional JSONPatch, or a refusal with an HTTP-like code and message."""

    allowed: bool
    reason: str
    patch: tuple[dict[str, object], ...] = ()
    code: int = 200
    capacities: Mapping[str, int] = dataclasses.field(default_factory=dict)


def allow(reason: str) -> Decision:
    return Decision(True, reason)


def refuse(code: int, reason: str) -> Decision:
    return Decision(False, reason, code=code)


def pointer(*parts: str) -> str:
    """RFC 6901 JSON pointer from unescaped path parts."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


class _Classes:
    """StorageClass lookups for one admission, cached: a pod often mounts several claims of one class."""

    def __init__(self, lookup: ports.Lookup) -> None:
        self._lookup = lookup
        self._seen: dict[str, ports.StorageClass | None] = {}

    def topolvm_class(self, name: str) -> ports.StorageClass | None:
        if name not in self._seen:
            found = self._lookup.storage_class(name=name)
            self._seen[name] = found if found is not None and found.provisioner == constants.PLUGIN_NAME else None
        return self._seen[name]


def _device_class(storage_class: ports.StorageClass) -> str:
    return constants.capacity_annotation(storage_class.parameters.get(constants.DEVICE_CLASS_PARAMETER, ""))


def _requested(text: str | None) -> int:
    size = quantity.to_bytes(text) if text is not None else 0
    return size or sizing.DEFAULT_SIZE


def capacities(pod: wire.Pod, namespace: str, lookup: ports.Lookup) -> dict[str, int] | None:
    """Bytes per capacity annotation key; None when a bound TopoLVM claim pins the pod to a node already."""
    classes = _Classes(lookup)
    totals: dict[str, int] = {}
    for volume in pod.spec.volumes or ():
        if volume.persistentVolumeClaim is not None:
            claim = lookup.claim(namespace=namespace, name=volume.persistentVolumeClaim.claimName)
            if claim is None or claim.storage_class is None:
                continue
            storage_class = classes.topolvm_class(claim.storage_class)
            if storage_class is None:
                continue
            if claim.phase != "Pending":
                return None
            key = _device_class(storage_class)
            totals[key] = totals.get(key, 0) + _requested(claim.storage_request)
        elif volume.ephemeral is not None and volume.ephemeral.volumeClaimTemplate is not None:
            spec = volume.ephemeral.volumeClaimTemplate.spec
            if spec.storageClassName is None:
                continue
            storage_class = classes.topolvm_class(spec.storageClassName)
            if storage_class is None:
                continue
            requests = spec.resources.requests if spec.resources is not None else None
            raw = requests.get("storage") if requests else None
            key = _device_class(storage_class)
            totals[key] = totals.get(key, 0) + _requested(_quantity_text(raw))
    return totals


def _quantity_text(raw: msgspec.Raw | None) -> str | None:
    if raw is None:
        return None
    value = msgspec.json.decode(raw)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise errors.InvalidArgument(f"storage request is not a quantity: {bytes(raw)[:64]!r}")


def patch_for(pod: wire.Pod, totals: Mapping[str, int]) -> tuple[dict[str, object], ...]:
    ops: list[dict[str, object]] = []
    values = {key: str(size) for key, size in sorted(totals.items())}
    if pod.metadata.annotations is None:
        ops.append({"op": "add", "path": pointer("metadata", "annotations"), "value": values})
    else:
        ops.extend({"op": "add", "path": pointer("metadata", "annotations", k), "value": v} for k, v in values.items())
    first = (pod.spec.containers or [wire.Container()])[0]
    resources = first.resources
    base = ("spec", "containers", "0", "resources")
    if resources is None:
        value = {"requests": {constants.CAPACITY_RESOURCE: "1"}, "limits": {constants.CAPACITY_RESOURCE: "1"}}
        ops.append({"op": "add", "path": pointer(*base), "value": value})
        return tuple(ops)
    for field, present in (("requests", resources.requests), ("limits", resources.limits)):
        if present is None:
            path, item = pointer(*base, field), {constants.CAPACITY_RESOURCE: CAPACITY_QUANTITY}
            ops.append({"op": "add", "path": path, "value": item})
        else:
            path = pointer(*base, field, constants.CAPACITY_RESOURCE)
            ops.append({"op": "add", "path": path, "value": CAPACITY_QUANTITY})
    return tuple(ops)


def _screen(request: wire.Request) -> wire.Pod | Decision:
    """The pod of a request that may need mutation, or the decision that it does not."""
    if request.operation not in ("CREATE", "") or request.kind.kind not in ("Pod", ""):
        return allow("not a pod creation")
    if not request.object or bytes(request.object) == b"null":
        return refuse(400, "request.object is required")
    try:
        pod = wire.pod_decoder.decode(request.object)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        return refuse(400, f"cannot decode pod: {exc}")
    if not pod.spec.containers:
        return refuse(403, "pod has no containers")
    if not pod.spec.volumes:
        return allow("no volumes")
    return pod


def decide(request: wire.Request, lookup: ports.Lookup) -> Decision:
    """The decision for one AdmissionRequest. Lookup failures (``errors.Unavailable``) propagate."""
    pod = _screen(request)
    if isinstance(pod, Decision):
        return pod
    # Pods made from templates may have no namespace yet; their claims live in the request's namespace.
    namespace = pod.metadata.namespace or request.namespace
    labels = lookup.namespace_labels(name=namespace) if namespace else None
    if labels and labels.get(constants.NAMESPACE_OPT_OUT_LABEL) == constants.NAMESPACE_OPT_OUT_VALUE:
        return allow(
            f"namespace {namespace} opted out ({constants.NAMESPACE_OPT_OUT_LABEL}={constants.NAMESPACE_OPT_OUT_VALUE})"
        )
    try:
        totals = capacities(pod, namespace, lookup)
    except errors.InvalidArgument as exc:
        return refuse(400, f"invalid storage request: {exc}")
    if totals is None:
        return allow("pod has a bound TopoLVM volume")
    if not totals:
        return allow("no request for TopoLVM")
    return Decision(True, "capacity requested", patch=patch_for(pod, totals), capacities=totals)
