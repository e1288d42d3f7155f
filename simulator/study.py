"""Questions answered with many runs: ``plan`` (the smallest node count of a shape that keeps the failure rate
below a target, with stated confidence over seeds), ``compare`` (variants of a scenario side by side, same
seeds) and ``sweep`` (a parameter grid), on local worker processes or a Dask cluster.

Runs are described by plain data (the scenario as YAML data plus overrides), so they travel to worker processes
and Dask workers unchanged; every run goes through ``run.simulate``.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import yaml

from simulator import run, scenario
from topolvm import errors


@dataclasses.dataclass(frozen=True)
class Job:
    label: str
    data: dict[str, Any]  # the scenario as YAML data, overrides applied
    seed: int


def override(data: Mapping[str, Any], assignment: str) -> dict[str, Any]:
    """``data`` with one ``dotted.path=value`` applied (list items by index; the value is read as YAML)."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise errors.ConfigError(f"override {assignment!r}: expected key.path=value")
    value = yaml.safe_load(raw) if raw else ""
    result = copy.deepcopy(dict(data))
    target: Any = result
    parts = path.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise errors.ConfigError(
                    f"override {assignment!r}: {'.'.join(parts[: i + 1])} is not an item of the list"
                )
            if last:
                target[int(part)] = value
            else:
                target = target[int(part)]
        elif isinstance(target, dict):
            if last:
                target[part] = value
            else:
                if part not in target:
                    target[part] = {}
                target = target[part]
        else:
            raise errors.ConfigError(f"override {assignment!r}: {'.'.join(parts[:i])} is not a mapping or a list")
    return result


def execute(job: Job) -> run.Result:
    """Run one job (in this process, a worker process, or on a Dask worker)."""
    data = dict(job.data, seed=job.seed)
    loaded = scenario.parse(data, job.label)
    result = run.simulate(loaded)
    result.name = job.label
    return result


Runner = Callable[[Sequence[Job]], list[run.Result]]


def local_runner(workers: int | None = None) -> Runner:
    def run_all(jobs: Sequence[Job]) -> list[run.Result]:
        count = min(len(jobs), workers or os.cpu_count() or 1)
        if count <= 1:
            return [execute(job) for job in jobs]
        with concurrent.futures.ProcessPoolExecutor(max_workers=count) as pool:
            return list(pool.map(execute, jobs))

    return run_all


def dask_runner(address: str) -> Runner:
    """Jobs on an existing Dask cluster (``distributed``), e.g. ``tcp://scheduler:8786``."""
    from distributed import Client

    def run_all(jobs: Sequence[Job]) -> list[run.Result]:
        with Client(address) as client:  # type: ignore[no-untyped-call]
            futures = client.map(execute, list(jobs), pure=False)
            results: list[run.Result] = client.gather(futures)
            return results

    return run_all


# --- compare and sweep ---------------------------------------------------------------------------------------


