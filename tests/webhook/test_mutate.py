"""The mutation decision and its JSONPatch, checked by applying the patch to the pod."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from tests.webhook.helpers import GiB, cluster, pod, review
from topolvm.webhook import mutate, wire


def decide(obj: Any, namespace: str = "app", operation: str = "CREATE") -> mutate.Decision:
    request = wire.review_decoder.decode(review(obj, namespace, operation)).request
    assert request is not None
    return mutate.decide(request, cluster())


def apply(obj: dict[str, Any], patch: tuple[dict[str, object], ...]) -> dict[str, Any]:
    """A minimal RFC 6902 'add' applier, enough to check our patches land where the API server would put them."""
    result = copy.deepcopy(obj)
    for op in patch:
        assert op["op"] == "add"
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op["path"]).split("/")[1:]]
        target: Any = result
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[parts[-1]] = op["value"]
    return result


def test_sums_pending_claims_per_class() -> None:
    obj = pod("data", "fast", "fast2", "share", "nosc", "missing")
    decision = decide(obj)
    assert decision.allowed
    assert dict(decision.capacities) == {"capacity.topolvm.io/00default": 3 * GiB, "capacity.topolvm.io/ssd": 2 * GiB}
    patched = apply(obj, decision.patch)
    assert patched["metadata"]["annotations"] == {
        "capacity.topolvm.io/00default": str(3 * GiB),
        "capacity.topolvm.io/ssd": str(2 * GiB),
    }
    assert patched["spec"]["containers"][0]["resources"] == {
        "requests": {"topolvm.io/capacity": "1"},
        "limits": {"topolvm.io/capacity": "1"},
    }
    assert "resources" not in patched["spec"]["containers"][1]


def test_generic_ephemeral_volumes_count() -> None:
    templates = [
        {"storageClassName": "ssd", "resources": {"requests": {"storage": "5Gi"}}},
        {"storageClassName": "topolvm", "resources": {"requests": {"storage": 0}}},  # 0 -> 1 GiB
        {"storageClassName": "nfs", "resources": {"requests": {"storage": "5Gi"}}},
        {"resources": {"requests": {"storage": "5Gi"}}},  # no class: not ours
    ]
    decision = decide(pod(ephemeral=templates))
    assert dict(decision.capacities) == {"capacity.topolvm.io/ssd": 5 * GiB, "capacity.topolvm.io/00default": GiB}


def test_existing_annotations_and_resources_are_kept() -> None:
    obj = pod("fast")
    obj["metadata"]["annotations"] = {"keep/me": "1"}
    obj["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    patched = apply(obj, decide(obj).patch)
    assert patched["metadata"]["annotations"] == {"keep/me": "1", "capacity.topolvm.io/ssd": str(GiB)}
    assert patched["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "topolvm.io/capacity": "1"},
        "limits": {"topolvm.io/capacity": "1"},
    }


@pytest.mark.parametrize(
    ("obj", "namespace", "operation", "reason"),
    [
        pytest.param(pod("data", "bound"), "app", "CREATE", "bound", id="bound-claim"),
        pytest.param(pod("share"), "app", "CREATE", "no request", id="other-driver"),
        pytest.param(pod(), "app", "CREATE", "no volumes", id="no-volumes"),
        pytest.param(pod("data"), "app", "UPDATE", "not a pod creation", id="update"),
        pytest.param(
            pod("data", metadata={"name": "p", "namespace": "kube-system"}),
            "kube-system",
            "CREATE",
            "opted out",
            id="namespace-opt-out",
        ),
    ],
)
def test_left_alone(obj: Any, namespace: str, operation: str, reason: str) -> None:
    decision = decide(obj, namespace, operation)
    assert decision.allowed
    assert not decision.patch
    assert reason in decision.reason


def test_namespace_taken_from_request_when_pod_has_none() -> None:
    obj = pod("data", metadata={"generateName": "web-"})
    assert decide(obj).capacities == {"capacity.topolvm.io/00default": 3 * GiB}


@pytest.mark.parametrize(
    ("obj", "code", "reason"),
    [
        pytest.param(
            {"spec": {"containers": [], "volumes": [{"name": "v"}]}}, 403, "no containers", id="no-containers"
        ),
        pytest.param({"spec": {"containers": "x"}}, 400, "cannot decode pod", id="wrong-type"),
        pytest.param(
            pod(ephemeral=[{"storageClassName": "ssd", "resources": {"requests": {"storage": "lots"}}}]),
            400,
            "invalid storage request",
            id="bad-quantity",
        ),
        pytest.param(
            pod(ephemeral=[{"storageClassName": "ssd", "resources": {"requests": {"storage": [1]}}}]),
            400,
            "invalid storage request",
            id="quantity-not-scalar",
        ),
    ],
)
def test_refused(obj: Any, code: int, reason: str) -> None:
    decision = decide(obj)
    assert not decision.allowed
    assert decision.code == code
    assert reason in decision.reason


def test_pointer_escapes() -> None:
    assert mutate.pointer("metadata", "annotations", "capacity.topolvm.io/ssd") == (
        "/metadata/annotations/capacity.topolvm.io~1ssd"
    )
    assert mutate.pointer("a~b") == "/a~0b"


def test_storage_class_looked_up_once_per_admission() -> None:
    lookup = cluster()
    request = wire.review_decoder.decode(review(pod("fast", "fast2"))).request
    assert request is not None
    mutate.decide(request, lookup)
    assert lookup.calls == 4  # namespace, two claims, one storage class
    assert msgspec.json.encode(list(mutate.decide(request, lookup).patch))
