"""Kubernetes JSON <-> ``topolvm.core.workloads`` values: Pods, PVCs, PVs, StorageClasses, CSIStorageCapacities.

Part of the codec table of ``topolvm.kube.codec`` (which explains the read-modify-write rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from topolvm import constants
from topolvm.core import workloads
from topolvm.kube.json_meta import (
    JsonDict,
    amount_texts,
    amounts,
    fresh,
    meta_from,
    optional_text,
    size,
    start,
    string_map,
    text,
)

PLACEHOLDER_IMAGE = "registry.k8s.io/pause:3.10"  # pods this project creates (workload replay) run nothing

# --- Pod ----------------------------------------------------------------------------------------------------------


def _requirements(raw: Any) -> tuple[workloads.Requirement, ...]:
    return tuple(
        workloads.Requirement(
            text(e, "key"), workloads.Operator(text(e, "operator", "In")), tuple(str(v) for v in e.get("values") or ())
        )
        for e in raw or ()
    )


def _requirements_json(reqs: tuple[workloads.Requirement, ...]) -> list[JsonDict]:
    return [{"key": r.key, "operator": str(r.operator), "values": list(r.values)} for r in reqs]


def _container(raw: Mapping[str, Any]) -> workloads.Container:
    res = raw.get("resources") or {}
    return workloads.Container(text(raw, "name"), amounts(res.get("requests")), amounts(res.get("limits")))


def _container_json(c: workloads.Container) -> JsonDict:
    out: JsonDict = {"name": c.name, "image": PLACEHOLDER_IMAGE}
    if c.requests or c.limits:
        out["resources"] = {"requests": amount_texts(c.requests), "limits": amount_texts(c.limits)}
    return out


def _volume(raw: Mapping[str, Any]) -> workloads.PodVolume:
    claim = raw.get("persistentVolumeClaim")
    if claim is not None:
        return workloads.PodVolume(text(raw, "name"), claim_name=text(claim, "claimName"))
    template = (raw.get("ephemeral") or {}).get("volumeClaimTemplate")
    if template is not None:
        spec = template.get("spec") or {}
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        ephemeral = workloads.EphemeralClaim(optional_text(spec, "storageClassName"), size(storage) if storage else 0)
        return workloads.PodVolume(text(raw, "name"), ephemeral=ephemeral)
    return workloads.PodVolume(text(raw, "name"))


def _volume_json(v: workloads.PodVolume) -> JsonDict:
    if v.claim_name is not None:
        return {"name": v.name, "persistentVolumeClaim": {"claimName": v.claim_name}}
    if v.ephemeral is not None:
        spec: JsonDict = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": str(v.ephemeral.request_bytes)}},
        }
        if v.ephemeral.storage_class_name is not None:
            spec["storageClassName"] = v.ephemeral.storage_class_name
        return {"name": v.name, "ephemeral": {"volumeClaimTemplate": {"spec": spec}}}
    return {"name": v.name, "emptyDir": {}}


def pod_from_json(raw: Mapping[str, Any]) -> workloads.Pod:
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or ()
    preferred = affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
    scheduled: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or () if c.get("type") == "PodScheduled"), {}
    )
    unschedulable = scheduled.get("status") == "False"
    return workloads.Pod(
        meta_from(raw),
        workloads.PodSpec(
            containers=tuple(_container(c) for c in spec.get("containers") or ()),
            init_containers=tuple(_container(c) for c in spec.get("initContainers") or ()),
            volumes=tuple(_volume(v) for v in spec.get("volumes") or ()),
            node_name=text(spec, "nodeName"),
            node_selector=string_map(spec, "nodeSelector"),
            required_terms=tuple(_requirements(t.get("matchExpressions")) for t in required),
            preferred_terms=tuple(
                workloads.PreferredTerm(
                    int(p.get("weight", 0)), _requirements((p.get("preference") or {}).get("matchExpressions"))
                )
                for p in preferred
            ),
            tolerations=tuple(
                workloads.Toleration(
                    text(t, "key"),
                    workloads.Operator(text(t, "operator") or "Equal"),
                    text(t, "value"),
                    text(t, "effect"),
                )
                for t in spec.get("tolerations") or ()
            ),
            scheduler_name=text(spec, "schedulerName") or "default-scheduler",
        ),
        workloads.PodStatus(
            phase=status.get("phase") or "Pending",
            nominated_node_name=text(status, "nominatedNodeName"),
            unschedulable_reason=scheduled.get("reason", "") if unschedulable else "",
            unschedulable_message=scheduled.get("message", "") if unschedulable else "",
        ),
    )


def pod_to_json(pod: workloads.Pod) -> JsonDict:
    out = start(pod, "v1", "Pod")
    if not fresh(pod):
        return out  # a pod's spec is immutable (binding is its own subresource): only metadata is written
    s = pod.spec
    spec: JsonDict = {
        "containers": [_container_json(c) for c in s.containers],
        "schedulerName": s.scheduler_name,
        "terminationGracePeriodSeconds": 0,
    }
    if s.init_containers:
        spec["initContainers"] = [_container_json(c) for c in s.init_containers]
    if s.volumes:
        spec["volumes"] = [_volume_json(v) for v in s.volumes]
    if s.node_name:
        spec["nodeName"] = s.node_name
    if s.node_selector:
        spec["nodeSelector"] = dict(s.node_selector)
    node_affinity: JsonDict = {}
    if s.required_terms:
        terms = [{"matchExpressions": _requirements_json(t)} for t in s.required_terms]
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    if s.preferred_terms:
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": p.weight, "preference": {"matchExpressions": _requirements_json(p.requirements)}}
            for p in s.preferred_terms
        ]
    if node_affinity:
        spec["affinity"] = {"nodeAffinity": node_affinity}
    if s.tolerations:
        spec["tolerations"] = [
            {
                k: v
                for k, v in (("key", t.key), ("operator", str(t.operator)), ("value", t.value), ("effect", t.effect))
                if v
            }
            for t in s.tolerations
        ]
    out["spec"] = spec
    return out


def pod_status_json(pod: workloads.Pod) -> JsonDict:
    out = start(pod, "v1", "Pod")
    status = out.setdefault("status", {})
    status["phase"] = pod.status.phase
    if pod.status.nominated_node_name:
        status["nominatedNodeName"] = pod.status.nominated_node_name
    conditions = [c for c in status.get("conditions") or () if c.get("type") != "PodScheduled"]
    if pod.status.unschedulable_reason:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": pod.status.unschedulable_reason,
                "message": pod.status.unschedulable_message,
            }
        )
    status["conditions"] = conditions
    return out


# --- PersistentVolumeClaim, PersistentVolume ---------------------------------------------------------------------


def pvc_from_json(raw: Mapping[str, Any]) -> workloads.PersistentVolumeClaim:
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    capacity = (status.get("capacity") or {}).get("storage")
    source = spec.get("dataSource")
    return workloads.PersistentVolumeClaim(
        meta_from(raw),
        workloads.ClaimSpec(
            storage_class_name=optional_text(spec, "storageClassName"),
            request_bytes=size(storage) if storage is not None else 0,
            volume_name=text(spec, "volumeName"),
            access_modes=tuple(spec.get("accessModes") or ()),
            volume_mode=spec.get("volumeMode") or "Filesystem",
            data_source=workloads.DataSource(
                source.get("kind", ""), source.get("name", ""), source.get("apiGroup") or ""
            )
            if source
            else None,
        ),
        workloads.ClaimStatus(
            phase=status.get("phase") or "Pending", capacity_bytes=size(capacity) if capacity is not None else None
        ),
    )


def pvc_to_json(pvc: workloads.PersistentVolumeClaim) -> JsonDict:
    out = start(pvc, "v1", "PersistentVolumeClaim")
    spec = out.setdefault("spec", {})
    spec.setdefault("resources", {}).setdefault("requests", {})["storage"] = str(pvc.spec.request_bytes)
    # Every modelled field, also on updates: a change the API server refuses (the spec is immutable but for a
    # few fields) must reach it and be refused, not be dropped here.
    if pvc.spec.volume_name or not fresh(pvc):
        spec["volumeName"] = pvc.spec.volume_name
    spec["accessModes"] = list(pvc.spec.access_modes)
    spec["volumeMode"] = pvc.spec.volume_mode
    if pvc.spec.storage_class_name is not None:
        spec["storageClassName"] = pvc.spec.storage_class_name
    else:
        spec.pop("storageClassName", None)
    if pvc.spec.data_source is not None:
        ds = pvc.spec.data_source
        wanted = {"kind": ds.kind, "name": ds.name, **({"apiGroup": ds.api_group} if ds.api_group else {})}
        if spec.get("dataSource") != wanted:
            spec["dataSource"] = wanted
    else:
        spec.pop("dataSource", None)
    return out


def pvc_status_json(pvc: workloads.PersistentVolumeClaim) -> JsonDict:
    out = start(pvc, "v1", "PersistentVolumeClaim")
    status = out.setdefault("status", {})
    status["phase"] = pvc.status.phase
    if pvc.status.capacity_bytes is not None:
        status["capacity"] = {"storage": str(pvc.status.capacity_bytes)}
    return out


def pv_from_json(raw: Mapping[str, Any]) -> workloads.PersistentVolume:
    spec = raw.get("spec") or {}
    csi = spec.get("csi") or {}
    ref = spec.get("claimRef")
    node = ""
    for term in ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms") or ():
        for expr in term.get("matchExpressions") or ():
            if expr.get("key") == constants.TOPOLOGY_NODE_KEY and expr.get("values"):
                node = expr["values"][0]
    return workloads.PersistentVolume(
        meta_from(raw),
        workloads.VolumeSpec(
            capacity_bytes=size((spec.get("capacity") or {}).get("storage", 0)),
            driver=csi.get("driver", ""),
            volume_handle=csi.get("volumeHandle", ""),
            fs_type=csi.get("fsType", ""),
            volume_attributes=dict(csi.get("volumeAttributes") or {}),
            claim_ref=workloads.ClaimRef(ref.get("namespace", ""), ref.get("name", ""), ref.get("uid", ""))
            if ref
            else None,
            node_name=node,
            storage_class_name=spec.get("storageClassName", ""),
            reclaim_policy=spec.get("persistentVolumeReclaimPolicy") or "Delete",
            access_modes=tuple(spec.get("accessModes") or ()),
            volume_mode=spec.get("volumeMode") or "Filesystem",
        ),
        workloads.VolumeStatus(phase=(raw.get("status") or {}).get("phase") or "Pending"),
    )


def pv_to_json(pv: workloads.PersistentVolume) -> JsonDict:
    out = start(pv, "v1", "PersistentVolume")
    spec = out.setdefault("spec", {})
    ref = pv.spec.claim_ref
    if ref is None:
        spec.pop("claimRef", None)
    else:
        spec["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": ref.namespace,
            "name": ref.name,
        }
        if ref.uid:
            spec["claimRef"]["uid"] = ref.uid
    if not fresh(pv):
        return out
    s = pv.spec
    spec["capacity"] = {"storage": str(s.capacity_bytes)}
    spec["csi"] = {"driver": s.driver, "volumeHandle": s.volume_handle, "volumeAttributes": dict(s.volume_attributes)}
    if s.fs_type:
        spec["csi"]["fsType"] = s.fs_type
    if s.node_name:
        expr = {"key": constants.TOPOLOGY_NODE_KEY, "operator": "In", "values": [s.node_name]}
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}}
    spec["storageClassName"] = s.storage_class_name
    spec["persistentVolumeReclaimPolicy"] = s.reclaim_policy
    spec["accessModes"] = list(s.access_modes)
    spec["volumeMode"] = s.volume_mode
    return out


def pv_status_json(pv: workloads.PersistentVolume) -> JsonDict:
    out = start(pv, "v1", "PersistentVolume")
    out.setdefault("status", {})["phase"] = pv.status.phase
    return out


# --- StorageClass, CSIStorageCapacity ----------------------------------------------------------------------------


def storage_class_from_json(raw: Mapping[str, Any]) -> workloads.StorageClass:
    return workloads.StorageClass(
        meta_from(raw),
        provisioner=raw.get("provisioner", ""),
        parameters=dict(raw.get("parameters") or {}),
        reclaim_policy=raw.get("reclaimPolicy") or "Delete",
        volume_binding_mode=raw.get("volumeBindingMode") or "Immediate",
        allow_volume_expansion=bool(raw.get("allowVolumeExpansion", False)),
        mount_options=tuple(raw.get("mountOptions") or ()),
    )


def storage_class_to_json(sc: workloads.StorageClass) -> JsonDict:
    out = start(sc, "storage.k8s.io/v1", "StorageClass")
    if fresh(sc):  # everything but metadata is immutable
        out.update(
            provisioner=sc.provisioner,
            parameters=dict(sc.parameters),
            reclaimPolicy=sc.reclaim_policy,
            volumeBindingMode=sc.volume_binding_mode,
            allowVolumeExpansion=sc.allow_volume_expansion,
        )
        if sc.mount_options:
            out["mountOptions"] = list(sc.mount_options)
    return out


def capacity_from_json(raw: Mapping[str, Any]) -> workloads.CSIStorageCapacity:
    cap, largest = raw.get("capacity"), raw.get("maximumVolumeSize")
    return workloads.CSIStorageCapacity(
        meta_from(raw),
        storage_class_name=raw.get("storageClassName", ""),
        node_labels=dict((raw.get("nodeTopology") or {}).get("matchLabels") or {}),
        capacity_bytes=size(cap) if cap is not None else None,
        maximum_volume_size=size(largest) if largest is not None else None,
    )


def capacity_to_json(c: workloads.CSIStorageCapacity) -> JsonDict:
    out = start(c, "storage.k8s.io/v1", "CSIStorageCapacity")
    out["storageClassName"] = c.storage_class_name
    out["nodeTopology"] = {"matchLabels": dict(c.node_labels)}
    for name, value in (("capacity", c.capacity_bytes), ("maximumVolumeSize", c.maximum_volume_size)):
        if value is None:
            out.pop(name, None)
        else:
            out[name] = str(value)
    return out
