"""Pods the scheduler extender was asked about, remembered for their claims: ``Pod`` and ``SeenPods``.

Used by ``topolvm.services.scheduler``: a claim's ``volume.kubernetes.io/selected-node`` and ``spec.volumeName``
name a claim, not a pod, so the claims each pod mounts are remembered from its requests, with its request (to
hold it again on the selected node), and which of them the claim watch has since seen with a volume. A pod is
forgotten when bound or deleted, when unseen for ``pod_ttl``, or, beyond ``max_pods``, oldest first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class Pod:
    """A pod as the extender sees it in a request: identity, requested bytes per class, claims it mounts."""

    key: str  # the UID, else namespace/name (see ``pod_key``)
    namespace: str = ""
    name: str = ""
    requested: Mapping[str, int] = dataclasses.field(default_factory=dict)
    claims: tuple[str, ...] = ()  # PersistentVolumeClaim names in ``namespace``, generic ephemeral ones included


def pod_key(namespace: str, name: str, uid: str) -> str:
    """Identity a reservation is held under: the pod UID, else namespace/name (a pod being created may lack one)."""
    return uid or f"{namespace}/{name}"


class SeenPods:
    """Pods by key, least recently seen first, with the claims they mount and whether their volume exists."""

    def __init__(self, *, max_pods: int, pod_ttl: float) -> None:
        self.max_pods = max_pods
        self.pod_ttl = pod_ttl
        self._pods: dict[str, tuple[Pod, float]] = {}  # key -> (pod, last seen), oldest first
        self._claims: dict[tuple[str, str], str] = {}  # (namespace, claim) -> pod key
        self._provisioned: set[str] = set()  # pods whose reservation ended because the volume exists
        # Claims of remembered pods that the claim watch reported with a volume (spec.volumeName) since the pod was
        # first seen. A claim bound before that, or whose event has not come yet, is not here: its pod then counts
        # as still waiting for a volume (the safe side), until it is bound.
        self._bound: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self._pods)

    def __contains__(self, key: object) -> bool:
        return key in self._pods

    def get(self, key: str) -> Pod | None:
        tracked = self._pods.get(key)
        return tracked[0] if tracked is not None else None

    def by_claim(self, namespace: str, claim: str) -> str | None:
        """The key of the pod that mounts the claim, if it was seen."""
        return self._claims.get((namespace, claim))

    def seen(self, pod: Pod, now: float) -> None:
        """``pod`` is being scheduled (again): a new selected-node may follow, even after a provisioned volume."""
        self._provisioned.discard(pod.key)
        self._pods.pop(pod.key, None)
        self._pods[pod.key] = (pod, now)
        for claim in pod.claims:
            self._claims[(pod.namespace, claim)] = pod.key
        while len(self._pods) > self.max_pods:
            self.forget(next(iter(self._pods)))

    def forget(self, key: str) -> None:
        tracked = self._pods.pop(key, None)
        self._provisioned.discard(key)
        if tracked is None:
            return
        pod = tracked[0]
        for claim in pod.claims:
            if self._claims.get((pod.namespace, claim)) == key:
                del self._claims[(pod.namespace, claim)]
                self._bound.discard((pod.namespace, claim))

    def provisioned(self, key: str) -> None:
        """A volume of the pod exists (its reservation ended when the node's annotation counted it)."""
        if key in self._pods:
            self._provisioned.add(key)

    def is_provisioned(self, key: str) -> bool:
        """The pod's volume exists: its reservation ended on that evidence, or all its claims have volumes."""
        return key in self._provisioned or self.volumes_exist(key)

    def claim_bound(self, namespace: str, claim: str) -> str | None:
        """The claim has a volume (``spec.volumeName``); returns the key of the remembered pod that mounts it."""
        key = self._claims.get((namespace, claim))
        if key is not None:
            self._bound.add((namespace, claim))
        return key

    def claim_gone(self, namespace: str, claim: str) -> None:
        """The claim was deleted: a claim made again under its name starts without a volume."""
        self._bound.discard((namespace, claim))

    def volumes_exist(self, key: str) -> bool:
        """Every claim the pod mounts was reported with a volume (False for a pod with no claims known)."""
        tracked = self._pods.get(key)
        if tracked is None:
            return False
        pod = tracked[0]
        return bool(pod.claims) and all((pod.namespace, claim) in self._bound for claim in pod.claims)

    def expire(self, now: float) -> None:
        """Forget the pods not seen for ``pod_ttl``."""
        horizon = now - self.pod_ttl
        while self._pods:
            key, (_, seen) = next(iter(self._pods.items()))
            if seen > horizon:
                break
            self.forget(key)
