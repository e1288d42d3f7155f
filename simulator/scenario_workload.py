"""Scenario files, the workload half: pod streams and StatefulSet scale-ups with their claims (sizes, lifetimes,
expansions, snapshots), and the node and disk events of a run; plus the strict base every scenario section uses.

``simulator.scenario`` assembles these with the cluster and scheduler sections into a whole ``Scenario``; errors
name the key as there (``at `$.workloads[0].claims[0].size```).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from simulator import checks, units

Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class Strict(msgspec.Struct, forbid_unknown_fields=True, rename="kebab", kw_only=True):
    """Every section: unknown keys refused, keys spelled in kebab-case, fields given by name."""


class SizeSpec(Strict):
    """One of: fixed; choice with optional weights; lognormal (median, sigma); uniform (min, max)."""

    fixed: str | None = None
    choice: list[str] | None = None
    weights: list[Annotated[float, msgspec.Meta(gt=0)]] | None = None
    lognormal_median: str | None = None
    sigma: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    min: str | None = None
    max: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("fixed", "choice", "lognormal_median") if getattr(self, k) is not None]
        if len(given) != 1 and not (not given and self.min is not None and self.max is not None):
            raise ValueError("a size needs exactly one of fixed, choice, lognormal-median, or both min and max")
        for key in ("fixed", "lognormal_median", "min", "max"):
            if getattr(self, key) is not None:
                checks.check(units.size, getattr(self, key), key.replace("_", "-"))
        for item in self.choice or ():
            checks.check(units.size, item, "choice")
        if self.weights is not None and len(self.weights) != len(self.choice or ()):
            raise ValueError("weights: one weight per choice")
        for key in ("fixed", "lognormal_median"):
            value = getattr(self, key)
            if value is not None and units.size(value) <= 0:
                raise ValueError(f"{key.replace('_', '-')}: a size must be more than 0")
        if self.min is not None and self.max is not None and units.size(self.min) > units.size(self.max):
            raise ValueError(f"min {self.min!r} is more than max {self.max!r}")
        if self.max is not None and units.size(self.max) <= 0:
            raise ValueError("max: a size must be more than 0")


class DurationDist(Strict):
    """fixed, or exponential with a mean; ``forever`` never ends."""

    fixed: str | None = None
    exponential_mean: str | None = None
    forever: bool = False

    def __post_init__(self) -> None:
        given = [k for k in ("fixed", "exponential_mean") if getattr(self, k) is not None] + (
            ["forever"] if self.forever else []
        )
        if len(given) != 1:
            raise ValueError("a lifetime needs exactly one of fixed, exponential-mean, forever")
        for key in ("fixed", "exponential_mean"):
            if getattr(self, key) is not None:
                checks.check(units.duration, getattr(self, key), key.replace("_", "-"))


class ClaimTemplate(Strict):
    storage_class: str
    size: SizeSpec


class ExpansionSpec(Strict):
    probability: Fraction
    after: DurationDist
    factor: Annotated[float, msgspec.Meta(gt=1.0)] = 1.5


class SnapshotSpec(Strict):
    every: str
    keep: Positive = 1

    def __post_init__(self) -> None:
        checks.check(checks.positive_duration, self.every, "every")


class WorkloadSpec(Strict):
    """A stream of pods (``rate``, Poisson arrivals) or one StatefulSet scale-up (``replicas`` at ``start``)."""

    name: str
    claims: list[ClaimTemplate]
    rate: str | None = None
    replicas: NonNegative | None = None
    start: str = "0s"
    stop: str | None = None
    lifetime: DurationDist = msgspec.field(default_factory=lambda: DurationDist(forever=True))
    cpu: str = "500m"
    memory: str = "1Gi"
    expansion: ExpansionSpec | None = None
    snapshots: SnapshotSpec | None = None

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.replicas is None):
            raise ValueError(f"workload {self.name!r}: give either rate (a stream) or replicas (a StatefulSet)")
        if self.rate is not None:
            checks.check(checks.positive_rate, self.rate, "rate")
        checks.check(units.duration, self.start, "start")
        if self.stop is not None:
            checks.check(units.duration, self.stop, "stop")
        checks.check(checks.cpu, self.cpu, "cpu")
        checks.check(units.size, self.memory, "memory")
        if not self.claims:
            raise ValueError(f"workload {self.name!r}: claims: at least one claim per pod")


class NodeEvent(Strict):
    at: str
    pool: str
    action: Literal["add", "fail", "drain"]
    count: Positive = 1

    def __post_init__(self) -> None:
        checks.check(units.duration, self.at, "at")


class DiskEvent(Strict):
    at: str
    pool: str
    volume_group: str
    size: str

    def __post_init__(self) -> None:
        checks.check(units.duration, self.at, "at")
        checks.check(units.size, self.size, "size")