def variants(data: Mapping[str, Any], specs: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """``label:key=value[,key=value...]`` -> (label, data with the overrides)."""
    out = []
    seen: set[str] = set()
    for spec in specs:
        label, sep, assignments = spec.partition(":")
        if not sep or not label:
            raise errors.ConfigError(f"variant {spec!r}: expected label:key.path=value[,key.path=value]")
        if label in seen:
            raise errors.ConfigError(f"variant {spec!r}: the label {label!r} is used twice")
        seen.add(label)
        changed = dict(data)
        for assignment in filter(None, assignments.split(",")):
            changed = override(changed, assignment)
        scenario.parse(changed, f"variant {label}")  # validate now, before any run starts
        out.append((label, changed))
    return out


def grid(data: Mapping[str, Any], axes: Sequence[str]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``key.path=v1,v2`` axes -> every combination: (label, data, {path: value})."""
    parsed: list[tuple[str, list[str]]] = []
    for axis in axes:
        path, sep, raw = axis.partition("=")
        if not sep or not raw:
            raise errors.ConfigError(f"grid axis {axis!r}: expected key.path=v1,v2,...")
        parsed.append((path, raw.split(",")))
    out = []
    for combo in itertools.product(*(values for _, values in parsed)):
        changed = dict(data)
        point: dict[str, Any] = {}
        for (path, _), value in zip(parsed, combo, strict=True):
            changed = override(changed, f"{path}={value}")
            point[path] = yaml.safe_load(value)
        label = ",".join(f"{p}={v}" for p, v in zip((p for p, _ in parsed), combo, strict=True))
        scenario.parse(changed, label)
        out.append((label, changed, point))
    return out


# --- plan -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Point:
    node_count: int
    failure_rates: list[float]
    failed: int
    judged: int
    upper: float  # one-sided upper confidence bound of the failure proportion

    @property
    def mean(self) -> float:
        return sum(self.failure_rates) / len(self.failure_rates) if self.failure_rates else 0.0


def wilson_upper(failed: int, total: int, confidence: float) -> float:
    """One-sided upper bound of a proportion (Wilson score interval)."""
    if total == 0:
        return 1.0
    z = _normal_quantile(confidence)
    p = failed / total
    denominator = 1 + z * z / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return min(1.0, (centre + margin) / denominator)


def judged_needed(target: float, confidence: float, limit: int = 10_000_000) -> int:
    """The fewest judged pods with which a run free of failures can show ``target`` at ``confidence`` (the
    Wilson bound of 0 failures falls with the number of pods)."""
    low, high = 1, limit
    while low < high:
        middle = (low + high) // 2
        if wilson_upper(0, middle, confidence) <= target:
            high = middle
        else:
            low = middle + 1
    return low


def _normal_quantile(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


@dataclasses.dataclass
class Plan:
    pool: str
    target: float
    confidence: float
    seeds: list[int]
    points: list[Point]
    chosen: int | None  # the smallest count meeting the target; None if even the largest does not
    results: dict[int, list[run.Result]]

    def meets(self, point: Point) -> bool:
        return point.upper <= self.target


def plan(
    data: Mapping[str, Any],
    pool: str,
    *,
    low: int,
    high: int,
    target: float,
    seeds: Sequence[int],
    confidence: float = 0.9,
    runner: Runner | None = None,
) -> Plan:
    """Binary search for the smallest ``pool`` count whose failure rate, pooled over ``seeds``, has an upper
    confidence bound at or below ``target`` (assuming more nodes never fail more; every count tried is kept)."""
    index = _pool_index(data, pool)
    runner = runner or local_runner()
    evaluated: dict[int, Point] = {}
    results: dict[int, list[run.Result]] = {}

    def evaluate(count: int) -> Point:
        if count not in evaluated:
            changed = override(data, f"cluster.node-pools.{index}.count={count}")
            jobs = [Job(f"{pool}={count} seed={seed}", changed, seed) for seed in seeds]
            runs = runner(jobs)
            failed = sum(r.summary["pods"]["failed"] for r in runs)
            judged = sum(r.summary["pods"]["judged"] for r in runs)
            rates = [r.summary["pods"]["failure_rate"] for r in runs]
            evaluated[count] = Point(count, rates, failed, judged, wilson_upper(failed, judged, confidence))
            results[count] = runs
        return evaluated[count]

    report = Plan(pool, target, confidence, list(seeds), [], None, results)
    if not report.meets(evaluate(high)):
        report.points = sorted(evaluated.values(), key=lambda p: p.node_count)
        return report
    lo, hi = low, high  # hi meets the target
    while lo < hi:
        mid = (lo + hi) // 2
        if report.meets(evaluate(mid)):
            hi = mid
        else:
            lo = mid + 1
    report.chosen = hi
    report.points = sorted(evaluated.values(), key=lambda p: p.node_count)
    return report


def _pool_index(data: Mapping[str, Any], pool: str) -> int:
    pools = (data.get("cluster") or {}).get("node-pools") or []
    for i, p in enumerate(pools):
        if isinstance(p, dict) and p.get("name") == pool:
            return i
    raise errors.ConfigError(f"no node pool named {pool!r} (pools: {', '.join(str(p.get('name')) for p in pools)})")


def seeds_from(first: int, count: int) -> list[int]:
    return list(range(first, first + count))


def pairs(results: Sequence[run.Result]) -> Iterator[tuple[str, run.Result]]:
    for result in results:
        yield result.name, result
