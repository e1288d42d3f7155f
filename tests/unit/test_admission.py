"""The admission service on core values, as the simulator calls it (no AdmissionReview, no JSON)."""

from __future__ import annotations

import pytest

from tests.webhook.helpers import GiB, cluster
from topolvm.core import resources, workloads
from topolvm.services import admission


def pod_of(*volumes: workloads.PodVolume, namespace: str = "app", containers: int = 2) -> workloads.Pod:
    spec = workloads.PodSpec(
        containers=tuple(workloads.Container(f"c{i}", requests={"cpu": 100}) for i in range(containers)),
        volumes=volumes,
    )
    return workloads.Pod(resources.Meta("p", namespace), spec)


def claim(name: str) -> workloads.PodVolume:
    return workloads.PodVolume(name, claim_name=name)


def ephemeral(storage_class: str | None, size: int) -> workloads.PodVolume:
    return workloads.PodVolume(f"e-{storage_class}", ephemeral=workloads.EphemeralClaim(storage_class, size))


@pytest.mark.parametrize(
    ("pod", "allowed", "capacities", "reason"),
    [
        pytest.param(
            pod_of(claim("data"), claim("fast"), claim("fast2"), ephemeral("ssd", 5 * GiB), ephemeral("nfs", GiB)),
            True,
            {"capacity.topolvm.io/00default": 3 * GiB, "capacity.topolvm.io/ssd": 7 * GiB},
            "capacity requested",
            id="claims-and-ephemeral-summed-per-class",
        ),
        pytest.param(pod_of(ephemeral("topolvm", 0)), True, {"capacity.topolvm.io/00default": GiB}, "", id="0-is-1Gi"),
        pytest.param(pod_of(claim("data"), claim("bound")), True, {}, "bound", id="bound-claim-pins-the-pod"),
        pytest.param(pod_of(claim("missing"), claim("nosc"), claim("share")), True, {}, "no request", id="not-ours"),
        pytest.param(pod_of(claim("data"), namespace="kube-system"), True, {}, "opted out", id="namespace-opt-out"),
        pytest.param(pod_of(claim("data"), namespace=""), True, {}, "no request", id="no-namespace-no-claims"),
        pytest.param(pod_of(claim("data"), containers=0), False, {}, "no containers", id="no-containers"),
        pytest.param(pod_of(), True, {}, "no volumes", id="no-volumes"),
    ],
)
def test_decide(pod: workloads.Pod, allowed: bool, capacities: dict[str, int], reason: str) -> None:
    decision = admission.decide(pod, cluster())
    assert (decision.allowed, dict(decision.capacities)) == (allowed, capacities)
    assert reason in decision.reason
    assert decision.mutates == bool(capacities)


def test_mutated_adds_annotations_and_the_capacity_resource_to_the_first_container() -> None:
    pod = pod_of(claim("data"))
    pod = admission.mutated(pod, {"capacity.topolvm.io/00default": 3 * GiB})
    assert pod.meta.annotations == {"capacity.topolvm.io/00default": str(3 * GiB)}
    first, second = pod.spec.containers
    assert first.requests == {"cpu": 100, "topolvm.io/capacity": 1}
    assert first.limits == {"topolvm.io/capacity": 1}
    assert second == workloads.Container("c1", requests={"cpu": 100})


def test_mutated_without_a_request_is_the_same_pod() -> None:
    pod = pod_of(claim("share"))
    assert admission.mutated(pod, {}) is pod
    assert admission.mutated(pod_of(containers=0), {"capacity.topolvm.io/ssd": GiB}) == pod_of(containers=0)
