"""The workload side of the API, as frozen values: Pods, PersistentVolumeClaims, PersistentVolumes,
StorageClasses and CSIStorageCapacities (core/v1 and storage.k8s.io/v1), reduced to what TopoLVM's webhook,
extender and controller, and the simulator's kube-scheduler, provisioner and PV-controller models read.

Quantities are integers (``topolvm.core.resources``): bytes, millicores for ``cpu``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from topolvm import constants
from topolvm.core import resources
from topolvm.core.resources import Kind, Meta, Object

SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
STORAGE_PROVISIONER_ANNOTATION = "volume.kubernetes.io/storage-provisioner"
BY_CLAIM = "claim"  # "<namespace>/<claim name>"
BY_PHASE = "phase"  # a pod's status.phase
PENDING = "Pending"
BY_VOLUME_HANDLE = "volumeHandle"

CPU = "cpu"
MEMORY = "memory"
PODS = "pods"


def claim_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


# --- Pod ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    name: str
    requests: Mapping[str, int] = field(default_factory=dict)
    limits: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EphemeralClaim:
    """A generic ephemeral volume's claim template: the PVC it makes is named ``<pod>-<volume>``."""

    storage_class_name: str | None
    request_bytes: int = 0


@dataclass(frozen=True)
class PodVolume:
    name: str
    claim_name: str | None = None  # persistentVolumeClaim.claimName
    ephemeral: EphemeralClaim | None = None


class Operator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"
    GT = "Gt"
    LT = "Lt"
    EQUAL = "Equal"  # tolerations only


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry of a node selector term (on node labels)."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreferredTerm:
    weight: int
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True)
class Toleration:
    key: str = ""  # empty with Exists: tolerates every taint
    operator: Operator = Operator.EQUAL
    value: str = ""
    effect: str = ""  # empty: every effect


@dataclass(frozen=True)
class PodSpec:
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[PodVolume, ...] = ()
    node_name: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    # requiredDuringSchedulingIgnoredDuringExecution: the terms are ORed, each term's requirements ANDed.
    required_terms: tuple[tuple[Requirement, ...], ...] = ()
    preferred_terms: tuple[PreferredTerm, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    scheduler_name: str = "default-scheduler"


@dataclass(frozen=True, kw_only=True)
class PodStatus:
    phase: str = "Pending"
    nominated_node_name: str = ""  # where preemption (or a waiting PreBind) means the pod to go
    # the PodScheduled condition when it is False: why the scheduler could not place the pod
    unschedulable_reason: str = ""
    unschedulable_message: str = ""


@dataclass(frozen=True)
class Pod(Object):
    meta: Meta
    spec: PodSpec = PodSpec()
    status: PodStatus = PodStatus()

    def claim_names(self) -> tuple[str, ...]:
        """Every PVC the pod uses: its claims and the claims of its generic ephemeral volumes."""
        out: list[str] = []
        for volume in self.spec.volumes:
            if volume.claim_name is not None:
                out.append(volume.claim_name)
            elif volume.ephemeral is not None:
                out.append(f"{self.meta.name}-{volume.name}")
        return tuple(out)


POD: Kind[Pod] = Kind(
    "Pod",
    Pod,
    namespaced=True,
    status=True,
    indexes={
        resources.BY_NODE: lambda pod: (pod.spec.node_name,),
        BY_CLAIM: lambda pod: tuple(claim_key(pod.meta.namespace, c) for c in pod.claim_names()),
        BY_PHASE: lambda pod: (pod.status.phase,),
    },
)


# --- PersistentVolumeClaim ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSource:
    kind: str  # VolumeSnapshot | PersistentVolumeClaim
    name: str
    api_group: str = ""


@dataclass(frozen=True)
class ClaimSpec:
    storage_class_name: str | None = None
    request_bytes: int = 0
    volume_name: str = ""
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    volume_mode: str = "Filesystem"  # or Block
    data_source: DataSource | None = None


@dataclass(frozen=True)
class ClaimStatus:
    phase: str = "Pending"  # Pending | Bound | Lost
    capacity_bytes: int | None = None


@dataclass(frozen=True)
class PersistentVolumeClaim(Object):
    meta: Meta
    spec: ClaimSpec = ClaimSpec()
    status: ClaimStatus = ClaimStatus()

    @property
    def selected_node(self) -> str:
        return self.meta.annotations.get(SELECTED_NODE_ANNOTATION, "")


PVC: Kind[PersistentVolumeClaim] = Kind(
    "PersistentVolumeClaim",
    PersistentVolumeClaim,
    namespaced=True,
    status=True,
    indexes={resources.BY_NODE: lambda pvc: (pvc.selected_node,)},
)


# --- PersistentVolume ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str = ""


@dataclass(frozen=True)
class VolumeSpec:
    capacity_bytes: int
    driver: str = constants.PLUGIN_NAME
    volume_handle: str = ""
    fs_type: str = ""
    volume_attributes: Mapping[str, str] = field(default_factory=dict)
    claim_ref: ClaimRef | None = None
    node_name: str = ""  # the topology.topolvm.io/node value of its required node affinity
    storage_class_name: str = ""
    reclaim_policy: str = "Delete"
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    volume_mode: str = "Filesystem"


@dataclass(frozen=True)
class VolumeStatus:
    phase: str = "Pending"  # Pending | Available | Bound | Released | Failed


@dataclass(frozen=True)
class PersistentVolume(Object):
    meta: Meta
    spec: VolumeSpec
    status: VolumeStatus = VolumeStatus()


PV: Kind[PersistentVolume] = Kind(
    "PersistentVolume",
    PersistentVolume,
    status=True,
    indexes={
        resources.BY_NODE: lambda pv: (pv.spec.node_name,),
        BY_CLAIM: lambda pv: (
            (claim_key(pv.spec.claim_ref.namespace, pv.spec.claim_ref.name),) if pv.spec.claim_ref is not None else ()
        ),
        BY_VOLUME_HANDLE: lambda pv: (pv.spec.volume_handle,),
    },
)


# --- StorageClass, CSIStorageCapacity (storage.k8s.io/v1) ----------------------------------------------------------


@dataclass(frozen=True)
class StorageClass(Object):
    meta: Meta
    provisioner: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    reclaim_policy: str = "Delete"
    volume_binding_mode: str = "WaitForFirstConsumer"
    allow_volume_expansion: bool = False
    mount_options: tuple[str, ...] = ()

    @property
    def device_class(self) -> str:
        return self.parameters.get(constants.DEVICE_CLASS_PARAMETER, "")


STORAGE_CLASS: Kind[StorageClass] = Kind("StorageClass", StorageClass)


@dataclass(frozen=True)
class CSIStorageCapacity(Object):
    """Capacity of one StorageClass in one topology segment, as external-provisioner publishes it."""

    meta: Meta
    storage_class_name: str
    node_labels: Mapping[str, str] = field(default_factory=dict)  # nodeTopology.matchLabels
    capacity_bytes: int | None = None
    maximum_volume_size: int | None = None


CSI_STORAGE_CAPACITY: Kind[CSIStorageCapacity] = Kind(
    "CSIStorageCapacity",
    CSIStorageCapacity,
    namespaced=True,
    indexes={resources.BY_NODE: lambda c: (c.node_labels.get(constants.TOPOLOGY_NODE_KEY, ""),)},
)
