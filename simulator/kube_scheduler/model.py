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
from collections.abc import Iterator, Mapping, Sequence

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
        self._requests_of: dict[str, podinfo.Requests] = {}  # pod UID -> its requests, parsed once

    # --- the cache -------------------------------------------------------------------------------------------

    def set_node(self, node: resources.Node) -> None:
        slot = self.table.slot.get(node.meta.name)
        if slot is not None and _same_for_scheduling(self.table.nodes[slot], node):
            # Only what no filter or score reads changed (TopoLVM's capacity annotations, on every volume): keep
            # the newest copy, leave the columns and the filter cache as they are.
            self.table.nodes[slot] = node
            return
        existed = slot is not None
        slot = self.table.set_node(node)
        if existed:
            self.static.node_updated(slot)

    def remove_node(self, name: str) -> None:
        self.table.remove_node(name)

    def add_pod(self, pod: workloads.Pod, node: str) -> None:
        """Count an assumed or bound pod's requests on ``node`` (replaces an earlier entry of the same pod)."""
        self.table.add_pod(pod.meta.namespace, pod.meta.name, node, self._requests(pod))

    def remove_pod(self, namespace: str, name: str) -> None:
        self.table.remove_pod(namespace, name)

    def set_capacity(
        self, node: str, storage_class: str, capacity_bytes: int | None, maximum_volume_size: int | None = None
    ) -> None:
        """The CSIStorageCapacity of ``storage_class`` on ``node`` (both None: no such object)."""
        self.capacity.set(node, storage_class, capacity_bytes, maximum_volume_size)

    def cannot_fit_resources(self, pod: workloads.Pod) -> bool:
        """True when no node has as much free cpu, memory or pod room as ``pod`` needs (NodeResourcesFit could
        pass nowhere): a necessary condition checked in O(1) between changes, for callers that skip retries."""
        need = self._requests(pod)
        return (
            self.table.most_free("free_cpu") < need.cpu
            or self.table.most_free("free_memory") < need.memory
            or self.table.most_free("free_pods") < 1
        )

    def _requests(self, pod: workloads.Pod) -> podinfo.Requests:
        """A pod's requests, parsed once per pod (a pod's spec does not change)."""
        found = self._requests_of.get(pod.meta.uid) if pod.meta.uid else None
        if found is None:
            found = podinfo.pod_requests(pod)
            if pod.meta.uid:
                if len(self._requests_of) > 200_000:
                    self._requests_of.clear()
                self._requests_of[pod.meta.uid] = found
        return found

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
        plan = filters.plan_volumes(claims)
        if plan.unbound_immediate:
            return _unschedulable(n, 0, Counter({api.REASON_UNBOUND_IMMEDIATE: n}), api.REASON_UNBOUND_IMMEDIATE)
        req = self._requests(pod)
        entry = self.static.get(podinfo.constraints_of(pod))
        evaluator = filters.Evaluator(table, self.capacity, entry, req, plan)

        histogram: Counter[str] = Counter()
        if pod.spec.node_name:
            slot = table.slot.get(pod.spec.node_name)
            candidates = np.array([] if slot is None else [slot], dtype=np.intp)
            passed = evaluator.ok(candidates)
            found, rejected, processed = candidates[passed], candidates[~passed], len(candidates)
            histogram[api.REASON_NODE_NAME_PREFILTER] = n - len(candidates)
        else:
            found, rejected, processed = self._walk(evaluator)
        histogram.update(evaluator.reasons(rejected))
        self.next_start_index = (self.next_start_index + processed) % n

        explicit = len(rejected)
        interested = self.extender is not None and podinfo.requests_resource(
            pod, self.config.extender_managed_resources
        )
        names: list[str] | None = None
        extender_rejected = False
        if interested and len(found):
            before = len(found)
            found, failed, names = self._extender_filter(pod, found)
            explicit += sum(failed.values())
            histogram.update(failed)
            extender_rejected = len(found) != before
        if len(found) == 0:
            return _unschedulable(n, explicit, histogram, extender_rejected=extender_rejected)
        if names is None:
            names = table.name_array[found].tolist()
        if len(found) == 1:
            return api.ScheduleResult(names[0], 1 + explicit, 1, {}, (names[0],), "", dict(histogram))

        parts = self._score(pod, found, req, entry=entry, plan=plan, interested=interested, names=names)
        totals = sum(parts.values(), np.zeros(len(found), dtype=np.int64))
        chosen, tied = scores.select(totals, interested, self.rng)
        breakdown = (
            {name: {plugin: int(v[i]) for plugin, v in parts.items()} for i, name in enumerate(names)}
            if explain
            else {}
        )
        return api.ScheduleResult(
            node=names[chosen],
            evaluated=len(found) + explicit,
            feasible=len(found),
            scores=_Scores(names, totals),
            tied=tuple(table.name_array[found[tied]].tolist()),
            message="",
            failures=dict(histogram),
            breakdown=breakdown,
        )

    def _walk(self, evaluator: filters.Evaluator) -> tuple[Slots, Slots, int]:
        """findNodesThatPassFilters: from next_start_index, check nodes in walk order until the feasible node that
        would exceed the target, which is neither counted nor recorded. Nodes are checked a chunk at a time, so a
        cycle costs in proportion to the nodes it reaches. Returns (feasible slots in walk order, rejected slots,
        nodes processed)."""
        table, n, start = self.table, self.table.n, self.next_start_index
        walk_order = table.order  # built first: it also tells whether the walk is plain slot order
        order = None if table.order_is_identity else walk_order
        want = api.num_feasible_nodes_to_find(self.config.percentage_of_nodes_to_score, n)
        found: list[Slots] = []
        rejected: list[Slots] = []
        count, position, chunk = 0, 0, want + want // 4 + 16
        processed = n
        while position < n:
            end = min(n, position + chunk)
            slots = np.arange(start + position, start + end)
            slots[slots >= n] -= n
            if order is not None:
                slots = order[slots]
            ok = evaluator.ok(slots)
            good = slots[ok]
            if count + len(good) > want:
                stop = int(np.flatnonzero(ok)[want - count])  # index in this chunk of the first node too many
                found.append(good[: want - count])
                rejected.append(slots[:stop][~ok[:stop]])
                processed = position + stop
                break
            found.append(good)
            rejected.append(slots[~ok])
            count += len(good)
            position, chunk = end, 2 * chunk
        return np.concatenate(found), np.concatenate(rejected), processed

    def _extender_filter(self, pod: workloads.Pod, found: Slots) -> tuple[Slots, Counter[str], list[str] | None]:
        """The nodes the extender passed, its failure reasons, and the passed nodes' names when they are all of
        ``found`` (the usual answer; None otherwise)."""
        assert self.extender is not None
        table = self.table
        names = table.name_array[found].tolist()
        result = self.extender.filter(pod, names)
        failed: Counter[str] = Counter()
        for name, message in result.failed.items():
            if name not in result.unresolvable:
                failed[message] += 1
        for message in result.unresolvable.values():
            failed[message] += 1
        if result.passed == names:  # the usual answer: everything passed, in the order given
            return found, failed, names
        given = set(names)
        for name in result.passed:
            if name not in given:
                raise ValueError(f"extender claims a filtered node {name!r} which is not found in the input node list")
        passed = np.fromiter((table.slot[name] for name in result.passed), dtype=np.intp, count=len(result.passed))
        return passed, failed, None

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


