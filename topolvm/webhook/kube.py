"""The webhook's view of the cluster: informer caches of PVCs, StorageClasses and Namespaces, so an admission makes
no API request, with a read-through on a miss.

Used by ``topolvm.webhook.cli``. A pod is typically created right after its PVC (a Deployment applied with its
claim, a Helm chart with its StorageClass), before the watch has delivered the new object; reading that miss as
"no such claim" would let the pod past unrouted. So a miss is confirmed with one GET on the API server. Objects
that really are absent (a pod created before its claim) cost that GET; objects that exist cost nothing.
"""

from __future__ import annotations

from typing import Any, TypeVar

from topolvm.core import resources, workloads
from topolvm.kube import cache
from topolvm.kube import client as kube_client

T = TypeVar("T", bound=resources.Object)

INFORMED: dict[resources.Kind[Any], None] = {
    workloads.PVC: None,
    workloads.STORAGE_CLASS: None,
    resources.NAMESPACE: None,
}


class ReadThroughCache(cache.CachedCluster):
    """``CachedCluster`` whose informed ``get`` asks the backend once when the cache does not hold the object."""

    def get(self, kind: resources.Kind[T], name: str, *, namespace: str = "") -> T | None:
        found = super().get(kind, name, namespace=namespace)
        if found is None and self.informs(kind):
            found = self.backend.get(kind, name, namespace=namespace)
        return found


class Connection:
    """The webhook's API client (``kube`` counts its requests) and its started caches (``cluster``, what
    admissions read); ``close`` ends the watches and the connection pool."""

    def __init__(self, kubeconfig: str | None) -> None:
        self.api: Any = kube_client.api_client(kubeconfig)  # Any: the client's close() is untyped
        self.kube = kube_client.KubeCluster(self.api)
        self.cluster = ReadThroughCache(self.kube, INFORMED)
        try:
            self.cluster.start()  # lists every informed kind before returning
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.cluster.close()
        self.api.close()
