"""The filter stage written the straightforward way — one Python pass per node — as the benchmark's baseline
and the tests' cross-check of the vectorised ``filters.feasible``."""

from __future__ import annotations

from collections.abc import Sequence

from simulator.kube_scheduler import api, model, podinfo
from topolvm.core import workloads


def feasible_by_loop(ks: model.KubeScheduler, pod: workloads.Pod, claims: Sequence[api.ClaimView]) -> list[bool]:
    """Per slot: does the node pass NodeUnschedulable, TaintToleration, NodeAffinity, NodeResourcesFit and
    VolumeBinding?"""
    table = ks.table
    req = podinfo.pod_requests(pod)
    constraints = podinfo.constraints_of(pod)
    capacities = {c.storage_class: ks.capacity.columns(c.storage_class)[0] for c in claims}
    alloc_cpu, alloc_memory, alloc_pods = table.ints("alloc_cpu"), table.ints("alloc_memory"), table.ints("alloc_pods")
    req_cpu, req_memory, pods = table.ints("req_cpu"), table.ints("req_memory"), table.ints("pods")
    out = []
    for slot, node in enumerate(table.nodes):
        ok = podinfo.static_code(node, constraints) == podinfo.STATIC_OK
        ok = ok and pods[slot] + 1 <= alloc_pods[slot]
        ok = ok and (req.cpu == 0 or alloc_cpu[slot] - req_cpu[slot] >= req.cpu)
        ok = ok and (req.memory == 0 or alloc_memory[slot] - req_memory[slot] >= req.memory)
        for claim in claims:
            if claim.bound_node is not None:
                ok = ok and table.topology_value(slot) == claim.bound_node
                continue
            if claim.selected_node is not None and claim.selected_node != table.names[slot]:
                ok = False
            if claim.provisioner_has_capacity_tracking:
                ok = ok and capacities[claim.storage_class][slot] >= claim.request_bytes
        out.append(bool(ok))
    return out
