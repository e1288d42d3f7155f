"""``topolvm-sim fidelity --real OUTCOME.json``: the fidelity view of the simulator's report, from what a real
control plane did with the checked-in 20-node trace (docs/fidelity.md).

The real replay (tests/e2e/test_fidelity_scale.py, through tests/support/replay.py) writes its outcome as
``fidelity-<mode>.real.json`` (``dump``); this command simulates the same trace in the same scheduler mode, at
the trace's seed and at ``--seeds``, compares, writes ``fidelity-<mode>.html`` and ``fidelity-<mode>.json`` to
``--out`` and exits 1 when the worlds disagree. The file names the trace by its SHA-256, so an outcome is never
compared with a trace it was not replayed from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from simulator import fidelity, fidelity_trace, report_fidelity
from topolvm import errors

FORMAT = "topolvm-sim/fidelity-outcome/v1"
MODES = ("both", "extender", "capacity-tracking")
DEFAULT_SEEDS = "1,2,3,4,5"  # as tests/e2e/test_fidelity_scale.py pools them


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class _Claim(_Strict):
    namespace: str
    name: str
    node: str | None  # None: never placed


class _Free(_Strict):
    node: str
    device_class: str
    bytes: int


class _RealOutcome(_Strict):
    format: str
    trace: str
    trace_sha256: str
    mode: str
    claims: list[_Claim]
    free: list[_Free]
    unplaced: int


def trace_digest() -> str:
    return hashlib.sha256(fidelity_trace.TRACE.read_bytes()).hexdigest()


def dump(outcome: fidelity.Outcome, *, mode: str, path: Path) -> Path:
    """Write a real replay's ``outcome`` of the checked-in trace in scheduler ``mode``."""
    record = _RealOutcome(
        format=FORMAT,
        trace=fidelity_trace.TRACE.name,
        trace_sha256=trace_digest(),
        mode=mode,
        claims=[_Claim(namespace=ns, name=name, node=node) for (ns, name), node in outcome.nodes.items()],
        free=[_Free(node=n, device_class=c, bytes=b) for (n, c), b in sorted(outcome.free.items())],
        unplaced=outcome.unplaced,
    )
    path.write_bytes(msgspec.json.format(msgspec.json.encode(record), indent=1) + b"\n")
    return path


def load(path: str) -> tuple[str, fidelity.Outcome]:
    """The scheduler mode and the real outcome in ``path``; a ConfigError names what is wrong."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"{path}: {exc.strerror or exc}") from None
    try:
        record = msgspec.json.decode(data, type=_RealOutcome)
    except msgspec.ValidationError as exc:
        raise errors.ConfigError(f"{path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise errors.ConfigError(f"{path}: not JSON: {exc}") from None
    if record.format != FORMAT:
        raise errors.ConfigError(f"{path}: format {record.format!r} is not {FORMAT!r}")
    if record.mode not in MODES:
        raise errors.ConfigError(f"{path}: mode {record.mode!r} is not one of {', '.join(MODES)}")
    if record.trace_sha256 != trace_digest():
        raise errors.ConfigError(
            f"{path}: trace_sha256 is not that of {fidelity_trace.TRACE} (the outcome was replayed from another "
            f"trace, {record.trace!r})"
        )
    if record.unplaced < 0:
        raise errors.ConfigError(f"{path}: unplaced must not be negative, not {record.unplaced}")
    nodes: dict[fidelity.ClaimKey, str | None] = {}
    for i, c in enumerate(record.claims):
        if (c.namespace, c.name) in nodes:
            raise errors.ConfigError(f"{path}: claims[{i}]: {c.namespace}/{c.name} is listed twice")
        nodes[(c.namespace, c.name)] = c.node
    free: dict[fidelity.VgKey, int] = {}
    for i, f in enumerate(record.free):
        if f.bytes < 0:
            raise errors.ConfigError(f"{path}: free[{i}].bytes must not be negative, not {f.bytes}")
        if (f.node, f.device_class) in free:
            raise errors.ConfigError(f"{path}: free[{i}]: {f.node} {f.device_class} is listed twice")
        free[(f.node, f.device_class)] = f.bytes
    return record.mode, fidelity.Outcome(nodes, {}, free, record.unplaced)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats (a chi-square statistic of inf) as None: strict JSON has no Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise errors.ConfigError(f"--seeds {text!r}: comma-separated integers, e.g. {DEFAULT_SEEDS}") from None


def add_parser(sub: Any) -> None:
    f = sub.add_parser(
        "fidelity",
        help="compare a real control plane's replay of the fidelity trace with the simulator's",
        description=(__doc__ or "").split("\n\n")[0].replace("``", ""),
    )
    f.add_argument("--real", required=True, metavar="OUTCOME.json", help="the real replay's fidelity-<mode>.real.json")
    f.add_argument(
        "--seeds", default=DEFAULT_SEEDS, help="simulator seeds pooled by the distribution test (default: %(default)s)"
    )
    f.add_argument("--out", default="fidelity-out", help="directory for the page and the JSON (default: %(default)s)")


def cmd(args: argparse.Namespace, console: Console) -> int:
    mode, real = load(args.real)
    seeds = _seeds(args.seeds)
    ops = fidelity_trace.load()
    simulated = fidelity.simulated(fidelity_trace.simulate(mode, ops), ops)
    reference = [simulated, *(fidelity.simulated(fidelity_trace.simulate(mode, ops, s), ops) for s in seeds)]
    agreement = fidelity.compare(simulated, real, reference=reference)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    facts = [
        ("trace", f"{fidelity_trace.TRACE.name}: {len(ops)} events"),
        ("scheduler mode", mode),
        ("real outcome", args.real),
        (f"chi-square p against the simulator at the trace's seed and seeds {seeds}", agreement.distribution.p_value),
    ]
    page = report_fidelity.write(agreement, simulated, real, out / f"fidelity-{mode}.html", title=mode, facts=facts)
    summary = out / f"fidelity-{mode}.json"
    summary.write_text(json.dumps(_finite(agreement.as_dict()), indent=1, sort_keys=True, allow_nan=False) + "\n")
    table = Table(title=f"fidelity ({mode}): {'the worlds agree' if agreement.ok else 'the worlds DISAGREE'}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for measure, value in report_fidelity.measures(agreement):
        table.add_row(measure, "-" if value is None else str(value))
    console.print(table)
    for line in agreement.mismatches[:20]:
        console.print(line, highlight=False, markup=False)
    console.print(f"wrote {page}, {summary}", highlight=False, markup=False, soft_wrap=True)
    return 0 if agreement.ok else 1
