"""``ports.Lookup`` over the kubernetes client (PVCs, StorageClasses, namespace labels).

Used by ``topolvm.webhook.cli``. A 404 is ``None``; any other API or connection failure is
``errors.Unavailable``, which the webhook reports in the AdmissionReview (the pod is refused, then retried).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from topolvm import errors
from topolvm.webhook import ports

T = TypeVar("T")


class KubeLookup:
    def __init__(self, kubeconfig: str | None = None, timeout: float = 5.0) -> None:
        import kubernetes

        # The kubernetes package is untyped; treat it as Any rather than scatter ignores.
        k8s: Any = kubernetes
        if kubeconfig:
            k8s.config.load_kube_config(config_file=kubeconfig)
        else:
            k8s.config.load_incluster_config()
        self._core = k8s.client.CoreV1Api()
        self._storage = k8s.client.StorageV1Api()
        self._api_exception: type[Exception] = k8s.client.exceptions.ApiException
        self._timeout = timeout

    def _get(self, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except self._api_exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise errors.Unavailable(f"API server: {exc}") from None
        except OSError as exc:
            raise errors.Unavailable(f"API server unreachable: {exc}") from None

    def claim(self, *, namespace: str, name: str) -> ports.Claim | None:
        pvc: Any = self._get(
            lambda: self._core.read_namespaced_persistent_volume_claim(name, namespace, _request_timeout=self._timeout)
        )
        if pvc is None:
            return None
        requests = (pvc.spec.resources.requests or {}) if pvc.spec.resources else {}
        return ports.Claim(
            namespace=namespace,
            name=name,
            storage_class=pvc.spec.storage_class_name,
            phase=(pvc.status.phase if pvc.status else None) or "Pending",
            storage_request=requests.get("storage"),
        )

    def storage_class(self, *, name: str) -> ports.StorageClass | None:
        sc: Any = self._get(lambda: self._storage.read_storage_class(name, _request_timeout=self._timeout))
        if sc is None:
            return None
        return ports.StorageClass(name=name, provisioner=sc.provisioner, parameters=dict(sc.parameters or {}))

    def namespace_labels(self, *, name: str) -> Mapping[str, str] | None:
        ns: Any = self._get(lambda: self._core.read_namespace(name, _request_timeout=self._timeout))
        if ns is None:
            return None
        return dict(ns.metadata.labels or {})
