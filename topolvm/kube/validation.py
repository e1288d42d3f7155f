"""The API server's update validation, for the fields the in-memory cluster models.

kube-apiserver v1.37 (pkg/apis/core/validation ``ValidatePersistentVolumeClaimUpdate``), as
tests/contract/test_cluster_workloads_contract.py checks against a real one — a PersistentVolumeClaim's spec is
immutable after creation, except:
- ``resources.requests.storage``, and only while the claim is Bound (its stored ``status.phase``); it may come
  down again (RecoverVolumeExpansionFailure, GA) but stay above ``status.capacity``;
- ``volumeName``, set once (empty -> a name; clearing or changing it is refused);
- ``storageClassName``, set once when it was nil (RetroactiveDefaultStorageClass) and no beta annotation names one.
Each refusal is ``InvalidArgument`` (HTTP 422) naming the field, in the API server's words.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from topolvm import errors
from topolvm.core import resources, workloads

BETA_STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
IMMUTABLE = "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
BELOW_CAPACITY = "field can not be less than status.capacity"
_FIELD_NAMES = {
    "storage_class_name": "storageClassName",
    "request_bytes": "resources.requests.storage",
    "volume_name": "volumeName",
    "access_modes": "accessModes",
    "volume_mode": "volumeMode",
    "data_source": "dataSource",
}


def check_update(kind: resources.Kind[Any], current: Any, new: Any) -> None:
    """Raise ``InvalidArgument`` if the API server would refuse replacing ``current`` by ``new``."""
    if kind is workloads.PVC:
        _check_claim(current, new)


def _check_claim(current: workloads.PersistentVolumeClaim, new: workloads.PersistentVolumeClaim) -> None:
    old, spec = current.spec, new.spec
    what = f"PersistentVolumeClaim {current.meta.namespace}/{current.meta.name}"
    for f in fields(workloads.ClaimSpec):
        before, after = getattr(old, f.name), getattr(spec, f.name)
        if before == after or _may_change(f.name, current, before, after):
            continue
        raise errors.InvalidArgument(f"{what}: spec.{_FIELD_NAMES[f.name]}: Forbidden: {IMMUTABLE}")
    capacity = current.status.capacity_bytes or 0
    if spec.request_bytes < old.request_bytes and spec.request_bytes <= capacity:
        raise errors.InvalidArgument(f"{what}: spec.resources.requests.storage: Forbidden: {BELOW_CAPACITY}")


def _may_change(name: str, current: workloads.PersistentVolumeClaim, before: Any, after: Any) -> bool:
    if name == "request_bytes":
        return current.status.phase == "Bound"
    if name == "volume_name":
        return not before
    if name == "storage_class_name":
        return before is None and BETA_STORAGE_CLASS_ANNOTATION not in current.meta.annotations
    return False
