"""The simulator's extender adapter follows topolvm-scheduler's watches (``--watch-nodes --watch-pods``): a
pending pod's hold ends on evidence about that pod (its claim gets a volume), not on a drop of the node's
annotation, which another volume's expansion causes as well."""

from __future__ import annotations

import dataclasses

from simulator import adapters, engine, scenario, world
from topolvm import constants
from topolvm.core import resources, workloads

GiB = 1 << 30
SCENARIO = {
    "name": "one",
    "seed": 1,
    "duration": "1h",
    "latencies": {"watch": "0s", "reconcile": "0s", "lvm-command": "0s", "scheduling-cycle": "0s", "provisioner": "0s"},
    "cluster": {
        "node-pools": [
            {
                "name": "n",
                "count": 1,
                "cpu": "8",
                "memory": "32Gi",
                "volume-groups": [{"name": "vg", "disks": ["700Gi"]}],
                "lvmd": {"device-classes": [{"name": "ssd", "volume-group": "vg", "default": True, "spare-gb": 0}]},
            }
        ],
        "storage-classes": [{"name": "sc", "device-class": "ssd"}],
    },
}


def test_a_hold_ends_when_the_claim_has_a_volume_not_when_the_annotation_drops() -> None:
    loaded = scenario.parse(SCENARIO, "one.yaml")
    env = engine.SimEnvironment()
    w = world.World(loaded, env)
    (node,) = w.add_nodes("n", 1)
    ext = adapters.SimExtender(w, loaded.spec.scheduler.extender)
    env.run(until=1)
    claim = w.cluster.create(
        workloads.PersistentVolumeClaim(
            resources.Meta(name="data-a", namespace=world.NAMESPACE),
            workloads.ClaimSpec(storage_class_name="sc", request_bytes=300 * GiB),
        )
    )
    pod = workloads.Pod(
        resources.Meta(
            name="a", namespace=world.NAMESPACE, annotations={constants.capacity_annotation("ssd"): str(300 * GiB)}
        ),
        workloads.PodSpec(volumes=(workloads.PodVolume("data", claim_name="data-a"),)),
    )
    assert ext.filter(w.cluster.create(pod), [node.name]).passed == [node.name]
    ledger = ext.service.ledger
    assert ledger.nodes_of(ext.service.pods.by_claim(world.NAMESPACE, "data-a") or "") == (node.name,)

    # Another volume on the node grows by 300 GiB: the node agent republishes 400 GiB.
    current = w.cluster.get(resources.NODE, node.name)
    assert current is not None
    key = constants.capacity_annotation("ssd")
    w.cluster.update(dataclasses.replace(current, meta=current.meta.annotated({key: str(400 * GiB)})))
    env.run(until=2)
    assert len(ledger) == 1

    w.cluster.update(dataclasses.replace(claim, spec=dataclasses.replace(claim.spec, volume_name="pv-a")))
    env.run(until=3)
    assert not ledger
