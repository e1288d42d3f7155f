"""The summary table's wording of figures (simulator/outputs.py)."""

from __future__ import annotations

from typing import Any

from simulator import outputs


def summary(p99: float, settled: int) -> dict[str, Any]:
    return {
        "nodes_at_end": 3,
        "pods": {"created": 5, "bound": 4, "pending_at_end": 1, "failed": 1, "failure_rate": 0.2, "judged": 5,
                 "wait_p50_s": 0.04, "wait_p99_s": p99},
        "scheduling": {"attempts": 9, "failed_attempts": 5, "reasons": {}, "settled_without_cycle": settled},
        "capacity": {},
        "time_to_exhaustion_s": None,
        "simulated_seconds": 86400.0,
    }  # fmt: skip


def test_long_waits_read_in_days_and_settled_retries_are_told_apart() -> None:
    rows = dict(outputs.rows(summary(223679.31, 4)))
    assert rows["wait to bind p50 / p99"] == "0.04s / 2.6d"
    assert rows["  failed retries answered without a cycle"] == "4"
    short = dict(outputs.rows(summary(12.5, 0)))
    assert short["wait to bind p50 / p99"] == "0.04s / 12.50s"
    assert "  failed retries answered without a cycle" not in short
