"""Node calls bounded by the caller's gRPC deadline, without cutting their work short.

kubelet calls NodePublishVolume, NodeUnpublishVolume and NodeExpandVolume with a deadline (two minutes) and
calls again after it. The commands behind them (mkfs, mount, resize2fs, xfs_growfs, umount) are not killed at
that deadline: an mkfs killed there would start from nothing on every retry, so a volume whose formatting takes
longer than the deadline (a large device being discarded first) would never be published; the kernel finishes a
mount(2) whether or not its caller is still waiting. They stay bounded by their own timeouts
(``topolvm.mount.system``, 300 s).

Instead the work runs on a thread of its own holding the volume's lock, and the call waits for it until half a
second before the caller's deadline. If it is still running then, the call answers DEADLINE_EXCEEDED and the
work goes on; while it does, a call about the same volume answers ABORTED at once (the CSI spec's "operation
pending for volume") instead of parking a server thread behind it; the retry after it finished gets its
answer, since every Node call is idempotent. A call with too little of its deadline left starts nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

from topolvm import errors
from topolvm.csi import locks

log = logging.getLogger(__name__)
T = TypeVar("T")

MARGIN = 0.5  # seconds before the caller's deadline at which we answer, so the answer is ours, not its timeout


class VolumeWork:
    def __init__(self, *, margin: float = MARGIN) -> None:
        self._locks = locks.KeyedLock()
        self._margin = margin

    def busy(self) -> int:
        """Volumes with work in progress (for tests)."""
        return len(self._locks)

    def run(self, volume_id: str, work: Callable[[], T], *, remaining: float | None) -> T:
        """``work()``'s result, or DeadlineExceeded when ``remaining`` (the caller's time left, in seconds; None
        for no deadline) runs out first, or OperationPending when other work on ``volume_id`` is in progress."""
        if remaining is not None and remaining <= self._margin:
            raise errors.DeadlineExceeded(f"volume {volume_id!r}: the caller's deadline leaves no time; nothing done")
        outcome: futures.Future[T] = futures.Future()

        def worker() -> None:
            try:
                with self._locks.hold(volume_id, blocking=False):
                    result = work()
            except BaseException as exc:  # handed to the caller, as if raised in its thread
                outcome.set_exception(exc)
            else:
                outcome.set_result(result)

        threading.Thread(target=worker, name=f"volume-{volume_id[:40]}", daemon=True).start()
        finished, _ = futures.wait([outcome], timeout=None if remaining is None else remaining - self._margin)
        if not finished:
            outcome.add_done_callback(lambda done: _finished_late(volume_id, done))
            raise errors.DeadlineExceeded(
                f"volume {volume_id!r}: still working at the caller's deadline; the work goes on, and a call "
                "after it finished gets its answer"
            )
        return outcome.result()


def _finished_late(volume_id: str, done: futures.Future[T]) -> None:
    exc = done.exception()
    if exc is None:
        log.info("volume=%s: work that outlived its call finished", volume_id)
    else:
        log.warning("volume=%s: work that outlived its call failed: %s", volume_id, exc)
