"""``topolvm-sim``: capacity planning with TopoLVM's own services on a simulated cluster.

topolvm-sim run [SCENARIO.yaml]     one run (no file: the embedded default scenario); writes summary.json,
                                    series.csv, per-node.csv (small clusters) and report.html to --out
topolvm-sim plan SCENARIO --pool P  the smallest count of pool P keeping failures below --target
topolvm-sim compare SCENARIO --variant LABEL:key=value ...   variants side by side, same seeds
topolvm-sim sweep SCENARIO --grid key=v1,v2 ...              a parameter grid (local processes or --dask)
topolvm-sim snapshot [--kubeconfig FILE] [--lvmd-config [POOL=]lvmd.yaml] --out S.yaml   a scenario and trace
                                    that start from a live cluster's nodes, volumes and pending pods
topolvm-sim fidelity --real OUTCOME.json   a real control plane's replay of the fidelity trace against the
                                    simulator's (docs/fidelity.md); exits 1 when they disagree
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import msgspec
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulator import budget, fidelity_cli, outputs, run, scenario, study, trace, units
from topolvm import errors

log = logging.getLogger("topolvm.sim")


def default_scenario_text() -> str:
    return package_files.files("simulator").joinpath("scenarios/default.yaml").read_text()


def load(path: str | None) -> scenario.Loaded:
    if path is None:
        return scenario.loads(default_scenario_text(), "default scenario")
    return scenario.load(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="topolvm-sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="simulate one scenario and report")
    r.add_argument("scenario", nargs="?", help="scenario YAML (default: the embedded default scenario)")
    r.add_argument("--out", default="sim-out", help="directory for the outputs (default: %(default)s)")
    r.add_argument("--seed", type=int, help="override the scenario's seed")
    r.add_argument("--duration", help="override the scenario's duration, e.g. 30d")
    r.add_argument("--trace", help="replay this JSONL trace instead of the scenario's workloads")
    r.add_argument("--record-trace", metavar="FILE", help="write what happened as a JSONL trace")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--no-html", action="store_true", help="skip report.html")
    r.add_argument("--max-memory", help="refuse scenarios estimated above this, e.g. 8Gi (default: 80%% of free)")

    def many(name: str, help_text: str) -> argparse.ArgumentParser:
        m = sub.add_parser(name, help=help_text)
        m.add_argument("scenario", nargs="?", help="scenario YAML (default: the embedded default scenario)")
        m.add_argument("--out", default=f"sim-{name}", help="directory for the outputs (default: %(default)s)")
        m.add_argument(
            "--seeds", type=int, default=3, help="runs per point, seeds from the scenario's (default: %(default)s)"
        )
        m.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
        m.add_argument("--dask", metavar="ADDRESS", help="run on this Dask scheduler (e.g. tcp://host:8786) instead")
        m.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="override a scenario key (repeatable)"
        )
        return m

    pl = many("plan", "the smallest node count of a pool that meets a failure-rate target")
    pl.add_argument("--pool", required=True, help="the node pool (shape) whose count is planned")
    pl.add_argument("--min", type=int, default=1, dest="low", help="smallest count tried (default: %(default)s)")
    pl.add_argument("--max", type=int, required=True, dest="high", help="largest count tried")
    pl.add_argument("--target", type=float, default=0.01, help="largest acceptable failure rate (default: %(default)s)")
    pl.add_argument(
        "--confidence", type=float, default=0.9, help="one-sided confidence of the bound (default: %(default)s)"
    )
    cm = many("compare", "variants of a scenario side by side")
    cm.add_argument("--variant", action="append", required=True, metavar="LABEL:KEY=VALUE[,KEY=VALUE]")
    sw = many("sweep", "a grid of parameters")
    sw.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...")
    sn = sub.add_parser("snapshot", help="a scenario and trace starting from a live cluster's state")
    sn.add_argument(
        "--kubeconfig", help="the cluster (default: $KUBECONFIG's first existing file, else ~/.kube/config)"
    )
    sn.add_argument(
        "--lvmd-config", action="append", default=[], metavar="[POOL=]PATH",
        help="the nodes' lvmd.yaml; POOL=PATH: for nodes whose --pool-label is POOL (repeatable; default: one thick "
        "class per capacity annotation, spare 0)",
    )  # fmt: skip
    sn.add_argument("--pool-label", help="node label whose values name node pools (default: one per node shape)")
    sn.add_argument("--selector", default="", metavar="KEY=VALUE,...", help="only nodes with these labels")
    sn.add_argument("--namespace", action="append", default=[], help="pending pods only from here (repeatable)")
    sn.add_argument("--name", default="snapshot", help="the scenario's name (default: %(default)s)")
    sn.add_argument("--out", help="the scenario YAML (default: stdout)")
    sn.add_argument("--trace-out", help="the trace JSONL (default: next to --out, as <stem>.trace.jsonl)")
    fidelity_cli.add_parser(sub)
    return p


def _with_overrides(loaded: scenario.Loaded, args: argparse.Namespace) -> scenario.Loaded:
    spec = loaded.spec
    changes: dict[str, object] = {}
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.duration is not None:
        units.duration(args.duration)
        changes["duration"] = args.duration
    if not changes:
        return loaded
    return scenario.Loaded(msgspec.structs.replace(spec, **changes), loaded.lvmd)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    loaded = _with_overrides(load(args.scenario), args)
    replay = list(trace.read(args.trace)) if args.trace else None
    own = list(trace.read(loaded.spec.trace)) if replay is None and loaded.spec.trace else None  # read it early
    if replay is not None:
        scenario.check_trace(loaded, replay, args.trace)
    if own is not None and loaded.spec.trace is not None:
        scenario.check_trace(loaded, own, loaded.spec.trace)
    estimate = budget.estimate(loaded, replay if replay is not None else own)
    budget.check(estimate, units.size(args.max_memory) if args.max_memory else None)
    out = Path(args.out)
    if args.no_progress or not console.is_terminal:
        result = run.simulate(loaded, record_trace=bool(args.record_trace), replay=replay)
    else:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[at]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"simulating {loaded.spec.name}", total=1.0, at="")

            def progress(done: float, total: float) -> None:
                bar.update(task, completed=done / total, at=f"t={units.text_of_seconds(done)}")

            result = run.simulate(loaded, progress=progress, record_trace=bool(args.record_trace), replay=replay)
    written = outputs.write(result, out)
    if args.record_trace:
        trace.write(args.record_trace, result.recorded)
        written.append(Path(args.record_trace))
    if not args.no_html:
        from simulator import report

        written.append(report.write_run(result, out / "report.html"))
    outputs.print_summary(result, console)
    console.print(f"simulated in {result.wall_seconds:.1f}s wall; wrote " + ", ".join(str(p) for p in written))
    return 0 if result.ok else 1


def _data(args: argparse.Namespace) -> dict[str, Any]:
    text = default_scenario_text() if args.scenario is None else _read(args.scenario)
    data: dict[str, Any] = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{args.scenario or 'default scenario'}: the top level must be a mapping")
    for assignment in args.set:
        data = study.override(data, assignment)
    if args.scenario is not None and isinstance(data.get("trace"), str):  # workers may run elsewhere
        data["trace"] = scenario.trace_path(data["trace"], Path(args.scenario).parent)
    scenario.parse(data, args.scenario or "default scenario")  # refuse bad input before any run starts
    return data


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise errors.ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _runner(args: argparse.Namespace) -> study.Runner:
    return study.dask_runner(args.dask) if args.dask else study.local_runner(args.workers)


def _seeds(data: dict[str, Any], count: int) -> list[int]:
    if count < 1:
        raise errors.ConfigError("--seeds: at least 1")
    return study.seeds_from(int(data.get("seed", 1)), count)


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    data = _data(args)
    if not 0 < args.target < 1 or not 0.5 <= args.confidence < 1:
        raise errors.ConfigError("--target must be in (0, 1) and --confidence in [0.5, 1)")
    if not 0 <= args.low <= args.high:
        raise errors.ConfigError("--min and --max: need 0 <= min <= max")
    found = study.plan(
        data, args.pool, low=args.low, high=args.high, target=args.target, seeds=_seeds(data, args.seeds),
        confidence=args.confidence, runner=_runner(args),
    )  # fmt: skip
    table = Table(
        title=f"plan for pool {found.pool}: failure rate <= {found.target:.2%} at {found.confidence:.0%} confidence"
    )
    for column in ("nodes", "failure rate per seed", "pooled upper bound", "meets target"):
        table.add_column(column)
    for point in found.points:
        rates = ", ".join(f"{r:.2%}" for r in point.failure_rates)
        table.add_row(str(point.node_count), rates, f"{point.upper:.2%}", "yes" if found.meets(point) else "no")
    console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(_plan_json(found), indent=2, sort_keys=True) + "\n")
    from simulator import report

    curve = [report.PlanPoint(p.node_count, p.failure_rates, p.mean, p.upper, found.meets(p)) for p in found.points]
    shown = [(f"{found.pool}={n}", rs[0]) for n, rs in sorted(found.results.items()) if n == found.chosen]
    path = report.write_plan(curve, found.target, found.chosen, out / "report.html", shown)
    if found.chosen is None:
        top = max(found.points, key=lambda p: p.node_count)
        needed = study.judged_needed(found.target, found.confidence)
        if top.failed == 0 and top.judged < needed:
            console.print(
                f"[red]too few pods to tell[/red]: {top.judged} pods judged over {len(found.seeds)} seeds, none "
                f"failed, but a bound of {found.target:.2%} at {found.confidence:.0%} needs at least {needed}: "
                f"run longer, with more seeds or more workload; wrote {path}"
            )
            return 1
        reasons = collections.Counter[str]()
        for result in found.results.get(top.node_count, []):
            reasons.update(result.summary["scheduling"]["reasons"])
        common = ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
        console.print(f"[red]even {args.high} nodes do not meet the target[/red] (most nodes turned pods down for: "
                      f"{common or 'nothing recorded'}); wrote {path}")  # fmt: skip
        return 1
    console.print(f"smallest count of pool {found.pool} meeting the target: [bold]{found.chosen}[/bold]; wrote {path}")
    return 0


def _plan_json(found: study.Plan) -> dict[str, Any]:
    return {
        "pool": found.pool,
        "target": found.target,
        "confidence": found.confidence,
        "seeds": found.seeds,
        "chosen": found.chosen,
        "points": [
            {"nodes": p.node_count, "failure_rates": p.failure_rates, "failed": p.failed, "judged": p.judged,
             "upper": round(p.upper, 6), "meets_target": found.meets(p)}
            for p in found.points
        ],
    }  # fmt: skip


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    data = _data(args)
    seeds = _seeds(data, args.seeds)
    jobs = [
        study.Job(f"{label} seed={seed}", changed, seed)
        for label, changed in study.variants(data, args.variant)
        for seed in seeds
    ]
    results = _runner(args)(jobs)
    table = Table(title="comparison (same seeds)")
    for column in ("run", "failure rate", "failed", "wait p99", "peak utilisation", "stranded at end"):
        table.add_column(column)
    for r in results:
        cap = r.summary["capacity"]
        peak = ", ".join(f"{k} {v['utilization_peak']:.1%}" for k, v in cap.items())
        stranded = ", ".join(f"{k} {units.text_of_bytes(v['stranded_bytes_end'])}" for k, v in cap.items())
        pods = r.summary["pods"]
        table.add_row(
            r.name, f"{pods['failure_rate']:.2%}", str(pods["failed"]), f"{pods['wait_p99_s']:.1f}s", peak, stranded
        )
    console.print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps({r.name: r.summary for r in results}, indent=2, sort_keys=True) + "\n")
    from simulator import report

    path = report.write_comparison([(r.name, r) for r in results], out / "report.html")
    console.print(f"wrote {out / 'compare.json'}, {path}")
    return 0 if all(r.ok for r in results) else 1


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    data = _data(args)
    seeds = _seeds(data, args.seeds)
    cells = study.grid(data, args.grid)
    jobs = [study.Job(f"{label} seed={seed}", changed, seed) for label, changed, _ in cells for seed in seeds]
    console.print(f"sweep: {len(cells)} combinations x {len(seeds)} seeds = {len(jobs)} runs")
    results = _runner(args)(jobs)
    rows = []
    for (label, _, point), chunk in zip(cells, _chunks(results, len(seeds)), strict=True):
        failed = sum(r.summary["pods"]["failed"] for r in chunk)
        judged = sum(r.summary["pods"]["judged"] for r in chunk)
        rows.append({**point, "runs": len(chunk), "failed": failed, "judged": judged,
                     "failure_rate": round(failed / judged, 6) if judged else 0.0, "label": label,
                     "errors": sum(1 for r in chunk if not r.ok)})  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_series(rows, out / "sweep.csv")
    from simulator import report

    path = report.write_sweep(rows, out / "report.html")
    table = Table(title="sweep")
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    console.print(f"wrote {out / 'sweep.csv'}, {path}")
    return 0 if all(r.ok for r in results) else 1


def cmd_snapshot(args: argparse.Namespace, console: Console) -> int:
    from simulator import snapshot, snapshot_args

    options = snapshot.Options(
        lvmd=snapshot_args.lvmd_configs(args.lvmd_config, args.pool_label), pool_label=args.pool_label,
        selector=snapshot_args.selector(args.selector), namespaces=tuple(args.namespace), name=args.name,
    )  # fmt: skip
    kubeconfig = args.kubeconfig or snapshot_args.default_kubeconfig()
    if not kubeconfig:
        raise errors.ConfigError(
            "--kubeconfig: give the cluster's kubeconfig (or set KUBECONFIG, or have ~/.kube/config)"
        )
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # a retry per refused connection; the error says it once
    cluster, close, source = snapshot_args.connect(kubeconfig)
    try:
        live = snapshot.read(cluster, options)
    except errors.ConfigError:
        raise
    except errors.TopoLVMError as exc:  # unreachable, access denied...: the user's to fix, not a crash
        raise errors.ConfigError(f"reading the cluster at {source}: {exc}") from None
    finally:
        close()
    snap = snapshot.build(live, options)
    out = Path(args.out) if args.out and args.out != "-" else None
    text, trace_file = snapshot.write(snap, out, Path(args.trace_out) if args.trace_out else None, source)
    report = console if out is not None else Console(stderr=True)
    if out is None:
        sys.stdout.write(text)
    # Plain text: no markup (names may hold brackets), no folding (paths and names stay whole for copying).
    for line in snapshot.summary(snap, source):
        report.print(line, highlight=False, markup=False, soft_wrap=True)
    report.print(
        f"wrote {out or 'the scenario to stdout'}, {trace_file}", highlight=False, markup=False, soft_wrap=True
    )
    return 0


def _chunks(items: list[run.Result], size: int) -> list[list[run.Result]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    services = logging.getLogger("topolvm")
    previous = {name: logging.getLogger(name).level for name in ("topolvm", "urllib3")}
    if args.log_level == "warning":
        # TopoLVM's services warn on every volume that does not fit; in a simulation that is the point, not news.
        services.setLevel(logging.ERROR)
    console = Console()
    try:
        commands = {
            "run": cmd_run,
            "plan": cmd_plan,
            "compare": cmd_compare,
            "sweep": cmd_sweep,
            "snapshot": cmd_snapshot,
            "fidelity": fidelity_cli.cmd,
        }
        return commands[args.command](args, console)
    except errors.ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    finally:
        for name, level in previous.items():  # main() may run inside another program (the tests)
            logging.getLogger(name).setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
