"""``runtime.Waiter``: event-driven waits, bounded in time and in how many callers may block at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures

import pytest

from topolvm import clock, errors, runtime
from topolvm.core import resources
from topolvm.kube import memory as kube_memory

NOW = clock.SystemClock().now


@pytest.fixture
def cluster() -> kube_memory.InMemoryCluster:
    return kube_memory.InMemoryCluster()


@pytest.fixture
def waiter(cluster: kube_memory.InMemoryCluster) -> Iterator[runtime.Waiter]:
    w = runtime.Waiter(cluster, max_waiters=3, max_waiters_per_key=2)
    yield w
    w.close()


def _never() -> None:
    return None


def _until(predicate: Callable[[], bool]) -> None:
    pause = threading.Event()
    for _ in range(400):
        if predicate():
            return
        pause.wait(0.025)
    raise AssertionError("waiters never arrived")


def _touch(cluster: kube_memory.InMemoryCluster, name: str) -> None:
    spec = resources.LogicalVolumeSpec(name=name, node_name="n1", size=1)
    cluster.create(resources.LogicalVolume(resources.Meta(name=name), spec))


def test_an_event_wakes_the_wait(cluster: kube_memory.InMemoryCluster, waiter: runtime.Waiter) -> None:
    with futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(waiter.wait, lambda: cluster.get(resources.LOGICAL_VOLUME, "lv"), 30, NOW, key="n1")
        _until(lambda: waiter.waiting("n1") == 1)
        _touch(cluster, "lv")
        lv = result.result(timeout=30)
    assert lv is not None and lv.name == "lv"
    assert waiter.waiting() == 0


def test_timeout_is_wait_timed_out_an_unavailable(waiter: runtime.Waiter) -> None:
    with pytest.raises(runtime.WaitTimedOut, match="DeleteVolume v1: not done") as info:
        waiter.wait(_never, 0.05, NOW, key="n1", what="DeleteVolume v1")
    assert isinstance(info.value, errors.Unavailable)
    assert waiter.waiting() == 0  # the slot is given back


def test_caps_per_key_and_in_total(waiter: runtime.Waiter) -> None:
    with futures.ThreadPoolExecutor(3) as pool:
        blocked = [pool.submit(waiter.wait, _never, 2, NOW, key="dead") for _ in range(2)]
        _until(lambda: waiter.waiting("dead") == 2)
        with pytest.raises(errors.Unavailable, match="too many calls are waiting for node dead"):
            waiter.wait(_never, 2, NOW, key="dead")
        assert waiter.wait(lambda: "done", 2, NOW, key="dead") == "done"  # an answer at hand is never refused
        other = pool.submit(waiter.wait, _never, 2, NOW, key="alive")  # another node still gets in...
        _until(lambda: waiter.waiting() == 3)
        with pytest.raises(errors.Unavailable, match="too many calls are waiting \\("):  # ...up to the total
            waiter.wait(_never, 2, NOW, key="third")
        for call in [*blocked, other]:
            assert isinstance(call.exception(timeout=30), runtime.WaitTimedOut)
    assert waiter.waiting() == 0


def test_a_failing_check_gives_its_slot_back(waiter: runtime.Waiter) -> None:
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise errors.NotFound("gone while waiting")

    with pytest.raises(errors.NotFound):
        waiter.wait(flaky, 0.5, NOW, key="n1")
    assert waiter.waiting() == 0
