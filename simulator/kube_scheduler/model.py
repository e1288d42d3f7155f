"""KubeScheduler: one kube-scheduler v1.37 scheduling cycle per call, as pure decision code.

The simulator's driver owns time, queues, binding and retries; it calls ``schedule`` once per attempt and reports
back what the cluster did (``add_pod`` when it assumes or binds, ``set_capacity`` when CSIStorageCapacity
changes). The cycle follows pkg/scheduler/schedule_one.go (v1.37.2):

1. PreFilter: a pod with spec.nodeName is restricted to that node (NodeName); an unbound claim of an Immediate
   class makes the pod unschedulable outright (VolumeBinding).
2. Filter, from the rotating ``next_start_index`` over the snapshot's node list, until
   ``numFeasibleNodesToFind`` feasible nodes are found; the index then advances by the nodes processed. The
   walk is modelled sequentially: upstream's 16 workers check chunks in parallel and may process a few more.
3. Extender filter (when the pod requests one of its managed resources) on the feasible list.
4. One feasible node: chosen without scoring. Several: score plugins + extender prioritize x weight x 10.
5. selectHost: the top total; ties broken by the extender's random Randomizer, or by the heap's shape.

Not modelled: preemption (PostFilter), nominated nodes, OpportunisticBatching hints (off when an extender is
configured; pods with distinct claims never share a signature), inter-pod affinity, topology spread, image
locality, DRA, ports, volume limits, multiple profiles.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from simulator.kube_scheduler import api, filters, nodes, podinfo, scores
from topolvm.core import resources, workloads

Slots = npt.NDArray[np.intp]


class KubeScheduler:
    def __init__(self, config: api.SchedulerConfig, extender: api.Extender | None, rng: random.Random) -> None:
        self.config = config
        self.extender = extender
        self.rng = rng
        self.table = nodes.NodeTable()
        self.capacity = nodes.CapacityStore(self.table)
        self.static = filters.StaticCache(self.table)
        self.next_start_index = 0

    # --- the cache -------------------------------------------------------------------------------------------

    def set_node(self, node: resources.Node) -> None:
        existed = node.meta.name in self.table.slot
        slot = self.table.set_node(node)
        if existed:
            self.static.node_updated(slot)

    def remove_node(self, name: str) -> None:
        self.table.remove_node(name)

    def add_pod(self, pod: workloads.Pod, node: str) -> None:
        """Count an assumed or bound pod's requests on ``node`` (replaces an earlier entry of the same pod)."""
        self.table.add_pod(pod.meta.namespace, pod.meta.name, node, podinfo.pod_requests(pod))

    def remove_pod(self, namespace: str, name: str) -> None:
        self.table.remove_pod(namespace, name)

    def set_capacity(
        self, node: str, storage_class: str, capacity_bytes: int | None, maximum_volume_size: int | None = None
    ) -> None:
        """The CSIStorageCapacity of ``storage_class`` on ``node`` (both None: no such object)."""
        self.capacity.set(node, storage_class, capacity_bytes, maximum_volume_size)

    def node_order(self) -> list[str]:
        """The snapshot's node list, as cycles walk it."""
        return [self.table.names[slot] for slot in self.table.order]

    # --- one cycle --------------------------------------------------------------------------------------------

    def schedule(
        self, pod: workloads.Pod, claims: Sequence[api.ClaimView] = (), *, explain: bool = False
    ) -> api.ScheduleResult:
        table = self.table
        n = table.n
        if n == 0:
            return api.ScheduleResult(None, 0, 0, {}, (), api.MESSAGE_NO_NODES, {})
        plan = filters.plan_volumes(list(claims))
        if plan.unbound_immediate:
            return _unschedulable(n, 0, Counter({api.REASON_UNBOUND_IMMEDIATE: n}), api.REASON_UNBOUND_IMMEDIATE)
        req = podinfo.pod_requests(pod)
        entry = self.static.get(podinfo.constraints_of(pod))
        vol = None if plan.empty else filters.volume_masks(table, self.capacity, plan)
        ok = filters.feasible(table, entry, req, vol)

        histogram: Counter[str] = Counter()
        if pod.spec.node_name:
            slot = table.slot.get(pod.spec.node_name)
            candidates = 0 if slot is None else 1
            processed = candidates
            found = np.array([slot] if slot is not None and ok[slot] else [], dtype=np.intp)
            rejected = np.array([slot] if slot is not None and not ok[slot] else [], dtype=np.intp)
            histogram[api.REASON_NODE_NAME_PREFILTER] = n - candidates
        else:
            found, rejected, processed = self._walk(ok)
        histogram.update(filters.reasons(table, entry, req, vol, rejected))
        self.next_start_index = (self.next_start_index + processed) % n

        explicit = len(rejected)
        interested = self.extender is not None and podinfo.requests_resource(
            pod, self.config.extender_managed_resources
        )
        if interested and len(found):
            found, failed = self._extender_filter(pod, found)
            explicit += sum(failed.values())
            histogram.update(failed)
        if len(found) == 0:
            return _unschedulable(n, explicit, histogram)
        names = [table.names[s] for s in found]
        if len(found) == 1:
            return api.ScheduleResult(names[0], 1 + explicit, 1, {}, (names[0],), "", dict(histogram))

        parts = self._score(pod, found, req, entry=entry, plan=plan, interested=interested, names=names)
        totals = np.sum(list(parts.values()), axis=0)
        chosen, tied = scores.select(totals, interested and self.extender is not None, self.rng)
        breakdown = (
            {name: {plugin: int(v[i]) for plugin, v in parts.items()} for i, name in enumerate(names)}
            if explain
            else {}
        )
        return api.ScheduleResult(
            node=names[chosen],
            evaluated=len(found) + explicit,
            feasible=len(found),
            scores=dict(zip(names, totals.tolist(), strict=True)),
            tied=tuple(names[i] for i in tied),
            message="",
            failures=dict(histogram),
            breakdown=breakdown,
        )

    def _walk(self, ok: nodes.Bools) -> tuple[Slots, Slots, int]:
        """findNodesThatPassFilters: from next_start_index, stop at the feasible node that would exceed the
        target (it is neither counted nor recorded). Returns (feasible slots in walk order, rejected slots,
        nodes processed)."""
        table, n, start = self.table, self.table.n, self.next_start_index
        order = table.order
        in_order = ok if table.order_is_identity else ok[order]
        positions = np.flatnonzero(in_order)
        split = int(np.searchsorted(positions, start))
        relative = np.concatenate((positions[split:] - start, positions[:split] + (n - start)))
        want = api.num_feasible_nodes_to_find(self.config.percentage_of_nodes_to_score, n)
        if len(relative) > want:
            processed = int(relative[want])
            relative = relative[:want]
        else:
            processed = n
        found = order[(relative + start) % n]
        if processed == n:
            rejected_positions = np.flatnonzero(~in_order)
        else:
            window = np.arange(start, start + processed) % n
            rejected_positions = window[~in_order[window]]
        return found, order[rejected_positions], processed

    def _extender_filter(self, pod: workloads.Pod, found: Slots) -> tuple[Slots, Counter[str]]:
        assert self.extender is not None
        table = self.table
        result = self.extender.filter(pod, [table.names[s] for s in found])
        failed: Counter[str] = Counter()
        for name, message in result.failed.items():
            if name not in result.unresolvable:
                failed[message] += 1
        for message in result.unresolvable.values():
            failed[message] += 1
        given = set(found.tolist())
        passed = []
        for name in result.passed:
            slot = table.slot.get(name)
            if slot is None or slot not in given:
                raise ValueError(f"extender claims a filtered node {name!r} which is not found in the input node list")
            passed.append(slot)
        return np.array(passed, dtype=np.intp), failed

    def _score(
        self,
        pod: workloads.Pod,
        found: Slots,
        req: podinfo.Requests,
        *,
        entry: filters.StaticEntry,
        plan: filters.VolumePlan,
        interested: bool,
        names: list[str],
    ) -> dict[str, nodes.Int64s]:
        """Weighted score per plugin for the feasible nodes (prioritizeNodes)."""
        parts = {
            api.TAINT_TOLERATION: scores.taint_toleration(entry.prefer, found) * api.WEIGHT_TAINT_TOLERATION,
            api.NODE_RESOURCES_FIT: scores.least_allocated(self.table, found, req) * api.WEIGHT_NODE_RESOURCES_FIT,
        }
        optional = (
            (api.NODE_AFFINITY, scores.node_affinity(entry.affinity, found), api.WEIGHT_NODE_AFFINITY),
            (
                api.BALANCED_ALLOCATION,
                scores.balanced_allocation(self.table, found, req),
                api.WEIGHT_BALANCED_ALLOCATION,
            ),
            (
                api.VOLUME_BINDING,
                scores.volume_binding(self.capacity, found, plan.tracked, self.config),
                api.WEIGHT_VOLUME_BINDING,
            ),
        )
        for plugin, values, weight in optional:
            if values is not None:
                parts[plugin] = values * weight
        if interested and self.extender is not None:
            prioritized = np.asarray(self.extender.prioritize(pod, names), dtype=np.int64)
            parts[api.EXTENDER] = (
                prioritized * self.config.extender_weight * (api.MAX_NODE_SCORE // api.MAX_EXTENDER_PRIORITY)
            )
        return parts


def _unschedulable(n: int, explicit: int, histogram: Counter[str], prefilter: str = "") -> api.ScheduleResult:
    message = api.fit_error_message(n, histogram, prefilter)
    return api.ScheduleResult(None, explicit, 0, {}, (), message, dict(histogram))
