"""Node-side volume publishing (CSI NodePublish/Unpublish/GetVolumeStats/ExpandVolume) over Lvmd and Mounter.

Volumes are found through lvmd by their ID (the LV name); a volume that is not in this node's VGs is NOT_FOUND,
so publishing on the wrong node fails cleanly. Target paths must be absolute, normalised, and under a configured
prefix (the kubelet directory), so a request can never mount over an arbitrary path. CSI inline ephemeral
volumes (seed slide 12) are created at publish time and removed at unpublish, capped per request.

IO limits (``topolvm.core.iolimits``) in the volume context are written to the consuming pod's cgroup for the
LV's device before the volume is mounted, so no IO ever runs unlimited, and cleared at unpublish.
"""

from __future__ import annotations

import logging
import os.path
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from topolvm import constants, errors, ports
from topolvm.core import health, iolimits, model, names, quantity, sizing

log = logging.getLogger(__name__)

EPHEMERAL_CONTEXT = "csi.storage.k8s.io/ephemeral"
EPHEMERAL_SIZE = "topolvm.io/size"
EPHEMERAL_TAG = "topolvm.io/ephemeral"
POD_UID_CONTEXT = "csi.storage.k8s.io/pod.uid"  # sent by kubelet when the CSIDriver has podInfoOnMount
# kubelet's target paths name the pod: .../pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount (filesystem) and
# .../plugins/kubernetes.io/csi/volumeDevices/publish/<pv>/<uid> (raw block).
_POD_IN_TARGET = re.compile(r"/pods/([^/]+)/volumes/|/volumeDevices/publish/[^/]+/([^/]+)$")


Problems = tuple[health.Problem, ...]  # a volume's adverse conditions; empty when healthy
DEFAULT_HEALTH_REMINDER = 3000.0  # seconds: under kube-apiserver's default --event-ttl (1 h)
# Told of each change in a volume's health: (volume ID, its LV, its problems; empty when healthy again).
HealthListener = Callable[[str, model.LogicalVolume, Problems], None]


@dataclass(frozen=True)
class HealthSweep:
    device_classes: tuple[str, ...]
    unhealthy: Counter[tuple[str, str]]  # (device class, worst status) -> volumes


@dataclass(frozen=True)
class PublishRequest:
    volume_id: str
    target_path: str
    block: bool = False
    fstype: str = ""
    mount_flags: Sequence[str] = ()
    read_only: bool = False
    volume_context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeConfig:
    node_name: str
    allowed_target_prefixes: Sequence[str] = ("/var/lib/kubelet/",)
    ephemeral_default_bytes: int = sizing.GiB
    ephemeral_max_bytes: int = 100 * sizing.GiB  # per request, for classes not named below
    # Per device class caps ("" is the default class); a class capped at 0 takes no inline ephemeral volumes.
    ephemeral_max_bytes_by_class: Mapping[str, int] = field(default_factory=dict)


