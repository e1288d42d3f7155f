"""Prometheus metrics of the extender, on their own registry so tests and several apps do not collide.

Updated by ``topolvm.extender.verbs``, ``app`` and the service's reservation listeners (``holder.build``);
the gauges are set from the service when ``/metrics`` is scraped, so they are exact at that moment.
"""

from __future__ import annotations

import prometheus_client

from topolvm.services import scheduler

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        self.registry = registry or prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "topolvm_extender_requests_total",
            "Extender HTTP requests by verb and status code.",
            ["verb", "code"],
            registry=self.registry,
        )
        self.duration = prometheus_client.Histogram(
            "topolvm_extender_request_duration_seconds",
            "Time to answer an extender verb, body read included.",
            ["verb"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.nodes = prometheus_client.Histogram(
            "topolvm_extender_request_nodes",
            "Nodes per extender request.",
            ["verb"],
            buckets=(10, 100, 500, 1000, 2500, 5000, 10000),
            registry=self.registry,
        )
        self.failed_nodes = prometheus_client.Counter(
            "topolvm_extender_failed_nodes_total",
            "Nodes the filter rejected, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.reservations = prometheus_client.Gauge(
            "topolvm_extender_reservations",
            "Capacity reservations held for pods being scheduled (upstream #117), one per pod, node and device "
            "class: a pod whose top score several nodes share is held on each of them.",
            registry=self.registry,
        )
        self.reserved_bytes = prometheus_client.Gauge(
            "topolvm_extender_reserved_bytes",
            "Bytes held back on nodes by reservations, summed over nodes: a pod held on several tied nodes counts "
            "on each, so this can exceed what the pods request.",
            registry=self.registry,
        )
        self.reserving_pods = prometheus_client.Gauge(
            "topolvm_extender_reserving_pods",
            "Pods holding at least one reservation.",
            registry=self.registry,
        )
        self.reservation_starts = prometheus_client.Counter(
            "topolvm_extender_reservation_starts_total",
            "Reservations taken, by what took them (filter: one node passed; prioritize; selected: a claim's "
            "selected-node).",
            ["via"],
            registry=self.registry,
        )
        self.reservation_ends = prometheus_client.Counter(
            "topolvm_extender_reservation_ends_total",
            "Reservations ended, by reason (bound, claims-bound: every claim of the pod has a volume, deleted, "
            "provisioned: an annotation drop without --watch-pods, rehomed, not-chosen: on a tied node "
            "kube-scheduler did not pick, rescheduled, expired, node-gone).",
            ["reason"],
            registry=self.registry,
        )
        self.cached_nodes = prometheus_client.Gauge(
            "topolvm_extender_cached_nodes",
            "Nodes whose capacity annotations the extender knows (for nodeCacheCapable requests).",
            registry=self.registry,
        )
        self.tracked_pods = prometheus_client.Gauge(
            "topolvm_extender_tracked_pods",
            "Pods seen in requests and not yet bound or deleted (their claims map selected-node events to them).",
            registry=self.registry,
        )
        self.node_items = prometheus_client.Counter(
            "topolvm_extender_node_items_total",
            "Nodes of full-Node filter requests, by whether the previous request's decode was reused (same bytes "
            "at the same position) or the item was decoded.",
            ["decode"],
            registry=self.registry,
        )

    def observe(self, service: scheduler.SchedulerService) -> None:
        """Set the gauges from the service (the caller holds its lock)."""
        self.reservations.set(len(service.ledger))
        self.reserved_bytes.set(service.ledger.reserved_bytes())
        self.reserving_pods.set(service.ledger.pod_count())
        self.cached_nodes.set(len(service.index))
        self.tracked_pods.set(service.tracked_pods())

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
