"""Write tests/durations.json from a pytest ``--durations=0`` report: the seconds each test took (setup, call
and teardown added up), for the tests that took at least ``--min`` seconds.

tests/conftest.py runs those tests first when the suite runs on several xdist workers, longest first, so the
long end-to-end replays start at once on both cores instead of last on one. The figures steer only the order:
a stale or missing entry costs time, never a result. Make them again after a change of the slow tests:

    .venv/bin/pytest -n 2 -m "not hil" --durations=0 -q | tee /tmp/durations.log
    .venv/bin/python scripts/record_durations.py /tmp/durations.log
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

LINE = re.compile(r"^(?P<seconds>\d+(?:\.\d+)?)s (?:setup|call|teardown)\s+(?P<nodeid>\S.*?)\s*$")
OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "durations.json"


def parse(text: str) -> dict[str, float]:
    """Seconds per node id, summed over setup, call and teardown."""
    seconds: dict[str, float] = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            nodeid = match["nodeid"]
            seconds[nodeid] = seconds.get(nodeid, 0.0) + float(match["seconds"])
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a saved pytest run with --durations=0")
    parser.add_argument("--min", type=float, default=2.0, help="keep tests of at least this many seconds (2)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write ({OUTPUT.name})")
    args = parser.parse_args(argv)
    seconds = parse(args.report.read_text())
    if not seconds:
        print(f"{args.report}: no --durations=0 lines in it", file=sys.stderr)
        return 1
    kept = {k: round(v, 1) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1]) if v >= args.min}
    args.output.write_text(json.dumps(kept, indent=1) + "\n")
    total = sum(seconds.values())
    print(f"{args.output}: {len(kept)} of {len(seconds)} tests, {sum(kept.values()):.0f} s of {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
