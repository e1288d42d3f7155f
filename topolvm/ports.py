"""The narrow interfaces between services and the worlds they run in.

Services depend only on these Protocols; ``topolvm.lvm`` (real lvm2), ``topolvm.lvm.memory`` (in-memory),
``topolvm.lvmd.client`` (gRPC) and the simulator provide them. Methods are keyword-only so adapters cannot
silently swap arguments. Every adapter raises the exceptions of ``topolvm.errors``; the contract suites in
tests/contract hold all adapters of a port to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from topolvm.core import model, resources


class Lvm(Protocol):
    """Direct control of LVM on one host. Names are validated by callers and again by adapters."""

    def report(self, *, vg_names: Sequence[str]) -> model.LvmState:
        """State of the named VGs in one call. VGs that do not exist are absent from the result."""
        ...

    def create_lv(
        self,
        *,
        vg: str,
        name: str,
        size: int,
        tags: Sequence[str] = (),
        stripes: int | None = None,
        stripe_size: str | None = None,
        options: Sequence[str] = (),
    ) -> None:
        """Create a thick LV. NotFound (VG), AlreadyExists (name), InsufficientCapacity (space)."""
        ...

    def create_thin_lv(self, *, vg: str, pool: str, name: str, size: int, tags: Sequence[str] = ()) -> None:
        """Create a thin LV of virtual ``size`` in ``vg/pool``."""
        ...

    def create_snapshot(
        self, *, vg: str, source: str, name: str, tags: Sequence[str] = (), read_only: bool = False
    ) -> None:
        """Create a thin snapshot of thin LV ``vg/source`` (same virtual size, activation not skipped)."""
        ...

    def copy_lv(self, *, vg: str, source: str, name: str, cow_size: int) -> None:
        """Copy every byte of thick LV ``vg/source`` onto the existing LV ``vg/name`` (at least as large), as of
        one instant: through a transient COW snapshot of the source of ``cow_size`` bytes (``<name>-copy``),
        removed afterwards whether the copy worked or not. NotFound, InsufficientCapacity (no room for the COW
        snapshot), InvalidArgument (``name`` smaller than the source), Unavailable (the copy failed or timed out:
        the COW snapshot overflowed, an IO error)."""
        ...

    def change_lv(self, *, vg: str, name: str, del_tags: Sequence[str] = (), read_only: bool = False) -> None:
        """Remove tags from ``vg/name`` and, with ``read_only``, make it read-only. NotFound."""
        ...

    def resize_lv(self, *, vg: str, name: str, size: int) -> None:
        """Grow ``vg/name`` to ``size`` bytes. NotFound, InsufficientCapacity."""
        ...

    def remove_lv(self, *, vg: str, name: str) -> None:
        """Remove ``vg/name``. NotFound if it does not exist."""
        ...


class Subscription(Protocol):
    def close(self) -> None: ...


CapacityListener = Callable[[model.NodeCapacity], None]


class Lvmd(Protocol):
    """What node code asks of lvmd: LVs by device class, and capacity."""

    def create_lv(
        self,
        *,
        name: str,
        device_class: str,
        size_bytes: int,
        tags: Sequence[str] = (),
        lvcreate_option_class: str = "",
    ) -> model.LogicalVolume:
        """Idempotent: an existing LV of the same size is returned; another size is AlreadyExists."""
        ...

    def remove_lv(self, *, name: str, device_class: str) -> None:
        """Idempotent: removing an LV that does not exist succeeds."""
        ...

    def resize_lv(self, *, name: str, device_class: str, size_bytes: int) -> model.LogicalVolume:
        """Grow only: a smaller size is OutOfRange; the same size is a no-op."""
        ...

    def create_lv_snapshot(
        self,
        *,
        name: str,
        device_class: str,
        source_volume: str,
        size_bytes: int,
        access_type: model.AccessType = model.AccessType.READ_WRITE,
        tags: Sequence[str] = (),
    ) -> model.LogicalVolume:
        """Thin snapshot of ``source_volume`` grown to ``size_bytes`` when larger than the source."""
        ...

    def list_lvs(self, *, device_class: str) -> list[model.LogicalVolume]: ...

    def free_bytes(self, *, device_class: str) -> int: ...

    def capacity(self) -> model.NodeCapacity:
        """Stats of every device class, as the Watch stream sends them."""
        ...

    def watch(self, listener: CapacityListener) -> Subscription:
        """Call ``listener`` now with the current capacity and again after every change, until closed."""
        ...


T = TypeVar("T", bound=resources.Object)
EventListener = Callable[[resources.Event[T]], None]


class Cluster(Protocol):
    """The Kubernetes API as TopoLVM uses it, one kind at a time (``topolvm.core.resources``/``workloads``).

    Writes carry the object's ``resource_version``; a stale one is Conflict (re-read and retry). An object with
    finalizers is only marked deleted (``deletion_timestamp``) until its last finalizer is removed. ``update``
    writes metadata and spec, ``update_status`` only the status of kinds with a status subresource. Cluster-scoped
    kinds take ``namespace=""``.
    """

    def get(self, kind: resources.Kind[T], name: str, *, namespace: str = "") -> T | None: ...

    def list_of(
        self, kind: resources.Kind[T], *, namespace: str | None = None, match: Mapping[str, str] | None = None
    ) -> list[T]:
        """Objects of ``kind`` (in ``namespace`` if given) whose index keys include every ``match`` value."""
        ...

    def create(self, obj: T) -> T:
        """Assigns uid, resource_version and creation_timestamp; AlreadyExists if the name is taken."""
        ...

    def update(self, obj: T) -> T: ...

    def update_status(self, obj: T) -> T: ...

    def delete(self, kind: resources.Kind[T], name: str, *, namespace: str = "") -> None:
        """NotFound if absent."""
        ...

    def watch(
        self, kind: resources.Kind[T], listener: EventListener[T], *, match: Mapping[str, str] | None = None
    ) -> Subscription:
        """Replays existing objects (those ``match`` selects) as ADDED, then reports every change until closed.
        An object that stops matching is reported DELETED to this watch, as the API server does."""
        ...

    def bind_pod(self, *, namespace: str, name: str, node: str) -> None:
        """The pods/binding subresource: kube-scheduler's last step. Conflict if the pod is bound already."""
        ...