def _same_for_scheduling(old: resources.Node, new: resources.Node) -> bool:
    """Whether two copies of a Node agree on all the model reads of it: labels, spec (taints, unschedulable) and
    status (allocatable); annotations and the resourceVersion are never read."""
    return (
        (old.spec is new.spec or old.spec == new.spec)
        and (old.status is new.status or old.status == new.status)
        and (old.meta.labels is new.meta.labels or old.meta.labels == new.meta.labels)
    )


class _Scores(Mapping[str, int]):
    """ScheduleResult.scores, turned into a dict only when someone reads it (most callers only want the node)."""

    def __init__(self, names: list[str], totals: nodes.Int64s) -> None:
        self._names, self._totals = names, totals
        self._dict: dict[str, int] | None = None

    def _get(self) -> dict[str, int]:
        if self._dict is None:
            self._dict = dict(zip(self._names, self._totals.tolist(), strict=True))
        return self._dict

    def __getitem__(self, name: str) -> int:
        return self._get()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return repr(self._get())


def _unschedulable(
    n: int, explicit: int, histogram: Counter[str], prefilter: str = "", *, extender_rejected: bool = False
) -> api.ScheduleResult:
    message = api.fit_error_message(n, histogram, prefilter)
    rejectors = {api.PLUGIN_OF_REASON[r] for r in histogram if r in api.PLUGIN_OF_REASON}
    if extender_rejected:
        rejectors.add(api.EXTENDER)
    return api.ScheduleResult(None, explicit, 0, {}, (), message, dict(histogram), rejectors=frozenset(rejectors))
