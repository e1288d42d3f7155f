"""A scripted scheduler extender: fixed verdicts and scores per node, and a record of every call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from simulator.kube_scheduler import api
from topolvm.core import workloads


@dataclass
class FakeExtender:
    """Nodes in ``failed``/``unresolvable`` fail with their message; every other node passes, in input order.
    ``scores`` gives prioritize's answer per node (``default_score`` for the rest)."""

    failed: Mapping[str, str] = field(default_factory=dict)
    unresolvable: Mapping[str, str] = field(default_factory=dict)
    scores: Mapping[str, int] = field(default_factory=dict)
    default_score: int = 0
    filter_calls: list[tuple[str, ...]] = field(default_factory=list)
    prioritize_calls: list[tuple[str, ...]] = field(default_factory=list)

    def filter(self, pod: workloads.Pod, nodes: Sequence[str]) -> api.FilterResult:
        self.filter_calls.append(tuple(nodes))
        rejected = {**self.failed, **self.unresolvable}
        return api.FilterResult(
            passed=[n for n in nodes if n not in rejected],
            failed={n: m for n, m in self.failed.items() if n in nodes},
            unresolvable={n: m for n, m in self.unresolvable.items() if n in nodes},
        )

    def prioritize(self, pod: workloads.Pod, nodes: Sequence[str]) -> list[int]:
        self.prioritize_calls.append(tuple(nodes))
        return [self.scores.get(n, self.default_score) for n in nodes]
