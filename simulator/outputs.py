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


def table(result: run.Result) -> Table:
    s = result.summary
    pods, sched = s["pods"], s["scheduling"]
    simulated = units.text_of_seconds(s["simulated_seconds"])
    t = Table(title=f"{s['scenario']} — {s['mode']} mode, seed {s['seed']}, {simulated} simulated")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("nodes at end", str(s["nodes_at_end"]))
    t.add_row(
        "pods created / bound / pending at end", f"{pods['created']} / {pods['bound']} / {pods['pending_at_end']}"
    )
    t.add_row(
        "pods failed (not bound within SLO)", f"{pods['failed']} ({pods['failure_rate']:.2%} of {pods['judged']})"
    )
    t.add_row("wait to bind p50 / p99", f"{pods['wait_p50_s']:.2f}s / {pods['wait_p99_s']:.2f}s")
    t.add_row("scheduling attempts (failed)", f"{sched['attempts']} ({sched['failed_attempts']})")
    for reason, count in list(sched["reasons"].items())[:4]:
        t.add_row(f"  {reason[:70]}", str(count))
    for name, c in s["capacity"].items():
        t.add_row(
            f"class {name}: used end / peak",
            f"{units.text_of_bytes(c['used_bytes_end'])} of {units.text_of_bytes(c['size_bytes'])} "
            f"({c['utilization_end']:.1%}) / {c['utilization_peak']:.1%}",
        )
        t.add_row(
            f"class {name}: stranded free bytes",
            f"{units.text_of_bytes(c['stranded_bytes_end'])} ({c['fragmentation_end']:.1%} of free)",
        )
        if c["projected_full_s"] is not None:
            t.add_row(f"class {name}: full at current trend", f"t={units.text_of_seconds(c['projected_full_s'])}")
    first = s["time_to_exhaustion_s"]
    t.add_row("first storage-related failure", "none" if first is None else f"t={units.text_of_seconds(first)}")
    return t


def print_summary(result: run.Result, console: Console | None = None) -> None:
    console = console or Console()
    console.print(table(result))
    if result.error:
        console.print(f"[red]the run stopped early: {result.error}[/red]")