class NodeVolumeService:
    def __init__(
        self,
        *,
        config: NodeConfig,
        lvmd: ports.Lvmd,
        mounter: ports.Mounter,
        io_limiter: ports.IoLimiter | None = None,
        on_health_change: HealthListener | None = None,
        clock: ports.Clock | None = None,
        health_reminder: float = DEFAULT_HEALTH_REMINDER,
    ) -> None:
        """``on_health_change`` hears each change in a volume's health, and with a ``clock`` again every
        ``health_reminder`` seconds while it stays unhealthy (Events expire: kube-apiserver's --event-ttl is 1 h)."""
        self.config = config
        self.lvmd = lvmd
        self.mounter = mounter
        self.io_limiter = io_limiter  # None: this node cannot apply IO limits (no cgroup v2 io controller)
        # volume ID -> what was last told of an unhealthy volume, and when (clock time)
        self._health_seen: dict[str, tuple[Problems, float]] = {}
        self._health_lock = threading.Lock()  # kubelet's probes and the node's own sweep tell changes once
        self.on_health_change = on_health_change
        self.clock = clock
        self.health_reminder = health_reminder

    # --- lookups ---
    def find(self, volume_id: str) -> tuple[str, model.LogicalVolume] | None:
        """(device class, LV) of a volume on this node, from lvmd's state (no lvm command)."""
        names.check_lv_name(volume_id)
        for stats in self.lvmd.capacity().device_classes:
            try:
                lvs = self.lvmd.list_lvs(device_class=stats.device_class)
            except errors.NotFound:  # this class's VG was never found (lvmd says why): others still serve
                continue
            for lv in lvs:
                if lv.name == volume_id:
                    return stats.device_class, lv
        return None

    def _require(self, volume_id: str) -> tuple[str, model.LogicalVolume]:
        if not volume_id:
            raise errors.InvalidArgument("volume ID is required")
        try:
            found = self.find(volume_id)
        except errors.InvalidArgument:
            raise errors.NotFound(f"volume {volume_id!r} does not exist") from None
        if found is None:
            raise errors.NotFound(f"volume {volume_id!r} is not on node {self.config.node_name}")
        return found

    def check_path(self, path: str, what: str = "target path") -> str:
        if not path:
            raise errors.InvalidArgument(f"{what} is required")
        if not os.path.isabs(path) or os.path.normpath(path) != path.rstrip("/") or "\0" in path:
            raise errors.InvalidArgument(f"{what} {path!r} must be an absolute, normalised path")
        if not any(path.startswith(prefix) for prefix in self.config.allowed_target_prefixes):
            raise errors.InvalidArgument(
                f"{what} {path!r} is outside the allowed directories ({', '.join(self.config.allowed_target_prefixes)})"
            )
        return path

    # --- publish ---
    def publish(self, req: PublishRequest) -> None:
        target = self.check_path(req.target_path)
        fstype = "block" if req.block else (req.fstype or "ext4")
        if fstype not in sizing.MINIMUM_SIZE:
            raise errors.InvalidArgument(f"filesystem type {fstype!r} is not supported")
        for flag in req.mount_flags:
            if not flag or "," in flag or any(c.isspace() for c in flag):
                raise errors.InvalidArgument(f"mount flag {flag!r} is invalid")
        limits = self._io_limits(req)  # checked before anything is made
        created_here = False
        if req.volume_context.get(EPHEMERAL_CONTEXT) == "true":
            created_here = self.find(req.volume_id) is None
            lv = self._ensure_ephemeral(req)
        else:
            lv = self._require(req.volume_id)[1]
        try:
            if limits is not None:
                self._set_io_limits(limits[0], lv.path, limits[1].resolve(lv.size))
            if req.block:
                self.mounter.mount_block(device=lv.path, target=target, read_only=req.read_only)
            else:
                self.mounter.mount_filesystem(
                    device=lv.path, target=target, fstype=fstype, options=req.mount_flags, read_only=req.read_only
                )
        except errors.TopoLVMError:
            if limits is not None:
                self._clear_io_limits(limits[0], lv.path)
            if created_here:  # kubelet may never call NodeUnpublish after a failed publish: do not leak the LV
                self.lvmd.remove_lv(
                    name=lv.name, device_class=req.volume_context.get(constants.DEVICE_CLASS_PARAMETER, "")
                )
            raise
        log.info("published %s (%s) at %s", req.volume_id, fstype, target)

    def _io_limits(self, req: PublishRequest) -> tuple[str, iolimits.IoLimits] | None:
        """(pod UID, limits) when the volume has IO limits; errors if this node cannot apply them."""
        limits = iolimits.parse(req.volume_context)
        if limits is None:
            return None
        if self.io_limiter is None:
            raise errors.FailedPrecondition(
                f"volume {req.volume_id!r} has IO limits, but node {self.config.node_name} cannot apply them: "
                "no cgroup v2 hierarchy with the io controller at topolvm-node's --cgroup-root"
            )
        pod_uid = req.volume_context.get(POD_UID_CONTEXT, "")
        if not pod_uid:
            raise errors.FailedPrecondition(
                f"volume {req.volume_id!r} has IO limits, but NodePublish names no pod "
                f"({POD_UID_CONTEXT}): the CSIDriver {constants.PLUGIN_NAME} needs podInfoOnMount: true"
            )
        return pod_uid, limits

    def _set_io_limits(self, pod_uid: str, device: str, values: Mapping[str, int]) -> None:
        assert self.io_limiter is not None
        self.io_limiter.set_limits(pod_uid=pod_uid, device=device, limits=values)
        log.info("IO limits of pod %s on %s: %s", pod_uid, device, values or "none")

    def _clear_io_limits(self, pod_uid: str, device: str) -> None:
        if self.io_limiter is None:
            return
        try:
            self.io_limiter.set_limits(pod_uid=pod_uid, device=device, limits={})
        except errors.TopoLVMError as exc:
            log.warning("could not clear the IO limits of pod %s on %s: %s", pod_uid, device, exc)

    def _ensure_ephemeral(self, req: PublishRequest) -> model.LogicalVolume:
        ctx = req.volume_context
        raw = ctx.get(EPHEMERAL_SIZE)
        size = quantity.to_bytes(raw) if raw else self.config.ephemeral_default_bytes
        size = sizing.align(max(size, sizing.MINIMUM_SIZE["block" if req.block else (req.fstype or "ext4")]))
        device_class = ctx.get(constants.DEVICE_CLASS_PARAMETER, "")
        cap = self.config.ephemeral_max_bytes_by_class.get(device_class, self.config.ephemeral_max_bytes)
        if size > cap:
            raise errors.OutOfRange(
                f"inline ephemeral volume of {size} bytes exceeds the limit of {cap} for device class "
                f"{device_class or '(default)'!r}"
            )
        return self.lvmd.create_lv(
            name=req.volume_id,
            device_class=device_class,
            size_bytes=size,
            tags=[EPHEMERAL_TAG],
        )

    def unpublish(self, volume_id: str, target_path: str) -> None:
        if not volume_id:
            raise errors.InvalidArgument("volume ID is required")
        target = self.check_path(target_path)
        found = self.find(volume_id) if _valid_lv_name(volume_id) else None
        if found is not None and self.mounter.mounted_from(target=target, device=found[1].path) is False:
            # Another volume is mounted there: not ours to take down.
            raise errors.FailedPrecondition(f"{target} holds another volume, not {volume_id!r}")
        self.mounter.unmount(target=target)
        pod = _POD_IN_TARGET.search(target)
        if found is not None and pod is not None and iolimits.POD_UID.fullmatch(pod.group(1) or pod.group(2)):
            self._clear_io_limits(pod.group(1) or pod.group(2), found[1].path)
        if found is not None and EPHEMERAL_TAG in found[1].tags:
            self.lvmd.remove_lv(name=volume_id, device_class=found[0])
            log.info("removed inline ephemeral volume %s", volume_id)
            with self._health_lock:
                self._health_seen.pop(volume_id, None)
        log.info("unpublished %s from %s", volume_id, target)

    # --- stats and expansion ---
    def stats(self, volume_id: str, volume_path: str) -> model.VolumeUsage:
        if not volume_id:
            raise errors.InvalidArgument("volume ID is required")
        if not volume_path:
            raise errors.InvalidArgument("volume path is required")
        lv = self._require(volume_id)[1]
        try:
            path = self.check_path(volume_path, "volume path")
        except errors.InvalidArgument as exc:
            # Not a path this node publishes to, so the volume is not there (CSI: NOT_FOUND).
            raise errors.NotFound(f"volume {volume_id!r} is not mounted at {volume_path!r}: {exc}") from None
        if self.mounter.mounted_from(target=path, device=lv.path) is not True:
            raise errors.NotFound(f"volume {volume_id!r} is not mounted at {path}")
        return self.mounter.usage(target=path)

    def health(self, volume_id: str) -> Problems:
        """The volume's adverse conditions from lvmd's state (no lvm command unless that state is older than
        lvmd's --max-state-age); empty when healthy. The paths kubelet sends add nothing: the LV is the volume."""
        if not volume_id:
            raise errors.InvalidArgument("volume ID is required")
        with self._health_lock:  # read and record in one step: a newer reading is never undone by an older one
            lv = self._require(volume_id)[1]
            found = health.problems(lv.attr)
            self._note_health_locked(volume_id, lv, found)
        return found

    def sweep_health(self) -> HealthSweep:
        """Every TopoLVM volume of this node checked at once (one lvmd listing per device class), whether kubelet
        asks or not (kubelets before 1.37 never do): changes are logged and told as ``health()``'s are, and the
        unhealthy counted by (device class, worst status). A class whose VG is not found is lvmd's to report."""
        unhealthy: Counter[tuple[str, str]] = Counter()
        present: set[str] = set()
        with self._health_lock:
            classes = tuple(stats.device_class for stats in self.lvmd.capacity().device_classes)
            for device_class in classes:
                try:
                    lvs = self.lvmd.list_lvs(device_class=device_class)
                except errors.NotFound:
                    continue
                for lv in lvs:
                    found = health.problems(lv.attr)
                    present.add(lv.name)
                    self._note_health_locked(lv.name, lv, found)
                    if found:
                        unhealthy[device_class, max(found, key=lambda p: _SEVERITY[p.status]).status.value] += 1
            for volume_id in set(self._health_seen) - present:  # volumes gone since: forget what was said of them
                del self._health_seen[volume_id]
        return HealthSweep(classes, unhealthy)

    def _note_health_locked(self, volume_id: str, lv: model.LogicalVolume, found: Problems) -> None:
        """Log and tell a change (or a reminder); under ``_health_lock``, so what is told goes out in the order
        it was seen (the production listener only queues)."""
        now = self.clock.now() if self.clock is not None else 0.0
        told, told_at = self._health_seen.get(volume_id, ((), now))
        again = bool(found) and told == found
        if again and (self.clock is None or now - told_at < self.health_reminder):
            return  # asked every minute: tell changes only, and remind now and then
        if not found and not told:
            return
        if found:
            self._health_seen[volume_id] = (found, now)
            what = "; ".join(f"{p.status} {p.reason}: {p.message}" for p in found)
            still = " (still)" if again else ""
            log.warning("volume %s (LV %s/%s, lv_attr %s)%s: %s", volume_id, lv.vg_name, lv.name, lv.attr, still, what)
        else:
            self._health_seen.pop(volume_id, None)
            log.info("volume %s is healthy again (lv_attr %s)", volume_id, lv.attr)
        if self.on_health_change is not None:
            self.on_health_change(volume_id, lv, found)

    def expand(self, volume_id: str, volume_path: str, block: bool) -> int:
        if not volume_path:
            raise errors.InvalidArgument("volume path is required")
        lv = self._require(volume_id)[1]
        path = self.check_path(volume_path, "volume path")
        if not block:
            if self.mounter.mounted_from(target=path, device=lv.path) is not True:
                raise errors.FailedPrecondition(f"volume {volume_id!r} is not mounted at {path}")
            self.mounter.resize_filesystem(device=lv.path, target=path)
        return lv.size


_SEVERITY = {health.Status.DEGRADED: 0, health.Status.INACCESSIBLE: 1, health.Status.DATA_LOSS: 2}


def _valid_lv_name(name: str) -> bool:
    try:
        names.check_lv_name(name)
    except errors.InvalidArgument:
        return False
    return True
