"""``topolvm-sim``: capacity planning with TopoLVM's own services on a simulated cluster.

    topolvm-sim run [SCENARIO.yaml]     one run (no file: the embedded default scenario); writes summary.json,
                                        series.csv, per-node.csv (small clusters) and report.html to --out
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources as package_files
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from simulator import budget, outputs, run, scenario, trace, units
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
    import msgspec

    return scenario.Loaded(msgspec.structs.replace(spec, **changes), loaded.lvmd)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    loaded = _with_overrides(load(args.scenario), args)
    replay = list(trace.read(args.trace)) if args.trace else None
    estimate = budget.estimate(loaded, replay)
    budget.check(estimate, units.size(args.max_memory) if args.max_memory else None)
    out = Path(args.out)
    if args.no_progress or not console.is_terminal:
        result = run.simulate(loaded, record_trace=bool(args.record_trace), replay=replay)
    else:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[at]}"), TimeElapsedColumn())
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    console = Console()
    try:
        if args.command == "run":
            return cmd_run(args, console)
    except errors.ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
