"""Command lines as Go's ``flag`` package and klog read them, for the sidecars that take upstream's flags.

Used by ``topolvm.sidecars.registrar`` and ``topolvm.sidecars.livenessprobe``: Go flags may be written with one
dash (``-csi-address=/csi.sock``), durations are Go durations (``1s``, ``1m30s``, ``250ms``), and klog's
verbosity is ``-v=N`` (or ``--v=N``).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence

from topolvm import process

# One Go duration term: a decimal number and a unit (time.ParseDuration's units).
_TERM = re.compile("(\\d+(?:\\.\\d*)?|\\.\\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # Go accepts both micro signs: MICRO SIGN and GREEK SMALL LETTER MU
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# klog's -v from which our debug lines are logged (upstream logs per-request success at V(4)/V(5)).
DEBUG_VERBOSITY = 4


def go_duration(text: str) -> float:
    """Seconds of a Go duration such as ``3s``, ``1m30s`` or ``-1.5h``; ``0`` alone is allowed, as in Go."""
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text.removeprefix("+"))
    if body == "0":
        return 0.0
    seconds, position = 0.0, 0
    for match in _TERM.finditer(body):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (a Go duration such as 1s, 500ms or 1m30s)")
    return sign * seconds


def go_bool(text: str) -> bool:
    """A Go boolean flag's value (``-version=false``); the bare flag means true."""
    values = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}
    try:
        return values[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"invalid boolean {text!r}") from None


def add_bool(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(name, nargs="?", const=True, default=False, type=go_bool, metavar="BOOL", help=help_text)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--v",
        dest="verbosity",
        type=int,
        default=0,
        metavar="N",
        help=f"klog's log level: {DEBUG_VERBOSITY} and more log every request (default: %(default)s)",
    )


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args`` after turning Go's one-dash long flags (``-csi-address``) into ``--csi-address``.

    Bad flags exit 2 with the parser's message, as argparse does.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    long_options = {s for action in parser._actions for s in action.option_strings if s.startswith("--")}
    normalized: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            normalized += args[index:]
            break
        one_dash_long = arg.startswith("-") and not arg.startswith("--") and f"-{arg.split('=', 1)[0]}" in long_options
        normalized.append(f"-{arg}" if one_dash_long else arg)
    return parser.parse_args(normalized)


def setup_logging(verbosity: int) -> None:
    process.setup_logging("debug" if verbosity >= DEBUG_VERBOSITY else "info")
    # grpc's own logger is chatty at debug and says nothing our lines do not.
    logging.getLogger("grpc").setLevel(logging.INFO)


def http_address(endpoint: str) -> tuple[str, int]:
    """(host, port) of a Go listen address: ``:9808`` (every interface), ``127.0.0.1:9808``, ``[::1]:9808``."""
    try:
        return process.parse_listen(endpoint)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid address {endpoint!r} (HOST:PORT, e.g. :9808)") from None
