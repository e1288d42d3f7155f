"""Every upstream-compatible name in one place (docs/compat.md; upstream TopoLVM v0.41).

Imported by core, services and entrypoints alike; keep it free of imports beyond the standard library.
"""

from typing import Final

PLUGIN_NAME: Final = "topolvm.io"
TOPOLOGY_NODE_KEY: Final = "topology.topolvm.io/node"

# Kubernetes objects
LOGICAL_VOLUME_GROUP: Final = "topolvm.io"
LOGICAL_VOLUME_VERSION: Final = "v1"
LOGICAL_VOLUME_KIND: Final = "LogicalVolume"
LOGICAL_VOLUME_PLURAL: Final = "logicalvolumes"
CREATED_BY_LABEL: Final = "app.kubernetes.io/created-by"
CREATED_BY_CONTROLLER: Final = "topolvm-controller"
LOGICAL_VOLUME_FINALIZER: Final = "topolvm.io/logicalvolume"
NODE_FINALIZER: Final = "topolvm.io/node"
RESIZE_REQUESTED_AT_ANNOTATION: Final = "topolvm.io/resize-requested-at"
PENDING_DELETION_ANNOTATION: Final = "topolvm.io/pendingdeletion"
# On a volume's LogicalVolume from its creation until CreateVolume first answers OK with it: a volume still carrying
# it was never handed to a provisioner (topolvm.services.cleanup.StrandedVolumeSweeper). Ours, not upstream's.
UNANSWERED_ANNOTATION: Final = "topolvm.io/create-unanswered"

# Capacity annotations on Nodes and Pods: capacity.topolvm.io/<device-class>
CAPACITY_KEY_PREFIX: Final = "capacity.topolvm.io/"
DEFAULT_DEVICE_CLASS_ANNOTATION_NAME: Final = "00default"
CAPACITY_RESOURCE: Final = "topolvm.io/capacity"

# Namespaces labelled topolvm.io/webhook=ignore are left alone by the pod mutating webhook.
NAMESPACE_OPT_OUT_LABEL: Final = "topolvm.io/webhook"
NAMESPACE_OPT_OUT_VALUE: Final = "ignore"

# StorageClass parameters
DEVICE_CLASS_PARAMETER: Final = "topolvm.io/device-class"
LVCREATE_OPTION_CLASS_PARAMETER: Final = "topolvm.io/lvcreate-option-class"
FSTYPE_PARAMETER: Final = "csi.storage.k8s.io/fstype"

# Sockets
DEFAULT_CSI_SOCKET: Final = "/run/topolvm/csi-topolvm.sock"
DEFAULT_LVMD_SOCKET: Final = "/run/topolvm/lvmd.sock"

# lvmd defaults
DEFAULT_SPARE_GB: Final = 10
# Upstream runs lvm in PID 1's namespaces so a containerised lvmd acts on the host's LVM.
# Upstream's default lvm-command-prefix: lvm run in PID 1's namespaces, for a containerised lvmd. Like upstream's,
# it ends with the lvm binary; a prefix without it (e.g. `[]`) runs `lvm` from PATH (topolvm.lvm.command.Runner).
DEFAULT_LVM_COMMAND_PREFIX: Final = ("/usr/bin/nsenter", "-m", "-u", "-i", "-n", "-p", "-t", "1", "/sbin/lvm")

# LV tags written by this project: ownership lets a restarted node agent adopt its LVs and lets the
# orphan collector find LVs whose LogicalVolume is gone (upstream #1104/#1213).
OWNER_TAG_PREFIX: Final = "topolvm.io/owner="
# lvmd marks every LV it creates; it removes, resizes and lists only LVs with a TopoLVM tag.
MANAGED_TAG: Final = "topolvm.io/managed"
# A thick copy (services/thick_copy.py) reads its source through a transient COW snapshot named <destination>-copy.
COPY_SNAPSHOT_SUFFIX: Final = "-copy"
TOPOLVM_TAG_PREFIXES: Final = ("topolvm.io/", "topolvm/")


def capacity_annotation(device_class: str) -> str:
    """Annotation key for a device class; the default class ("") maps to ``00default``."""
    return CAPACITY_KEY_PREFIX + (device_class or DEFAULT_DEVICE_CLASS_ANNOTATION_NAME)
