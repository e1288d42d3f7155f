"""The ``Cluster`` port's contract, part two: the workload kinds the webhook, the extender and the simulator's
models use — Pods (binding), PVCs, PVs, StorageClasses, CSIStorageCapacities, Namespaces — in every world."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.contract.cluster_world import ClusterWorld, events_of, eventually, next_event
from topolvm import constants, errors
from topolvm.core import resources, workloads
from topolvm.core.workloads import Operator
from topolvm.kube import validation

GiB = 1 << 30


def new_pod(world: ClusterWorld, name: str, claims: tuple[str, ...] = ()) -> workloads.Pod:
    spec = workloads.PodSpec(
        containers=(
            workloads.Container(
                "app", {"cpu": 250, "memory": GiB, constants.CAPACITY_RESOURCE: 1}, {constants.CAPACITY_RESOURCE: 1}
            ),
        ),
        volumes=(
            *(workloads.PodVolume(f"v{i}", claim_name=c) for i, c in enumerate(claims)),
            workloads.PodVolume("scratch", ephemeral=workloads.EphemeralClaim("topolvm-thin", 2 * GiB)),
        ),
        node_selector={"disk": "nvme"},
        required_terms=((workloads.Requirement("zone", Operator.IN, ("a", "b")),),),
        preferred_terms=(workloads.PreferredTerm(10, (workloads.Requirement("rack", Operator.EXISTS),)),),
        tolerations=(workloads.Toleration("dedicated", Operator.EQUAL, "db", "NoSchedule"),),
    )
    return workloads.Pod(resources.Meta(name=name, namespace=world.namespace), spec)


def new_pvc(world: ClusterWorld, name: str, size: int = 5 * GiB) -> workloads.PersistentVolumeClaim:
    # the API server's PersistentVolumeClaimResize admission lets only claims of an expandable class grow
    if world.cluster.get(workloads.STORAGE_CLASS, world.prefix) is None:
        meta = resources.Meta(name=world.prefix)
        world.cluster.create(workloads.StorageClass(meta, constants.PLUGIN_NAME, allow_volume_expansion=True))
    spec = workloads.ClaimSpec(storage_class_name=world.prefix, request_bytes=size)
    return workloads.PersistentVolumeClaim(resources.Meta(name=name, namespace=world.namespace), spec)


def test_pods_round_trip_bind_once_and_are_indexed_by_node_and_claim(world: ClusterWorld) -> None:
    c, ns = world.cluster, world.namespace
    pod = c.create(new_pod(world, "p1", claims=("data",)))
    assert pod.spec.containers[0].requests == {"cpu": 250, "memory": GiB, constants.CAPACITY_RESOURCE: 1}
    wanted = new_pod(world, "p1", claims=("data",)).spec
    # every modelled field survives the wire (the API server's DefaultTolerationSeconds admission adds two)
    assert replace(pod.spec, tolerations=wanted.tolerations) == wanted
    assert set(wanted.tolerations) <= set(pod.spec.tolerations)
    assert pod.claim_names() == ("data", "p1-scratch")
    assert [p.name for p in c.list_of(workloads.POD, match={workloads.BY_CLAIM: f"{ns}/p1-scratch"})] == ["p1"]
    q, sub = events_of(c, workloads.POD, match={resources.BY_NODE: f"{world.prefix}-node"})
    try:
        c.bind_pod(namespace=ns, name="p1", node=f"{world.prefix}-node")
        assert next_event(q, "p1").type == "ADDED"  # it entered the node's selection
    finally:
        sub.close()
    bound = eventually(lambda: c.get(workloads.POD, "p1", namespace=ns), lambda p: p.spec.node_name != "")
    assert bound.spec.node_name == f"{world.prefix}-node"
    with pytest.raises(errors.Conflict):
        c.bind_pod(namespace=ns, name="p1", node="elsewhere")
    assert c.get(workloads.POD, "p1", namespace="other") is None
    with pytest.raises(errors.InvalidArgument):
        c.create(replace(new_pod(world, "p2"), meta=resources.Meta(name="p2")))  # namespaced kinds need one


def test_pod_status_records_why_it_is_unschedulable(world: ClusterWorld) -> None:
    c = world.cluster
    pod = c.create(new_pod(world, "p3"))
    status = workloads.PodStatus(
        phase="Pending",
        unschedulable_reason="Unschedulable",
        unschedulable_message="0/3 nodes are available: out of VG free space",
    )
    updated = c.update_status(replace(pod, status=status))
    assert updated.status == status and updated.spec == pod.spec
    annotated = c.update(replace(updated, meta=updated.meta.annotated({"capacity.topolvm.io/ssd": "1"})))
    assert annotated.meta.annotations["capacity.topolvm.io/ssd"] == "1" and annotated.status == status


def test_claims_selected_node_resize_and_binding(world: ClusterWorld) -> None:
    c, ns = world.cluster, world.namespace
    pvc = c.create(new_pvc(world, "data"))
    assert (pvc.spec.request_bytes, pvc.status.phase, pvc.selected_node) == (5 * GiB, "Pending", "")
    selected = c.update(
        replace(pvc, meta=pvc.meta.annotated({workloads.SELECTED_NODE_ANNOTATION: f"{world.prefix}-n7"}))
    )
    assert selected.selected_node == f"{world.prefix}-n7"
    assert [
        x.name for x in c.list_of(workloads.PVC, namespace=ns, match={resources.BY_NODE: f"{world.prefix}-n7"})
    ] == ["data"]
    bound = c.update(replace(selected, spec=replace(selected.spec, volume_name=f"pv-{world.prefix}")))
    bound = c.update_status(replace(bound, status=workloads.ClaimStatus("Bound", 5 * GiB)))
    assert (bound.spec.volume_name, bound.status) == (f"pv-{world.prefix}", workloads.ClaimStatus("Bound", 5 * GiB))
    grown = c.update(replace(bound, spec=replace(bound.spec, request_bytes=8 * GiB)))
    assert grown.spec.request_bytes == 8 * GiB and grown.status.capacity_bytes == 5 * GiB


def refused(phrase: str, write: Callable[[], object]) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        write()
    assert phrase in str(caught.value)


def test_claim_spec_is_immutable_but_for_a_bound_claims_request_and_its_volume_name_once(world: ClusterWorld) -> None:
    c = world.cluster

    def changed(pvc: workloads.PersistentVolumeClaim, **spec: object) -> workloads.PersistentVolumeClaim:
        return replace(pvc, spec=replace(pvc.spec, **spec))  # type: ignore[arg-type]

    pvc = c.create(new_pvc(world, "data"))
    immutable = validation.IMMUTABLE
    # not bound: the request may not change (external-resizer only acts on bound claims), nor anything else
    refused(immutable, lambda: c.update(changed(pvc, request_bytes=8 * GiB)))
    refused(immutable, lambda: c.update(changed(pvc, storage_class_name=f"{world.prefix}-other")))
    refused(immutable, lambda: c.update(changed(pvc, access_modes=("ReadWriteMany",))))
    refused(immutable, lambda: c.update(changed(pvc, volume_mode="Block")))
    named = c.update(changed(pvc, volume_name=f"pv-{world.prefix}"))  # the PV controller binds: once
    assert named.spec.volume_name == f"pv-{world.prefix}"
    refused(immutable, lambda: c.update(changed(named, volume_name=f"pv-{world.prefix}-2")))
    refused(immutable, lambda: c.update(changed(named, volume_name="")))
    refused(immutable, lambda: c.update(changed(named, request_bytes=8 * GiB)))  # named, but not Bound yet
    bound = c.update_status(replace(named, status=workloads.ClaimStatus("Bound", 5 * GiB)))
    grown = c.update(changed(bound, request_bytes=8 * GiB))
    assert grown.spec.request_bytes == 8 * GiB
    refused(immutable, lambda: c.update(changed(grown, request_bytes=9 * GiB, volume_mode="Block")))
    # a failed expansion may be taken back (RecoverVolumeExpansionFailure), but not to the capacity or below
    lowered = c.update(changed(grown, request_bytes=6 * GiB))
    assert lowered.spec.request_bytes == 6 * GiB
    refused(validation.BELOW_CAPACITY, lambda: c.update(changed(lowered, request_bytes=5 * GiB)))
    refused(validation.BELOW_CAPACITY, lambda: c.update(changed(lowered, request_bytes=4 * GiB)))
    lost = c.update_status(replace(lowered, status=workloads.ClaimStatus("Lost", 5 * GiB)))
    refused(immutable, lambda: c.update(changed(lost, request_bytes=10 * GiB)))
    # a claim created without a class may get one, once (RetroactiveDefaultStorageClass)
    classless = c.create(replace(new_pvc(world, "classless"), spec=workloads.ClaimSpec(request_bytes=GiB)))
    assert classless.spec.storage_class_name is None
    classed = c.update(changed(classless, storage_class_name=world.prefix))
    assert classed.spec.storage_class_name == world.prefix
    refused(immutable, lambda: c.update(changed(classed, storage_class_name=f"{world.prefix}-other")))


def test_volumes_keep_claim_ref_node_and_handle(world: ClusterWorld) -> None:
    c, name = world.cluster, f"pv-{world.prefix}"
    spec = workloads.VolumeSpec(
        capacity_bytes=5 * GiB,
        volume_handle=f"{world.prefix}-handle",
        fs_type="xfs",
        volume_attributes={"topolvm.io/device-class": "ssd"},
        claim_ref=workloads.ClaimRef(world.namespace, "data"),
        node_name=f"{world.prefix}-n7",
        storage_class_name="topolvm-provisioner",
    )
    pv = c.create(workloads.PersistentVolume(resources.Meta(name=name), spec))
    assert pv.spec == spec
    assert [v.name for v in c.list_of(workloads.PV, match={workloads.BY_VOLUME_HANDLE: f"{world.prefix}-handle"})] == [
        name
    ]
    assert [v.name for v in c.list_of(workloads.PV, match={workloads.BY_CLAIM: f"{world.namespace}/data"})] == [name]
    released = c.update_status(replace(pv, status=workloads.VolumeStatus("Released")))
    assert released.status.phase == "Released" and released.spec == spec
    c.delete(workloads.PV, name)
    # the API server's StorageObjectInUseProtection admission adds kubernetes.io/pv-protection; the in-memory
    # cluster runs no admission plugins
    held = eventually(lambda: c.get(workloads.PV, name), lambda v: v is None or v.meta.deleting)
    if held is not None:
        c.update(replace(held, meta=replace(held.meta, finalizers=())))
    assert eventually(lambda: c.get(workloads.PV, name), lambda v: v is None) is None


def test_storage_classes_and_capacities(world: ClusterWorld) -> None:
    c, p = world.cluster, world.prefix
    sc = c.create(
        workloads.StorageClass(
            resources.Meta(name=f"{p}-thin"),
            provisioner=constants.PLUGIN_NAME,
            parameters={constants.DEVICE_CLASS_PARAMETER: "thin"},
            allow_volume_expansion=True,
            mount_options=("noatime",),
        )
    )
    assert (sc.device_class, sc.volume_binding_mode, sc.allow_volume_expansion) == (
        "thin",
        "WaitForFirstConsumer",
        True,
    )
    labels = {constants.TOPOLOGY_NODE_KEY: f"{world.prefix}-n7"}
    cap = c.create(
        workloads.CSIStorageCapacity(
            resources.Meta(name=f"{p}-cap", namespace=world.namespace), sc.name, labels, capacity_bytes=40 * GiB
        )
    )
    assert (cap.node_labels, cap.capacity_bytes, cap.maximum_volume_size) == (labels, 40 * GiB, None)
    lower = c.update(replace(cap, capacity_bytes=30 * GiB, maximum_volume_size=30 * GiB))
    assert (lower.capacity_bytes, lower.maximum_volume_size) == (30 * GiB, 30 * GiB)
    assert [
        x.name for x in c.list_of(workloads.CSI_STORAGE_CAPACITY, match={resources.BY_NODE: f"{world.prefix}-n7"})
    ] == [cap.name]


def test_namespaces_carry_labels(world: ClusterWorld) -> None:
    c, name = world.cluster, f"{world.prefix}-ns"
    ns = c.create(resources.Namespace(resources.Meta(name=name, labels={constants.NAMESPACE_OPT_OUT_LABEL: "ignore"})))
    assert ns.meta.labels[constants.NAMESPACE_OPT_OUT_LABEL] == "ignore"
    got = c.get(resources.NAMESPACE, name)
    assert got is not None and got.meta.labels == ns.meta.labels
