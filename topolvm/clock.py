"""``Clock`` adapters: the system clock for production, a manual one for tests (the simulator has its own)."""

from __future__ import annotations

import time


class SystemClock:
    def now(self) -> float:
        return time.time()


class MonotonicClock:
    """For durations (reservations, state ages): wall-clock steps (NTP, a wrong RTC at boot) move it not."""

    def now(self) -> float:
        return time.monotonic()


class ManualClock:
    """Time moves only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
