"""Keeps the extender's node cache fresh from the API server (for ``nodeCacheCapable: true`` requests).

Adapter over the ``kubernetes`` client: a daemon thread lists Nodes, then watches them, and re-lists after any
watch error. Only each node's ``capacity.topolvm.io/*`` annotations are kept. The holder's dict is replaced
per key, which is atomic under the GIL, so the event loop never sees a half-written entry.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from topolvm.extender import holder

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


def start_node_watch(state: holder.Holder, kubeconfig: str | None) -> threading.Thread:
    import kubernetes

    # The kubernetes package is untyped; treat it as Any rather than scatter ignores.
    client: Any = kubernetes.client
    kube_config: Any = kubernetes.config
    if kubeconfig:
        kube_config.load_kube_config(config_file=kubeconfig)
    else:
        kube_config.load_incluster_config()
    api = client.CoreV1Api()
    thread = threading.Thread(target=_run, args=(api, state), name="node-watch", daemon=True)
    thread.start()
    return thread


def apply_event(state: holder.Holder, kind: str, node: Any) -> None:
    """Apply one watch event (``ADDED``/``MODIFIED``/``DELETED``) for a V1Node to the cache."""
    name = node.metadata.name
    if kind == "DELETED":
        state.forget(name)
    else:
        state.remember(name, holder.capacity_annotations(node.metadata.annotations))


def _run(api: Any, state: holder.Holder) -> None:
    import kubernetes

    watch: Any = kubernetes.watch
    while True:
        try:
            listing = api.list_node()
            for node in listing.items:
                apply_event(state, "ADDED", node)
            log.info("node cache: %d nodes listed", len(listing.items))
            stream = watch.Watch().stream(api.list_node, resource_version=listing.metadata.resource_version)
            for event in stream:
                apply_event(state, event["type"], event["object"])
        except Exception:
            log.exception("node watch failed; re-listing in %.0fs", RETRY_SECONDS)
            time.sleep(RETRY_SECONDS)
