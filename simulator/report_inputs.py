"""The scenario's inputs as a report restates them: seed and duration, node pools and their shapes (disks, thin
pools, lvmd device classes), storage classes, the scheduler's and the extender's policies, latencies, workloads
and events — so a report read on its own says what was simulated.

Called by ``simulator.report`` with ``run.Result.inputs`` (the scenario as plain data, its YAML keys); every
text goes through the page's escaping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Inputs = Mapping[str, Any]


class Page(Protocol):
    def add(self, tag: str, text: str, **attrs: str) -> None: ...

    def raw(self, markup: str) -> None: ...

    def table(self, header: Sequence[str], rows: Any, *, marked: int | None = None) -> None: ...


def flat(value: Any) -> str:
    """A nested value on one line: ``key=value`` pairs, lists joined with ``; ``."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={flat(v)}" for k, v in value.items() if v not in (None, [], {}))
    if isinstance(value, list):
        return "; ".join(flat(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def _device_classes(pool: Inputs) -> str:
    classes = pool.get("lvmd", {}).get("device-classes", [])
    out = []
    for dc in classes:
        details = {k: v for k, v in dc.items() if k not in ("name",)}
        out.append(f"{dc.get('name', '?')} ({flat(details)})")
    return "; ".join(out)


def section(page: Page, inputs: Inputs) -> None:
    page.raw('<section id="scenario">')
    page.add("h2", "Scenario")
    page.add(
        "p",
        f"seed {inputs.get('seed')}, simulated {inputs.get('duration')}, sampled every "
        f"{inputs.get('sample-interval')}" + (f"; trace replayed: {inputs['trace']}" if inputs.get("trace") else ""),
        class_="meta",
    )
    cluster = inputs.get("cluster", {})
    page.add("h3", "Nodes")
    page.table(
        (
            "pool",
            "nodes",
            "cpu",
            "memory",
            "max pods",
            "volume groups",
            "thin pools",
            "device classes",
            "labels, taints",
        ),
        [
            (
                p.get("name"),
                p.get("count"),
                p.get("cpu"),
                p.get("memory"),
                p.get("max-pods"),
                "; ".join(f"{vg['name']}: {', '.join(vg['disks'])}" for vg in p.get("volume-groups", [])),
                flat(p.get("thin-pools", [])),
                _device_classes(p),
                flat({"labels": p.get("labels"), "taints": p.get("taints")}),
            )
            for p in cluster.get("node-pools", [])
        ],
    )
    page.add("h3", "Storage classes")
    page.table(
        ("storage class", "device class", "binding", "fstype", "expansion"),
        [
            (
                sc.get("name"),
                sc.get("device-class") or "(default)",
                sc.get("binding-mode"),
                sc.get("fstype"),
                sc.get("allow-expansion"),
            )
            for sc in cluster.get("storage-classes", [])
        ],
    )
    page.add("h3", "Policies")
    scheduler = dict(inputs.get("scheduler", {}))
    extender = scheduler.pop("extender", {})
    rows = [(f"scheduler {k}", flat(v)) for k, v in scheduler.items()]
    rows += [(f"extender {k}", flat(v) or "—") for k, v in extender.items()]
    rows += [(f"latency {k}", flat(v)) for k, v in inputs.get("latencies", {}).items()]
    page.table(("policy", "value"), rows)
    page.add("h3", "Workload")
    workloads = inputs.get("workloads", [])
    if workloads:
        page.table(
            ("workload", "arrivals", "lifetime", "cpu, memory", "claims", "expansion, snapshots"),
            [
                (
                    w.get("name"),
                    _arrivals(w),
                    flat(w.get("lifetime")),
                    f"{w.get('cpu')}, {w.get('memory')}",
                    "; ".join(f"{c['storage-class']}: {flat(c['size'])}" for c in w.get("claims", [])),
                    flat({"expansion": w.get("expansion"), "snapshots": w.get("snapshots")}) or "—",
                )
                for w in workloads
            ],
        )
    else:
        page.add("p", "No generated workload (a trace only).")
    events = [("node", flat(e)) for e in inputs.get("node-events", [])]
    events += [("disk", flat(e)) for e in inputs.get("disk-events", [])]
    if events:
        page.add("h3", "Events")
        page.table(("kind", "event"), events)
    page.raw("</section>")


def _arrivals(workload: Inputs) -> str:
    window = f"from {workload.get('start', '0s')}" + (f" to {workload['stop']}" if workload.get("stop") else "")
    if workload.get("replicas") is not None:
        return f"StatefulSet of {workload['replicas']} {window}"
    return f"{workload.get('rate')} {window}"
