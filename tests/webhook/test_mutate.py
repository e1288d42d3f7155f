"""The webhook's answer and its JSONPatch, checked by applying the patch to the pod; the read-through cache."""

from __future__ import annotations

import collections
import copy
from typing import Any, TypeVar

import msgspec
import pytest

from tests.webhook.helpers import GiB, add_claim, cluster, pod, review
from topolvm import ports
from topolvm.core import resources
from topolvm.kube import codec_workloads, memory, store
from topolvm.services import admission
from topolvm.webhook import kube, mutate, wire

T = TypeVar("T", bound=resources.Object)


def request_of(obj: Any, namespace: str = "app", operation: str = "CREATE") -> wire.Request:
    request = wire.review_decoder.decode(review(obj, namespace, operation)).request
    assert request is not None
    return request


def answer(obj: Any, namespace: str = "app", operation: str = "CREATE") -> mutate.Answer:
    return mutate.answer(request_of(obj, namespace, operation), cluster())


def apply(obj: dict[str, Any], patch: mutate.Patch) -> dict[str, Any]:
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
    reply = answer(obj)
    assert reply.allowed
    assert dict(reply.capacities) == {"capacity.topolvm.io/00default": 3 * GiB, "capacity.topolvm.io/ssd": 2 * GiB}
    assert reply.pod == "app/p"
    patched = apply(obj, reply.patch)
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
    reply = answer(pod(ephemeral=templates))
    assert dict(reply.capacities) == {"capacity.topolvm.io/ssd": 5 * GiB, "capacity.topolvm.io/00default": GiB}


def test_existing_annotations_and_resources_are_kept() -> None:
    obj = pod("fast")
    obj["metadata"]["annotations"] = {"keep/me": "1"}
    obj["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    patched = apply(obj, answer(obj).patch)
    assert patched["metadata"]["annotations"] == {"keep/me": "1", "capacity.topolvm.io/ssd": str(GiB)}
    assert patched["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "topolvm.io/capacity": "1"},
        "limits": {"topolvm.io/capacity": "1"},
    }


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param({}, id="bare"),
        pytest.param({"annotations": {}, "resources": {}}, id="empty-maps"),
        pytest.param({"annotations": {"a": "b"}, "resources": {"limits": {"memory": "1Gi"}}}, id="filled"),
        pytest.param({"no-metadata": True}, id="no-metadata"),
    ],
)
def test_patch_does_what_the_service_does(shape: dict[str, Any]) -> None:
    """The wire patch and ``admission.mutated`` (the simulator's path) must leave the same pod."""
    obj = pod("data", "fast")
    if "no-metadata" in shape:
        del obj["metadata"]  # the namespace comes from the request then
    if "annotations" in shape:
        obj["metadata"]["annotations"] = shape["annotations"]
    if "resources" in shape:
        obj["spec"]["containers"][0]["resources"] = shape["resources"]
    reply = answer(obj)
    by_patch = codec_workloads.pod_from_json(apply(obj, reply.patch))
    by_service = admission.mutated(codec_workloads.pod_from_json(obj), reply.capacities)
    assert by_patch.meta.annotations
    assert by_patch.meta.annotations == by_service.meta.annotations
    assert by_patch.spec.containers == by_service.spec.containers


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
    reply = answer(obj, namespace, operation)
    assert reply.allowed
    assert not reply.patch
    assert reason in reply.reason


def test_namespace_taken_from_request_when_pod_has_none() -> None:
    reply = answer(pod("data", metadata={"generateName": "web-"}))
    assert reply.capacities == {"capacity.topolvm.io/00default": 3 * GiB}
    assert reply.pod == "app/web-*"


