"""The controller's sweep of LogicalVolumes stranded by a claim deleted before its PV existed (upstream #1104),
on in-memory adapters: the answered, claim, PV, age, snapshot and name rules, and that the node agent then removes
the LV."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.support import memory_lvmd
from topolvm import clock, constants, errors
from topolvm.core import resources, workloads
from topolvm.kube import memory as kube_memory
from topolvm.services import cleanup, controller, lvmd, node

GiB = 1 << 30
GRACE = 3600.0


class World:
    def __init__(self) -> None:
        self.clock = clock.ManualClock()
        self.cluster = kube_memory.InMemoryCluster(self.clock)
        self.cluster.add_node("n1")
        self.lvmd: lvmd.LvmdService = memory_lvmd.started(20 * GiB)
        self.lvmd.watch(node.CapacityPublisher(node_name="n1", cluster=self.cluster))
        self.ctl = controller.ControllerService(cluster=self.cluster, clock=self.clock)
        self.agent = node.LogicalVolumeReconciler(node_name="n1", cluster=self.cluster, lvmd=self.lvmd)
        self.sweeper = cleanup.StrandedVolumeSweeper(cluster=self.cluster, clock=self.clock, grace=GRACE)

    def claim(self, name: str) -> workloads.PersistentVolumeClaim:
        meta = resources.Meta(name, "app", annotations={workloads.SELECTED_NODE_ANNOTATION: "n1"})
        spec = workloads.ClaimSpec(storage_class_name="topolvm-provisioner")
        return self.cluster.create(workloads.PersistentVolumeClaim(meta, spec))

    def provision(self, claim: workloads.PersistentVolumeClaim, *, answered: bool = False) -> resources.LogicalVolume:
        """external-provisioner's CreateVolume for the claim (named pvc-<uid>) and the node agent's work; with
        ``answered``, CreateVolume also answered OK (the CSI servicer's last step)."""
        name = f"pvc-{claim.meta.uid}"
        self.ctl.create_volume(controller.VolumeRequest(name=name, required_bytes=GiB, device_class="ssd"))
        self.agent.reconcile(name)
        if answered:
            self.ctl.answered(name)
        lv = self.cluster.get(resources.LOGICAL_VOLUME, name)
        assert lv is not None and lv.status.volume_id
        assert (constants.UNANSWERED_ANNOTATION in lv.meta.annotations) is not answered
        return lv

    def lvs(self) -> list[str]:
        return [lv.name for lv in self.lvmd.list_lvs(device_class="ssd")]


def test_a_volume_whose_claim_is_gone_is_swept_after_the_grace_and_its_lv_removed() -> None:
    w = World()
    claim = w.claim("data")
    lv = w.provision(claim)
    w.cluster.delete(workloads.PVC, "data", namespace="app")  # deleted before any PV was made for it
    assert w.sweeper.sweep() == []  # too young
    w.clock.advance(GRACE - 1)
    assert w.sweeper.sweep() == []
    w.clock.advance(1)
    assert [s.name for s in w.sweeper.sweep()] == [lv.name]
    assert w.lvs() == [lv.status.volume_id]  # the node agent has not run yet
    assert w.agent.reconcile(lv.name) is node.Outcome.DONE
    assert w.lvs() == []
    assert w.cluster.get(resources.LOGICAL_VOLUME, lv.name) is None
    assert w.sweeper.sweep() == []  # nothing left, nothing twice


def test_volumes_with_a_claim_or_a_pv_and_snapshots_and_foreign_names_are_kept() -> None:
    w = World()
    pending = w.provision(w.claim("pending"))  # CreateVolume still being retried for a claim that exists
    released = w.provision(w.claim("released"))
    w.cluster.delete(workloads.PVC, "released", namespace="app")
    pv_spec = workloads.VolumeSpec(GiB, volume_handle=released.status.volume_id, reclaim_policy="Retain")
    w.cluster.create(workloads.PersistentVolume(resources.Meta(released.name), pv_spec))  # the PV outlives its claim
    snap = resources.Meta("snapshot-7d1f4a52-5b0e-4b39-9a3c-0c2de0f4a111", finalizers=())
    snap_spec = resources.LogicalVolumeSpec(
        snap.name, "n1", GiB, "ssd", source=pending.status.volume_id, access_type="ro"
    )
    w.cluster.create(resources.LogicalVolume(snap, snap_spec))
    w.ctl.create_volume(controller.VolumeRequest(name="sanity-volume", required_bytes=GiB, device_class="ssd"))
    w.clock.advance(10 * GRACE)
    assert w.sweeper.sweep() == []
    assert len(w.cluster.list_of(resources.LOGICAL_VOLUME)) == 4


def test_a_volume_whose_pv_names_its_cr_uid_is_kept() -> None:
    w = World()
    lv = w.provision(w.claim("x"))
    w.cluster.delete(workloads.PVC, "x", namespace="app")
    w.cluster.create(
        workloads.PersistentVolume(resources.Meta(lv.name), workloads.VolumeSpec(GiB, volume_handle=lv.meta.uid))
    )
    w.clock.advance(GRACE)
    assert w.sweeper.sweep() == []


def test_another_drivers_pv_with_the_same_handle_does_not_keep_it() -> None:
    w = World()
    lv = w.provision(w.claim("x"))
    w.cluster.delete(workloads.PVC, "x", namespace="app")
    spec = workloads.VolumeSpec(GiB, driver="other.csi.example.com", volume_handle=lv.status.volume_id)
    w.cluster.create(workloads.PersistentVolume(resources.Meta("pv-other"), spec))
    w.clock.advance(GRACE)
    assert [s.name for s in w.sweeper.sweep()] == [lv.name]


class Counting:
    """A cluster that counts which kinds are listed, and can lose a delete race to another replica."""

    def __init__(self, inner: kube_memory.InMemoryCluster, *, lose_delete: bool = False) -> None:
        self.inner = inner
        self.listed: list[str] = []
        self.lose_delete = lose_delete

    def list_of(
        self, kind: resources.Kind[Any], *, namespace: str | None = None, match: Mapping[str, str] | None = None
    ) -> list[Any]:
        self.listed.append(kind.name)
        return self.inner.list_of(kind, namespace=namespace, match=match)

    def delete(self, kind: resources.Kind[Any], name: str, *, namespace: str = "") -> None:
        if self.lose_delete:
            self.inner.delete(kind, name, namespace=namespace)  # the other replica's
            lv = self.inner.get(kind, name)
            assert lv is not None and constants.LOGICAL_VOLUME_FINALIZER in lv.meta.finalizers
            self.inner.update(resources.evolve(lv, meta=lv.meta.without_finalizer(constants.LOGICAL_VOLUME_FINALIZER)))
            raise errors.NotFound(name)
        self.inner.delete(kind, name, namespace=namespace)


def test_a_volume_handed_to_a_provisioner_is_kept_when_its_claim_and_pv_are_gone() -> None:
    """Reclaim policy Retain, then the Released PV deleted by hand to keep the data (or re-created later):
    CreateVolume answered with it, so it is the operator's, never the sweep's."""
    w = World()
    lv = w.provision(w.claim("kept"), answered=True)
    w.ctl.answered(lv.name)  # idempotent
    w.cluster.delete(workloads.PVC, "kept", namespace="app")
    w.clock.advance(10 * GRACE)
    assert w.sweeper.sweep() == []
    assert w.lvs() == [lv.status.volume_id]


def test_a_volume_made_before_the_mark_existed_is_kept() -> None:
    w = World()
    lv = w.provision(w.claim("old"))
    w.cluster.update(resources.evolve(lv, meta=lv.meta.annotated({constants.UNANSWERED_ANNOTATION: None})))
    w.cluster.delete(workloads.PVC, "old", namespace="app")
    w.clock.advance(GRACE)
    assert w.sweeper.sweep() == []


def test_with_no_unanswered_old_volume_no_claims_or_pvs_are_listed() -> None:
    w = World()
    w.provision(w.claim("bound"), answered=True)
    w.clock.advance(GRACE)  # old, but answered
    w.provision(w.claim("young"))  # unanswered, but young
    counting = Counting(w.cluster)
    sweeper = cleanup.StrandedVolumeSweeper(cluster=counting, clock=w.clock, grace=GRACE)  # type: ignore[arg-type]
    assert sweeper.sweep() == []
    assert counting.listed == ["LogicalVolume"]


def test_a_volume_the_other_replica_swept_first_is_not_counted_twice() -> None:
    w = World()
    w.provision(w.claim("x"))
    w.cluster.delete(workloads.PVC, "x", namespace="app")
    w.clock.advance(GRACE)
    racing = Counting(w.cluster, lose_delete=True)
    sweeper = cleanup.StrandedVolumeSweeper(cluster=racing, clock=w.clock, grace=GRACE)  # type: ignore[arg-type]
    assert sweeper.sweep() == []
    assert w.cluster.list_of(resources.LOGICAL_VOLUME) == []


def test_claim_uid_is_read_from_external_provisioners_volume_names() -> None:
    def named(name: str) -> resources.LogicalVolume:
        return resources.LogicalVolume(resources.Meta(name), resources.LogicalVolumeSpec(name, "n1", GiB))

    uid = "0b3a2c1d-1e2f-4a5b-8c9d-0123456789ab"
    assert cleanup.claim_uid_of(named(f"pvc-{uid}")) == uid
    assert cleanup.claim_uid_of(named(f"data-{uid}")) == uid  # --volume-name-prefix data
    assert cleanup.claim_uid_of(named("pvc-0b3a2c1d")) is None  # --volume-name-uuid-length 8: unknowable
    assert cleanup.claim_uid_of(named(f"pvc-{uid.upper()}")) is None  # not a Kubernetes UID
    assert cleanup.claim_uid_of(named("sanity-volume")) is None
