"""A ``SchedulerService`` with a manual clock that records every reservation start and end, for the service's
tests (test_scheduler_service.py, test_scheduler_ties.py, test_scheduler_evidence.py)."""

from __future__ import annotations

import collections

from topolvm import clock
from topolvm.core import reservations, scheduling
from topolvm.services import scheduler

GiB = 1 << 30
TTL = 60.0
Reason = reservations.EndReason


class World:
    def __init__(
        self,
        ttl: float = TTL,
        limits: scheduler.Limits | None = None,
        watched: bool = False,
        *,
        tie_break: scheduling.TieBreak = scheduling.TieBreak.EXTENDER,
        watched_pods: bool = False,
    ) -> None:
        self.clock = clock.ManualClock(1000.0)
        self.starts: list[tuple[str, str, scheduler.Via]] = []
        self.ends: collections.Counter[Reason] = collections.Counter()
        self.service = scheduler.SchedulerService(
            scheduling.Policy(tie_break=tie_break),
            ttl,
            self.clock,
            limits=limits or scheduler.Limits(),
            watched_nodes=watched,
            watched_pods=watched_pods,
            on_start=lambda r, via: self.starts.append((r.pod, r.node, via)),
            on_end=lambda r, reason: self.ends.update([reason]),
        )

    def nodes(self, **gib: float) -> None:
        """kube-scheduler sends these nodes with these annotations (a full-Node request)."""
        names = list(gib)
        self.service.nodes_observed(
            names, [{"capacity.topolvm.io/ssd": str(int(size * GiB))} for size in gib.values()]
        )  # fmt: skip

    def held(self) -> dict[str, str | None]:
        return {r.pod: r.node for r in self.service.ledger.reservations()}

    def held_on(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {}
        for r in self.service.ledger.reservations():
            result.setdefault(r.pod, set()).add(r.node)
        return result


def pod(key: str, gib: float = 3, claims: tuple[str, ...] = ()) -> scheduler.Pod:
    return scheduler.Pod(key, "default", key, {"ssd": int(gib * GiB)}, claims or (f"data-{key}",))
