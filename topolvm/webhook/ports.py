"""What the webhook looks up in the cluster, as a Protocol, plus an in-memory fake for tests and simulations.

Implemented by ``topolvm.webhook.kube.KubeLookup`` (kubernetes client) and ``FakeLookup`` below. Lookups are
synchronous; ``topolvm.webhook.app`` runs them off the event loop. A missing object is ``None``; failures to
reach the API raise ``topolvm.errors.Unavailable``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class Claim:
    """The parts of a PersistentVolumeClaim the webhook needs."""

    namespace: str
    name: str
    storage_class: str | None
    phase: str = "Pending"
    storage_request: str | None = None  # spec.resources.requests.storage, a Quantity string


@dataclasses.dataclass(frozen=True)
class StorageClass:
    name: str
    provisioner: str
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Lookup(Protocol):
    def claim(self, *, namespace: str, name: str) -> Claim | None: ...

    def storage_class(self, *, name: str) -> StorageClass | None: ...

    def namespace_labels(self, *, name: str) -> Mapping[str, str] | None: ...


@dataclasses.dataclass
class FakeLookup:
    """In-memory cluster: dicts of claims, storage classes and namespace labels; counts calls for tests."""

    claims: dict[tuple[str, str], Claim] = dataclasses.field(default_factory=dict)
    storage_classes: dict[str, StorageClass] = dataclasses.field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    calls: int = 0

    def add_claim(self, claim: Claim) -> None:
        self.claims[(claim.namespace, claim.name)] = claim

    def add_storage_class(self, storage_class: StorageClass) -> None:
        self.storage_classes[storage_class.name] = storage_class

    def claim(self, *, namespace: str, name: str) -> Claim | None:
        self.calls += 1
        return self.claims.get((namespace, name))

    def storage_class(self, *, name: str) -> StorageClass | None:
        self.calls += 1
        return self.storage_classes.get(name)

    def namespace_labels(self, *, name: str) -> Mapping[str, str] | None:
        self.calls += 1
        return self.namespaces.get(name)
