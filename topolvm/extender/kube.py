"""API watches that feed the extender's ``SchedulerService`` (adapter over the ``kubernetes`` client).

- Nodes (``--watch-nodes``, for ``nodeCacheCapable: true``): each node's ``capacity.topolvm.io/*`` annotations;
  deletions and re-lists remove nodes that are gone, so the watch is the cache's source of truth.
- Pending Pods and PersistentVolumeClaims (``--watch-pods``): a pod bound (``spec.nodeName``) or deleted ends its
  reservation; a claim annotated ``volume.kubernetes.io/selected-node`` (written by kube-scheduler's
  VolumeBinding PreBind) moves its pod's reservation to the node kube-scheduler really chose. Claims map to pods
  through the Pod objects seen in requests, so only pods the extender was asked about are acted on.

Least privilege: get/list/watch on nodes, pods and persistentvolumeclaims (cluster-wide); nothing is written.
Each watch is a daemon thread that lists, then watches from the list's resourceVersion, and lists again after
a 410 Gone or any error. Events are raw JSON (the client's model classes are slow and not needed); every call
into the service holds the holder's lock.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, TypedDict

from topolvm.core import node_index
from topolvm.extender import holder
from topolvm.services import scheduler

log = logging.getLogger(__name__)

SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
# Only pods that are not running yet: binding leaves a pod Pending (MODIFIED with spec.nodeName), and a pod that
# starts running leaves the selection (DELETED), by which time it was bound.
PENDING_PODS = "status.phase=Pending"
WATCH_SECONDS = 300
RETRY_SECONDS = 5.0


class Meta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    annotations: dict[str, str]


class Spec(TypedDict, total=False):
    nodeName: str  # Pod
    volumeName: str  # PersistentVolumeClaim


class PodStatus(TypedDict, total=False):
    nominatedNodeName: str


class Object(TypedDict, total=False):
    """The fields of a Node, Pod or PersistentVolumeClaim these watches read."""

    metadata: Meta
    spec: Spec
    status: PodStatus


def api(kubeconfig: str | None) -> Any:
    """A CoreV1Api from a kubeconfig file, or in-cluster config when None."""
    import kubernetes

    # The kubernetes package is untyped; treat it as Any rather than scatter ignores.
    client: Any = kubernetes.client
    loader: Any = kubernetes.config
    configuration = client.Configuration()
    if kubeconfig:
        loader.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        loader.load_incluster_config(client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))


# --- events -> service ---------------------------------------------------------------------------------------


def apply_node(state: holder.Holder, kind: str, node: Object) -> None:
    """One Node watch event (``ADDED``/``MODIFIED``/``DELETED``)."""
    meta = node.get("metadata", {})
    name = meta.get("name", "")
    if not name:
        return
    with state.lock:
        if kind == "DELETED":
            state.service.node_removed(name)
        else:
            state.service.node_updated(name, node_index.capacities(meta.get("annotations")))


def apply_pod(state: holder.Holder, kind: str, pod: Object) -> None:
    """One Pod watch event: bound (``spec.nodeName``), nominated, or gone."""
    meta = pod.get("metadata", {})
    key = scheduler.pod_key(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""))
    node = pod.get("spec", {}).get("nodeName", "")
    with state.lock:
        if node:
            state.service.pod_bound(key, node)
        elif kind == "DELETED":
            state.service.pod_deleted(key)
        elif nominated := pod.get("status", {}).get("nominatedNodeName", ""):
            # Set by preemption, and (newer kube-scheduler) before a PreBind that will wait: where the pod goes.
            state.service.pod_selected(key, nominated)


def apply_claim(state: holder.Holder, kind: str, claim: Object) -> None:
    """One PersistentVolumeClaim watch event: its selected-node tells where kube-scheduler put its pod."""
    if kind == "DELETED" or claim.get("spec", {}).get("volumeName"):
        return  # a bound claim's volume exists: its selected-node is history
    meta = claim.get("metadata", {})
    node = (meta.get("annotations") or {}).get(SELECTED_NODE_ANNOTATION, "")
    if node:
        with state.lock:
            state.service.claim_selected(meta.get("namespace", ""), meta.get("name", ""), node)


# --- list + watch --------------------------------------------------------------------------------------------


class Watch:
    """List, then watch from the list's resourceVersion, on a daemon thread, until ``close``."""

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        on_event: Callable[[str, Object], None],
        on_list: Callable[[list[Object]], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.name = name
        self._list_fn = list_fn
        self._on_event = on_event
        self._on_list = on_list
        self._kwargs = kwargs
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout)

    def _run(self) -> None:
        import kubernetes

        watch: Any = kubernetes.watch  # untyped package

        def raw(**kwargs: Any) -> Any:
            # No docstring, so the client's Watch does not turn each event into its (slow) model classes.
            return self._list_fn(**kwargs)

        while not self._stop.is_set():
            try:
                listed = json.loads(self._list_fn(**self._kwargs, _preload_content=False).data)
                items: list[Object] = listed.get("items") or []
                if self._on_list is not None:
                    self._on_list(items)
                for item in items:
                    self._on_event("ADDED", item)
                version = listed["metadata"]["resourceVersion"]
                log.info("%s watch: %d listed", self.name, len(items))
                while not self._stop.is_set():
                    self._watch = watch.Watch()
                    stream = self._watch.stream(
                        raw, **self._kwargs, resource_version=version, timeout_seconds=WATCH_SECONDS,
                        allow_watch_bookmarks=True,
                    )  # fmt: skip
                    for event in stream:
                        if self._stop.is_set():
                            return
                        obj: Object = event["raw_object"]
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            self._on_event(event["type"], obj)
            except Exception as exc:
                if self._stop.is_set():
                    return
                if getattr(exc, "status", None) == 410:  # the version is too old: list again now
                    continue
                log.warning("%s watch failed (%s); listing again in %.0fs", self.name, exc, RETRY_SECONDS)
                self._stop.wait(RETRY_SECONDS)


def watch_nodes(state: holder.Holder, core: Any) -> Watch:
    def listed(items: list[Object]) -> None:
        with state.lock:
            state.service.nodes_listed([item.get("metadata", {}).get("name", "") for item in items])

    return Watch("node", core.list_node, lambda kind, obj: apply_node(state, kind, obj), listed).start()


def watch_pods(state: holder.Holder, core: Any) -> list[Watch]:
    """Pending pods and all claims (claims have no field to select on)."""
    pods = Watch(
        "pod",
        core.list_pod_for_all_namespaces,
        lambda kind, obj: apply_pod(state, kind, obj),
        field_selector=PENDING_PODS,
    )
    claims = Watch(
        "claim",
        core.list_persistent_volume_claim_for_all_namespaces,
        lambda kind, obj: apply_claim(state, kind, obj),
    )
    return [pods.start(), claims.start()]
