"""The extender process's state: one ``SchedulerService`` and the lock that serialises its callers.

Built by ``topolvm.extender.app``; used by ``verbs`` (requests, on the event loop), by the expiry timer (also on
the event loop) and by ``kube``'s watch threads. One instance per process: the reservation ledger must see
every request, so the extender runs one worker, and only the kube-scheduler leader's extender gets requests.
"""

from __future__ import annotations

import threading

from topolvm import ports
from topolvm.clock import MonotonicClock
from topolvm.core import reservations
from topolvm.extender import config, metrics
from topolvm.services import scheduler


class Holder:
    def __init__(self, service: scheduler.SchedulerService) -> None:
        self.service = service
        self.lock = threading.RLock()


def build(
    cfg: config.Config,
    stats: metrics.Metrics,
    *,
    clock: ports.Clock | None = None,
    watched_nodes: bool = False,
    watched_pods: bool = False,
    limits: scheduler.Limits | None = None,
) -> Holder:
    """A holder whose service reports reservation starts and ends to ``stats``."""
    starts = {via: stats.reservation_starts.labels(via.value) for via in scheduler.Via}
    ends = {reason: stats.reservation_ends.labels(reason.value) for reason in reservations.EndReason}

    def started(reservation: reservations.Reservation, via: scheduler.Via) -> None:
        starts[via].inc()

    def ended(reservation: reservations.Reservation, reason: reservations.EndReason) -> None:
        ends[reason].inc()

    service = scheduler.SchedulerService(
        cfg.policy,
        cfg.reservation_ttl,
        clock or MonotonicClock(),
        limits=limits or scheduler.Limits(),
        watched_nodes=watched_nodes,
        watched_pods=watched_pods,
        on_start=started,
        on_end=ended,
    )
    return Holder(service)
