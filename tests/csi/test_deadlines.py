"""No CSI call outlives its caller, and a node that never answers cannot take every server thread.

"gone" is a NotReady node: its capacity annotations remain, its agent does not, so nothing it should do gets
done. Codes are asserted, never durations; the details tell our answers from the client's own deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures

import grpc
import pytest

from tests.csi.conftest import CsiCluster, GiB, create_request, csi_cluster
from topolvm.core import resources
from topolvm.csi.proto import csi_pb2 as csi


def _code(call: futures.Future[object]) -> tuple[grpc.StatusCode, str]:
    exc = call.exception()
    assert isinstance(exc, grpc.RpcError), f"expected an error, got {call.result()!r}"
    return exc.code(), exc.details() or ""


def _until(predicate: Callable[[], bool], what: str) -> None:
    """Let concurrent calls reach their wait (a bounded poll; nothing is asserted about time)."""
    pause = threading.Event()
    for _ in range(400):
        if predicate():
            return
        pause.wait(0.025)
    raise AssertionError(f"never happened: {what}")


def test_wait_ends_at_the_callers_deadline_with_deadline_exceeded() -> None:
    with csi_cluster({}, {"gone": 50 * GiB}, timeout=60) as w:
        volume_id = w.stranded_volume("pvc-stranded", "gone")
        with pytest.raises(grpc.RpcError) as info:
            w.ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume_id), timeout=1.5)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "caller's deadline" in (info.value.details() or "")  # our answer, not the client giving up
        lv = w.cluster.get(resources.LOGICAL_VOLUME, "pvc-stranded")
        assert lv is not None and lv.meta.deleting  # the work goes on; a retry resumes it
        assert w.waiter.waiting() == 0

        with pytest.raises(grpc.RpcError) as info:
            w.ctrl.CreateVolume(create_request("pvc-new", GiB, preferred=["gone"], requisite=["gone"]), timeout=1.5)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "caller's deadline" in (info.value.details() or "")


def test_wait_ends_at_our_timeout_with_unavailable() -> None:
    with csi_cluster({}, {"gone": 50 * GiB}, timeout=0.3) as w:
        volume_id = w.stranded_volume("pvc-stranded", "gone")
        for _ in range(2):  # a retry waits again and gets the same answer
            with pytest.raises(grpc.RpcError) as info:
                w.ctrl.DeleteVolume(csi.DeleteVolumeRequest(volume_id=volume_id), timeout=30)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "not done after" in (info.value.details() or "")


def test_a_second_call_about_a_busy_volume_is_aborted_at_once() -> None:
    with csi_cluster({}, {"gone": 50 * GiB}, timeout=2) as w, futures.ThreadPoolExecutor(1) as pool:
        req = create_request("pvc-busy", GiB, preferred=["gone"], requisite=["gone"])
        first = pool.submit(w.ctrl.CreateVolume, req, timeout=30)
        _until(lambda: w.waiter.waiting("gone") == 1, "the first CreateVolume waits")
        with pytest.raises(grpc.RpcError) as info:
            w.ctrl.CreateVolume(req, timeout=30)
        assert info.value.code() is grpc.StatusCode.ABORTED
        assert _code(first)[0] is grpc.StatusCode.UNAVAILABLE


def _flood_deletes(w: CsiCluster, count: int, pool: futures.ThreadPoolExecutor) -> list[futures.Future[object]]:
    ids = [w.stranded_volume(f"pvc-gone-{i}", "gone") for i in range(count)]
    return [pool.submit(w.ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id=v), timeout=30) for v in ids]


def test_deletes_for_a_dead_node_leave_threads_for_other_nodes() -> None:
    """Six server threads; twelve DeleteVolumes for the dead node at once. At most two may wait on it, the rest
    are told UNAVAILABLE at once, and CreateVolume for a live node gets a thread and succeeds meanwhile."""
    with (
        csi_cluster(
            {"n1": 20 * GiB}, {"gone": 50 * GiB}, workers=6, max_waiters=4, max_waiters_per_node=2, timeout=2
        ) as w,
        futures.ThreadPoolExecutor(12) as pool,
    ):
        deletes = _flood_deletes(w, 12, pool)
        _until(lambda: w.waiter.waiting("gone") == 2, "two DeleteVolumes wait on the dead node")
        created = w.ctrl.CreateVolume(create_request("pvc-live", GiB, preferred=["n1"], requisite=["n1"]), timeout=30)
        assert created.volume.accessible_topology[0].segments["topology.topolvm.io/node"] == "n1"
        answers = [_code(call) for call in deletes]
        assert {code for code, _ in answers} == {grpc.StatusCode.UNAVAILABLE}
        refused = [d for _, d in answers if "too many calls are waiting for node gone" in d]
        timed_out = [d for _, d in answers if "not done after" in d]
        assert len(refused) + len(timed_out) == 12 and refused and timed_out
        assert all(
            lv.meta.deleting for lv in w.cluster.list_of(resources.LOGICAL_VOLUME) if lv.spec.node_name == "gone"
        )


def test_without_the_caps_the_dead_node_starves_everyone() -> None:
    """The failure the caps prevent: with waits uncapped, the dead node's DeleteVolumes hold all six threads and
    CreateVolume for a live node never gets one before its deadline."""
    with (
        csi_cluster(
            {"n1": 20 * GiB}, {"gone": 50 * GiB}, workers=6, max_waiters=99, max_waiters_per_node=99, timeout=3
        ) as w,
        futures.ThreadPoolExecutor(6) as pool,
    ):
        deletes = _flood_deletes(w, 6, pool)
        _until(lambda: w.waiter.waiting("gone") == 6, "every server thread waits on the dead node")
        with pytest.raises(grpc.RpcError) as info:
            w.ctrl.CreateVolume(create_request("pvc-live", GiB, preferred=["n1"], requisite=["n1"]), timeout=1)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "caller's deadline" not in (info.value.details() or "")  # the client gave up: never served
        assert {_code(call)[0] for call in deletes} == {grpc.StatusCode.UNAVAILABLE}
