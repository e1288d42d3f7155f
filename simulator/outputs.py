"""Machine-readable outputs of a run: ``summary.json`` (deterministic for a seed: no wall-clock figures),
``series.csv`` (one row per sample), ``per-node.csv`` (small clusters), and the terminal summary table."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from simulator import run, units


def write(result: run.Result, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json", out / "series.csv"]
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
    write_series(result.series, out / "series.csv")
    if result.per_node:
        path = out / "per-node.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["t", "node", "device_class", "size_bytes", "free_bytes"])
            writer.writerows(result.per_node)
        written.append(path)
    return written


def write_series(rows: Sequence[dict[str, Any]], path: Path) -> None:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


TEN_YEARS = 10 * 365 * 86400.0


def title(summary: dict[str, Any]) -> str:
    simulated = units.text_of_seconds(summary["simulated_seconds"])
    return f"{summary['scenario']} — {summary['mode']} mode, seed {summary['seed']}, {simulated} simulated"


def rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures of a run as (measure, value) text: the terminal table and the HTML report show these."""
    s = summary
    pods, sched = s["pods"], s["scheduling"]
    out = [
        ("nodes at end", str(s["nodes_at_end"])),
        ("pods created / bound / pending at end", f"{pods['created']} / {pods['bound']} / {pods['pending_at_end']}"),
        ("pods failed (not bound within SLO)", f"{pods['failed']} ({pods['failure_rate']:.2%} of {pods['judged']})"),
        ("wait to bind p50 / p99", f"{_wait(pods['wait_p50_s'])} / {_wait(pods['wait_p99_s'])}"),
        ("scheduling attempts (failed)", f"{sched['attempts']} ({sched['failed_attempts']})"),
    ]
    settled = sched.get("settled_without_cycle")
    if settled:
        out.append(("  failed retries answered without a cycle", str(settled)))
    top = list(sched["reasons"].items())[:4]
    if top:
        out.append(("nodes turning a pod down, by reason (over all failed attempts):", ""))
        out += [(f"  {reason}", str(count)) for reason, count in top]
    for name, c in s["capacity"].items():
        out.append(
            (
                f"class {name}: used by volumes end / peak",
                f"{units.text_of_bytes(c['used_bytes_end'])} of {units.text_of_bytes(c['size_bytes'])}, "
                f"{units.text_of_bytes(c.get('reserved_bytes_end', 0))} reserved "
                f"({c['utilization_end']:.1%} of used + free) / {c['utilization_peak']:.1%}",
            )
        )
        stranded = f"{units.text_of_bytes(c['stranded_bytes_end'])} ({c['fragmentation_end']:.1%} of free)"
        out.append((f"class {name}: stranded free bytes", stranded))
        projected = c["projected_full_s"]
        if projected is not None:
            horizon = projected - s["simulated_seconds"]
            when = f"t={units.text_of_seconds(projected)}" if horizon < TEN_YEARS else "not within ten years"
            out.append((f"class {name}: full at current trend", when))
    first = s["time_to_exhaustion_s"]
    out.append(("first storage-related failure", "none" if first is None else f"t={units.text_of_seconds(first)}"))
    return out


def _wait(seconds: float) -> str:
    """Seconds to the hundredth under a minute; longer waits in the largest unit (2.6d reads better than 223679s)."""
    return f"{seconds:.2f}s" if seconds < 60 else units.text_of_seconds(seconds)


def table(result: run.Result) -> Table:
    t = Table(title=title(result.summary))
    t.add_column("measure")
    t.add_column("value", justify="right")
    for measure, value in rows(result.summary):
        t.add_row(measure, value)
    return t


def print_summary(result: run.Result, console: Console | None = None) -> None:
    console = console or Console()
    console.print(table(result))
    if result.error:
        console.print(f"[red]the run stopped early: {result.error}[/red]")
