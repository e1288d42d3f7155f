"""Kubernetes Events for operators: what happened to an object, in ``kubectl describe`` and ``kubectl get events``.

``EventRecorder`` writes core/v1 Events the way client-go's recorder does (name ``<object>.<nanoseconds hex>``,
cluster-scoped objects' events in "default", source component and host). Events are for people and best effort:
one that cannot be written is logged, never raised, so a missing RBAC rule or an API hiccup never fails the work
it describes.

``VolumeHealthEvents`` turns a change in a volume's health (``NodeVolumeService``: kubelet's probes and the node's
own sweep) into an Event on its LogicalVolume: Warning ``VolumeConditionAbnormal`` (the reason kubelets before
1.37 used on the pod) when it turns abnormal, its problems change, or every 50 minutes while it stays so (Events
expire after kube-apiserver's --event-ttl, 1 h; a refused one is thus written again), Normal
``VolumeConditionNormal`` when it is healthy again.
"""

from __future__ import annotations

import datetime
import logging

from topolvm import constants, errors, ports
from topolvm.core import health, model, resources

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "default"  # where client-go puts Events of cluster-scoped objects
REASON_ABNORMAL = "VolumeConditionAbnormal"
REASON_NORMAL = "VolumeConditionNormal"
_MAX_MESSAGE = 1024  # characters: client-go's recorder cuts messages to 1 KiB; ours are far shorter


def _rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, *, cluster: ports.Cluster, clock: ports.Clock, component: str, host: str = "") -> None:
        self.cluster = cluster
        self.clock = clock
        self.component = component
        self.host = host

    def record(self, about: resources.ObjectRef, *, reason: str, message: str, warning: bool) -> None:
        now = self.clock.now()
        stamp = _rfc3339(now)
        event = resources.ClusterEvent(
            meta=resources.Meta(
                name=f"{about.name}.{int(now * 1e9):x}", namespace=about.namespace or DEFAULT_NAMESPACE
            ),
            involved=about,
            reason=reason,
            message=message[:_MAX_MESSAGE],
            warning=warning,
            component=self.component,
            host=self.host,
            first_timestamp=stamp,
            last_timestamp=stamp,
        )
        try:
            self.cluster.create(event)
        except errors.TopoLVMError as exc:
            log.warning("cannot record event %s on %s %s: %s", reason, about.kind, about.name, exc)


def logical_volume_ref(lv: resources.LogicalVolume) -> resources.ObjectRef:
    return resources.ObjectRef(
        api_version=f"{constants.LOGICAL_VOLUME_GROUP}/{constants.LOGICAL_VOLUME_VERSION}",
        kind=resources.LOGICAL_VOLUME.name,
        name=lv.name,
        uid=lv.meta.uid,
    )


class VolumeHealthEvents:
    """``NodeVolumeService``'s health listener: an Event on the volume's LogicalVolume at each change. Inline
    ephemeral volumes have no LogicalVolume and get none (their pod's status shows kubelet's view)."""

    def __init__(self, *, cluster: ports.Cluster, recorder: EventRecorder) -> None:
        self.cluster = cluster
        self.recorder = recorder

    def __call__(self, volume_id: str, lv: model.LogicalVolume, problems: tuple[health.Problem, ...]) -> None:
        try:
            owners = self.cluster.list_of(resources.LOGICAL_VOLUME, match={resources.BY_VOLUME_ID: volume_id})
        except errors.TopoLVMError as exc:
            log.warning("cannot find the LogicalVolume of volume %s for its health event: %s", volume_id, exc)
            return
        for owner in owners:
            if problems:
                what = "; ".join(f"{p.status} {p.reason}: {p.message}" for p in problems)
                message = f"volume {volume_id} (LV {lv.vg_name}/{lv.name}, lv_attr {lv.attr}): {what}"
                self.recorder.record(logical_volume_ref(owner), reason=REASON_ABNORMAL, message=message, warning=True)
            else:
                message = f"volume {volume_id} is healthy again (lv_attr {lv.attr})"
                self.recorder.record(logical_volume_ref(owner), reason=REASON_NORMAL, message=message, warning=False)