class Mounter(Protocol):
    """Filesystems and mounts on the node (mkfs, mount, resize, statvfs). Paths are absolute."""

    def mount_filesystem(
        self, *, device: str, target: str, fstype: str, options: Sequence[str] = (), read_only: bool = False
    ) -> None:
        """Mount ``device`` on directory ``target``, making a ``fstype`` filesystem first if it has none.
        FailedPrecondition if it holds a different filesystem (never reformats)."""
        ...

    def mount_block(self, *, device: str, target: str, read_only: bool = False) -> None:
        """Bind-mount the block device onto file ``target`` (raw block volumes)."""
        ...

    def unmount(self, *, target: str) -> None:
        """Unmount ``target`` if mounted and remove it; succeeds if nothing is there."""
        ...

    def mounted_from(self, *, target: str, device: str) -> bool | None:
        """None if nothing is mounted on ``target``; else whether it is ``device``."""
        ...

    def resize_filesystem(self, *, device: str, target: str) -> None:
        """Grow the filesystem mounted on ``target`` to fill ``device`` (online)."""
        ...

    def usage(self, *, target: str) -> model.VolumeUsage: ...


class IoLimiter(Protocol):
    """Per-device IO limits on a pod's cgroup (cgroup v2 ``io.max``), keyed by the pod's UID.

    Values are by io.max key (rbps, wbps, riops, wiops); a key left out is unlimited, so an empty mapping
    clears the device's limits."""

    def set_limits(self, *, pod_uid: str, device: str, limits: Mapping[str, int]) -> None:
        """Limit IO to block device ``device`` from the pod's cgroup. InvalidArgument for a malformed pod UID,
        Unavailable if the pod has no cgroup on this node (yet: kubelet makes it; retry), FailedPrecondition if
        the io controller cannot be used. Clearing (empty ``limits``) a pod without a cgroup does nothing."""
        ...

    def get_limits(self, *, pod_uid: str, device: str) -> dict[str, int] | None:
        """The limits the pod's cgroup holds for ``device`` (empty if none); None if the pod has no cgroup."""
        ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (real or simulated)."""
        ...
