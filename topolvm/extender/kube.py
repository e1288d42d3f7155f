"""API watches that feed the extender's ``SchedulerService``, on the project's one watch implementation
(``topolvm.kube.client.KubeCluster.watch``: list, follow, list again after 410 Gone reporting what vanished).

- Nodes (``--watch-nodes``, for ``nodeCacheCapable: true``): each node's ``capacity.topolvm.io/*`` annotations;
  deletions (also those seen only by a re-list) remove nodes, and the first listing drops nodes the service knew
  from elsewhere that no longer exist, so the watch is the cache's source of truth.
- Pending Pods and PersistentVolumeClaims (``--watch-pods``): a pod bound (``spec.nodeName``) or deleted ends its
  reservation, and so does a volume for every claim it mounts (``spec.volumeName``); a claim annotated
  ``volume.kubernetes.io/selected-node`` (written by kube-scheduler's VolumeBinding PreBind) moves its pod's
  reservation to the node kube-scheduler really chose. Claims map to pods through the Pod objects seen in
  requests, so only pods the extender was asked about are acted on. With these events the service ends
  reservations on them alone, not on node annotation drops (``SchedulerService(watched_pods=True)``).

Least privilege: get/list/watch on nodes, pods and persistentvolumeclaims (cluster-wide); nothing is written.
Every call into the service holds the holder's lock (events arrive on the watches' threads).
"""

from __future__ import annotations

import logging

from topolvm import ports
from topolvm.core import node_index, resources, workloads
from topolvm.extender import holder
from topolvm.services import scheduler

log = logging.getLogger(__name__)

SELECTED_NODE_ANNOTATION = workloads.SELECTED_NODE_ANNOTATION


def apply_node(state: holder.Holder, event: resources.Event[resources.Node]) -> None:
    name = event.object.name
    with state.lock:
        if event.type is resources.EventType.DELETED:
            state.service.node_removed(name)
        else:
            state.service.node_updated(name, node_index.capacities(event.object.meta.annotations))


def apply_pod(state: holder.Holder, event: resources.Event[workloads.Pod]) -> None:
    """A pending pod bound (``spec.nodeName``), nominated, or gone (a pod that starts running leaves the pending
    selection, which reads as DELETED; by then it was bound)."""
    pod = event.object
    key = scheduler.pod_key(pod.meta.namespace, pod.meta.name, pod.meta.uid)
    with state.lock:
        if pod.spec.node_name:
            state.service.pod_bound(key, pod.spec.node_name)
        elif event.type is resources.EventType.DELETED:
            state.service.pod_deleted(key)
        elif pod.status.nominated_node_name:
            # Set by preemption, and (newer kube-scheduler) before a PreBind that will wait: where the pod goes.
            state.service.pod_selected(key, pod.status.nominated_node_name)


def apply_claim(state: holder.Holder, event: resources.Event[workloads.PersistentVolumeClaim]) -> None:
    """A claim's volume says its capacity is spent; its selected-node, before that, where kube-scheduler put its
    pod (a bound claim's selected-node is history)."""
    claim = event.object
    namespace, name = claim.meta.namespace, claim.meta.name
    if event.type is resources.EventType.DELETED:
        with state.lock:
            state.service.claim_deleted(namespace, name)
    elif claim.spec.volume_name:
        with state.lock:
            state.service.claim_bound(namespace, name)
    elif claim.selected_node:
        with state.lock:
            state.service.claim_selected(namespace, name, claim.selected_node)


def watch_nodes(state: holder.Holder, cluster: ports.Cluster) -> ports.Subscription:
    listed: list[str] = []
    started = False

    def on_event(event: resources.Event[resources.Node]) -> None:
        if not started:
            listed.append(event.object.name)  # the replay of the first listing
        apply_node(state, event)

    subscription = cluster.watch(resources.NODE, on_event)
    started = True
    with state.lock:
        state.service.nodes_listed(listed)
    log.info("node watch: %d nodes listed", len(listed))
    return subscription


def watch_pods(state: holder.Holder, cluster: ports.Cluster) -> list[ports.Subscription]:
    """Pending pods (a field selector on status.phase) and all claims (claims have no field to select on)."""
    pods = cluster.watch(
        workloads.POD, lambda event: apply_pod(state, event), match={workloads.BY_PHASE: workloads.PENDING}
    )
    claims = cluster.watch(workloads.PVC, lambda event: apply_claim(state, event))
    return [pods, claims]
