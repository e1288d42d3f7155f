"""One parser and one writer per kind: Kubernetes JSON <-> ``topolvm.core.resources``/``workloads`` values.

Used by ``topolvm.kube.client``. A decoded object keeps the JSON it came from (``Meta.wire``), and a write starts
from that JSON and overlays only the fields this project changes, so fields the model leaves out (a Pod's
images, a Node's addresses) survive a read-modify-write untouched. Objects this project creates are written
whole from the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from topolvm import constants, errors
from topolvm.core import resources, workloads
from topolvm.kube import codec_workloads as cw
from topolvm.kube.json_meta import JsonDict, amount_texts, amounts, meta_from, size, start


@dataclass(frozen=True)
class Route:
    """Where a kind lives in the REST API."""

    group_version: str  # "v1" for the core group
    plural: str

    def collection(self, namespace: str) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"


# --- LogicalVolume ------------------------------------------------------------------------------------------------


def lv_from_json(raw: Mapping[str, Any]) -> resources.LogicalVolume:
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    current = status.get("currentSize")
    return resources.LogicalVolume(
        meta=meta_from(raw),
        spec=resources.LogicalVolumeSpec(
            name=spec.get("name", ""),
            node_name=spec.get("nodeName", ""),
            size=size(spec.get("size", 0)),
            device_class=spec.get("deviceClass", ""),
            lvcreate_option_class=spec.get("lvcreateOptionClass", ""),
            source=spec.get("source", ""),
            access_type=spec.get("accessType", ""),
        ),
        status=resources.LogicalVolumeStatus(
            volume_id=status.get("volumeID", ""),
            code=int(status.get("code", 0)),
            message=status.get("message", ""),
            current_size=size(current) if current is not None else None,
        ),
    )


def lv_to_json(lv: resources.LogicalVolume) -> JsonDict:
    out = start(lv, f"{constants.LOGICAL_VOLUME_GROUP}/{constants.LOGICAL_VOLUME_VERSION}", "LogicalVolume")
    spec: JsonDict = {"name": lv.spec.name, "nodeName": lv.spec.node_name, "size": str(lv.spec.size)}
    for name, value in (
        ("deviceClass", lv.spec.device_class),
        ("lvcreateOptionClass", lv.spec.lvcreate_option_class),
        ("source", lv.spec.source),
        ("accessType", lv.spec.access_type),
    ):
        if value:
            spec[name] = value
    status: JsonDict = {"code": lv.status.code}
    if lv.status.volume_id:
        status["volumeID"] = lv.status.volume_id
    if lv.status.message:
        status["message"] = lv.status.message
    if lv.status.current_size is not None:
        status["currentSize"] = str(lv.status.current_size)
    out["spec"], out["status"] = spec, status
    return out


# --- Node, Namespace ----------------------------------------------------------------------------------------------


def node_from_json(raw: Mapping[str, Any]) -> resources.Node:
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    taints = tuple(
        resources.Taint(t.get("key", ""), resources.TaintEffect(t.get("effect", "NoSchedule")), t.get("value", ""))
        for t in spec.get("taints") or ()
    )
    return resources.Node(
        meta_from(raw),
        resources.NodeSpec(taints=taints, unschedulable=bool(spec.get("unschedulable", False))),
        resources.NodeStatus(allocatable=amounts(status.get("allocatable"))),
    )


def node_to_json(node: resources.Node) -> JsonDict:
    out = start(node, "v1", "Node")
    spec = out.setdefault("spec", {})
    taints = [{"key": t.key, "value": t.value, "effect": str(t.effect)} for t in node.spec.taints]
    if taints:
        spec["taints"] = taints
    else:
        spec.pop("taints", None)
    if node.spec.unschedulable:
        spec["unschedulable"] = True
    else:
        spec.pop("unschedulable", None)
    out.setdefault("status", {})["allocatable"] = amount_texts(node.status.allocatable)
    return out


def namespace_from_json(raw: Mapping[str, Any]) -> resources.Namespace:
    return resources.Namespace(meta_from(raw))


def namespace_to_json(ns: resources.Namespace) -> JsonDict:
    return start(ns, "v1", "Namespace")


# --- Event (core/v1) ----------------------------------------------------------------------------------------------


def event_from_json(raw: Mapping[str, Any]) -> resources.ClusterEvent:
    involved = raw.get("involvedObject") or {}
    source = raw.get("source") or {}
    return resources.ClusterEvent(
        meta=meta_from(raw),
        involved=resources.ObjectRef(
            api_version=involved.get("apiVersion", ""),
            kind=involved.get("kind", ""),
            name=involved.get("name", ""),
            namespace=involved.get("namespace", ""),
            uid=involved.get("uid", ""),
        ),
        reason=raw.get("reason", ""),
        message=raw.get("message", ""),
        warning=raw.get("type") == "Warning",
        component=source.get("component", ""),
        host=source.get("host", ""),
        first_timestamp=raw.get("firstTimestamp") or "",
        last_timestamp=raw.get("lastTimestamp") or "",
        count=int(raw.get("count") or 1),
    )


def event_to_json(event: resources.ClusterEvent) -> JsonDict:
    out = start(event, "v1", "Event")
    ref = event.involved
    involved: JsonDict = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
    if ref.namespace:
        involved["namespace"] = ref.namespace
    if ref.uid:
        involved["uid"] = ref.uid
    source: JsonDict = {"component": event.component} if event.component else {}
    if event.host:
        source["host"] = event.host
    out.update(
        involvedObject=involved,
        reason=event.reason,
        message=event.message,
        type="Warning" if event.warning else "Normal",
        source=source,
        count=event.count,
    )
    for key, value in (("firstTimestamp", event.first_timestamp), ("lastTimestamp", event.last_timestamp)):
        if value:
            out[key] = value
    return out


# --- the table ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    route: Route
    decode: Callable[[Mapping[str, Any]], Any]
    encode: Callable[[Any], JsonDict]
    encode_status: Callable[[Any], JsonDict] | None = None
    field_selectors: Mapping[str, str] | None = None  # index name -> API field path


CODECS: dict[resources.Kind[Any], Codec] = {
    resources.LOGICAL_VOLUME: Codec(
        Route(f"{constants.LOGICAL_VOLUME_GROUP}/{constants.LOGICAL_VOLUME_VERSION}", constants.LOGICAL_VOLUME_PLURAL),
        lv_from_json,
        lv_to_json,
        lv_to_json,
        {resources.BY_NODE: "spec.nodeName"},
    ),
    resources.NODE: Codec(Route("v1", "nodes"), node_from_json, node_to_json, node_to_json),
    resources.NAMESPACE: Codec(Route("v1", "namespaces"), namespace_from_json, namespace_to_json),
    resources.CLUSTER_EVENT: Codec(Route("v1", "events"), event_from_json, event_to_json),
    workloads.POD: Codec(
        Route("v1", "pods"),
        cw.pod_from_json,
        cw.pod_to_json,
        cw.pod_status_json,
        {resources.BY_NODE: "spec.nodeName", workloads.BY_PHASE: "status.phase"},
    ),
    workloads.PVC: Codec(Route("v1", "persistentvolumeclaims"), cw.pvc_from_json, cw.pvc_to_json, cw.pvc_status_json),
    workloads.PV: Codec(Route("v1", "persistentvolumes"), cw.pv_from_json, cw.pv_to_json, cw.pv_status_json),
    workloads.STORAGE_CLASS: Codec(
        Route("storage.k8s.io/v1", "storageclasses"), cw.storage_class_from_json, cw.storage_class_to_json
    ),
    workloads.CSI_STORAGE_CAPACITY: Codec(
        Route("storage.k8s.io/v1", "csistoragecapacities"), cw.capacity_from_json, cw.capacity_to_json
    ),
}


def codec(kind: resources.Kind[Any]) -> Codec:
    try:
        return CODECS[kind]
    except KeyError:
        raise errors.InvalidArgument(f"no codec for {kind.name}") from None
