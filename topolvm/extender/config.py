"""topolvm-scheduler configuration: upstream's YAML (listen, default-divisor, divisors) plus our additions.

Read by ``topolvm.extender.cli``. An upstream file loads unchanged and behaves as upstream does (spread mode),
except that over-commit protection is on by default. Additions:

    mode: spread | pack            # pack prefers the least free node that fits (upstream #1049)
    tie-break: extender | scheduler  # who decides between nodes that share the top score (docs/scheduler.md)
    extender-weight: 200           # the weight kube-scheduler's configuration gives this extender, if known
    reservation-ttl: 60            # seconds capacity promised to a pod is held back (upstream #117); 0 = off
    max-body-bytes: 67108864       # request body limit (upstream: 10 MiB)

``tie-break: extender`` (the default) works only when kube-scheduler gives the extender a weight above what its
score plugins can add to a node (``scheduling.weight_problem``). The extender cannot read kube-scheduler's
configuration, so ``extender-weight`` states it: a lower value is refused, and without it a warning says what
is assumed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import yaml

from topolvm import errors, process
from topolvm.core import scheduling

log = logging.getLogger(__name__)

DEFAULT_LISTEN = ":8000"
DEFAULT_RESERVATION_TTL = 60.0
DEFAULT_MAX_BODY_BYTES = 64 << 20
_KNOWN = {
    "listen", "default-divisor", "divisors", "mode", "tie-break", "extender-weight", "reservation-ttl",
    "max-body-bytes",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Config:
    listen: str = DEFAULT_LISTEN
    policy: scheduling.Policy = dataclasses.field(default_factory=scheduling.Policy)
    reservation_ttl: float = DEFAULT_RESERVATION_TTL
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    extender_weight: int | None = None  # as stated in the file; None: not stated


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ConfigError(f"{field}: must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise errors.ConfigError(f"{field}: must be finite, got {value!r}")
    return number


# A divisor is "how many GiB make one score step"; below a millionth every score is 10 anyway, and far below it
# log2(GiB / divisor) overflows.
MIN_DIVISOR = 1e-6


def _divisor(field: str, value: object) -> float:
    number = _number(field, value)
    if number < MIN_DIVISOR:
        raise errors.ConfigError(f"{field}: must be at least {MIN_DIVISOR:g}, got {value!r}")
    return number


def from_mapping(data: Mapping[str, Any]) -> Config:
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        # Upstream ignores unknown keys; we keep loading but say so, since a typo silently changes behaviour.
        log.warning("scheduler config: ignoring unknown keys %s", ", ".join(map(str, unknown)))
    listen = data.get("listen", DEFAULT_LISTEN)
    if not isinstance(listen, str) or not listen:
        raise errors.ConfigError(f"listen: must be an address like ':8000', got {listen!r}")
    parse_listen(listen)
    divisors_raw = data.get("divisors") or {}
    if not isinstance(divisors_raw, Mapping):
        raise errors.ConfigError(f"divisors: must be a mapping of device class to number, got {divisors_raw!r}")
    divisors = {str(k): _divisor(f"divisors.{k}", v) for k, v in divisors_raw.items()}
    mode_raw = data.get("mode", scheduling.Mode.SPREAD.value)
    try:
        mode = scheduling.Mode(mode_raw)
    except ValueError:
        raise errors.ConfigError(f"mode: must be 'spread' or 'pack', got {mode_raw!r}") from None
    tie_break_raw = data.get("tie-break", _default_tie_break(data.get("extender-weight")).value)
    try:
        tie_break = scheduling.TieBreak(tie_break_raw)
    except ValueError:
        raise errors.ConfigError(f"tie-break: must be 'extender' or 'scheduler', got {tie_break_raw!r}") from None
    weight = _weight(data.get("extender-weight"), tie_break)
    policy = scheduling.Policy(
        default_divisor=_divisor("default-divisor", data.get("default-divisor", 1)),
        divisors=divisors,
        mode=mode,
        tie_break=tie_break,
    )
    ttl = _number("reservation-ttl", data.get("reservation-ttl", DEFAULT_RESERVATION_TTL))
    if ttl < 0:
        raise errors.ConfigError(f"reservation-ttl: must not be negative, got {ttl!r}")
    max_body = data.get("max-body-bytes", DEFAULT_MAX_BODY_BYTES)
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body <= 0:
        raise errors.ConfigError(f"max-body-bytes: must be a positive integer, got {max_body!r}")
    return Config(
        listen=listen, policy=policy, reservation_ttl=ttl, max_body_bytes=max_body, extender_weight=weight
    )  # fmt: skip


def _default_tie_break(weight: object) -> scheduling.TieBreak:
    """Without ``tie-break``: the extender breaks ties only when ``extender-weight`` says kube-scheduler lets it
    decide. An upstream file (no such keys) sits beside kube-scheduler's weight 1 of upstream's manifests, where a
    tie broken by the extender is not followed; holding the pod on every tied node is the safe side there."""
    if isinstance(weight, int) and not isinstance(weight, bool) and weight >= scheduling.MIN_EXTENDER_WEIGHT:
        return scheduling.TieBreak.EXTENDER
    if weight is None:
        log.info(
            "scheduler config: no extender-weight, so tie-break: scheduler (ties held on every tied node); "
            "state kube-scheduler's extenders[].weight as extender-weight (>= %d) for tie-break: extender",
            scheduling.MIN_EXTENDER_WEIGHT,
        )
    return scheduling.TieBreak.SCHEDULER


def _weight(value: object, tie_break: scheduling.TieBreak) -> int | None:
    """``extender-weight``, checked against what ``tie-break: extender`` needs."""
    if value is None:
        if tie_break is scheduling.TieBreak.EXTENDER:
            log.warning(
                "scheduler config: tie-break: extender assumes kube-scheduler gives this extender a weight of at "
                "least %d (extenders[].weight; deploy/ ships 200); the extender cannot read kube-scheduler's "
                "configuration, so state it as extender-weight, or use tie-break: scheduler",
                scheduling.MIN_EXTENDER_WEIGHT,
            )
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise errors.ConfigError(f"extender-weight: must be a positive integer, got {value!r}")
    problem = scheduling.weight_problem(value, tie_break)
    if problem:
        raise errors.ConfigError(
            f"extender-weight: {problem}; use it in kube-scheduler's configuration and here, or tie-break: scheduler"
        )
    return value


def loads(text: str) -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"scheduler config is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise errors.ConfigError("scheduler config must be a YAML mapping")
    return from_mapping(data)


def load(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read scheduler config {path}: {exc.strerror}") from None
    return loads(text)


def parse_listen(listen: str) -> tuple[str, int]:
    """Go-style listen address (``:8000``, ``127.0.0.1:8000``, ``[::1]:8000``) as (host, port); "" host = all."""
    try:
        return process.parse_listen(listen)
    except ValueError:
        raise errors.ConfigError(f"listen: must be host:port, got {listen!r}") from None