@pytest.mark.parametrize(
    ("obj", "code", "reason"),
    [
        pytest.param(
            {"spec": {"containers": [], "volumes": [{"name": "v"}]}}, 403, "no containers", id="no-containers"
        ),
        pytest.param({"spec": {"containers": "x"}}, 400, "cannot decode pod", id="wrong-type"),
        pytest.param([1, 2], 400, "not a JSON object", id="not-an-object"),
        pytest.param(
            pod("data", metadata={"name": "p", "annotations": [["a", "b"]]}),
            400,
            "annotations is not an object",
            id="annotations-not-a-map",
        ),
        pytest.param(
            pod(ephemeral=[{"storageClassName": "ssd", "resources": {"requests": {"storage": "lots"}}}]),
            400,
            "not a quantity",
            id="bad-quantity",
        ),
        pytest.param(
            pod(ephemeral=[{"storageClassName": "ssd", "resources": {"requests": {"storage": [1]}}}]),
            400,
            "not a quantity",
            id="quantity-not-scalar",
        ),
    ],
)
def test_refused(obj: Any, code: int, reason: str) -> None:
    reply = answer(obj)
    assert not reply.allowed
    assert reply.code == code
    assert reason in reply.reason


def test_pointer_escapes() -> None:
    assert mutate.pointer("metadata", "annotations", "capacity.topolvm.io/ssd") == (
        "/metadata/annotations/capacity.topolvm.io~1ssd"
    )
    assert mutate.pointer("a~b") == "/a~0b"


class CountingCluster(memory.InMemoryCluster):
    """Counts ``get`` calls by kind."""

    def __init__(self, dispatcher: store.Dispatcher | None = None) -> None:
        super().__init__(dispatcher=dispatcher)
        self.gets: collections.Counter[str] = collections.Counter()

    def get(self, kind: resources.Kind[T], name: str, *, namespace: str = "") -> T | None:
        self.gets[kind.name] += 1
        return super().get(kind, name, namespace=namespace)


def test_storage_class_read_once_per_admission() -> None:
    counting = CountingCluster()
    cluster(counting)
    reply = mutate.answer(request_of(pod("fast", "fast2")), counting)
    assert reply.capacities == {"capacity.topolvm.io/ssd": 2 * GiB}
    assert counting.gets == {"Namespace": 1, "PersistentVolumeClaim": 2, "StorageClass": 1}
    assert msgspec.json.encode(list(reply.patch))


class HeldDeliveries:
    """A watch that lags: events wait here until ``release`` (what the API server's watch does for a few ms)."""

    def __init__(self) -> None:
        self.held: list[store.Delivery] = []
        self.deliver = store.Deliveries()

    def __call__(self, batch: list[store.Delivery]) -> None:
        self.held.extend(batch)

    def release(self) -> None:
        batch, self.held = self.held, []
        self.deliver(batch)


def lagging_webhook_cluster() -> tuple[CountingCluster, HeldDeliveries, ports.Cluster]:
    lag = HeldDeliveries()
    backend = CountingCluster(dispatcher=lag)
    cluster(backend)
    cached = kube.ReadThroughCache(backend, kube.INFORMED).start()
    lag.release()  # the initial list has been replayed: the caches are in sync
    backend.gets.clear()
    return backend, lag, cached


def test_admissions_are_answered_from_the_caches() -> None:
    backend, _lag, cached = lagging_webhook_cluster()
    reply = mutate.answer(request_of(pod("data", "fast")), cached)
    assert reply.capacities == {"capacity.topolvm.io/00default": 3 * GiB, "capacity.topolvm.io/ssd": GiB}
    assert backend.gets == {}


def test_claim_created_just_before_its_pod_is_read_through() -> None:
    backend, lag, cached = lagging_webhook_cluster()
    add_claim(backend, "fresh", "ssd", size=7 * GiB)  # its watch event has not arrived yet
    assert lag.held
    reply = mutate.answer(request_of(pod("fresh")), cached)
    assert reply.capacities == {"capacity.topolvm.io/ssd": 7 * GiB}
    assert backend.gets == {"PersistentVolumeClaim": 1}

    lag.release()
    backend.gets.clear()
    mutate.answer(request_of(pod("fresh")), cached)
    assert backend.gets == {}  # once the watch caught up, no request again


def test_claim_that_does_not_exist_costs_one_get_and_is_skipped() -> None:
    backend, _lag, cached = lagging_webhook_cluster()
    reply = mutate.answer(request_of(pod("data", "missing")), cached)
    assert reply.capacities == {"capacity.topolvm.io/00default": 3 * GiB}
    assert backend.gets == {"PersistentVolumeClaim": 1}
