"""The simulator's runtime: simulated time as the Clock, watch events delivered after their latency and in
order, and work queues that retry with the runtime's backoff."""

from __future__ import annotations

import simpy

from simulator import engine
from topolvm.core import resources
from topolvm.kube import memory
from topolvm.services import node


def lv(name: str) -> resources.LogicalVolume:
    return resources.LogicalVolume(resources.Meta(name=name), resources.LogicalVolumeSpec(name, "n1", 1 << 30))


def test_events_arrive_after_the_watch_latency_in_write_order() -> None:
    env = simpy.Environment()
    clock = engine.SimClock(env)
    cluster = memory.InMemoryCluster(clock, dispatcher=engine.WatchDispatcher(env, 0.5))
    heard: list[tuple[float, str, str]] = []
    cluster.watch(resources.LOGICAL_VOLUME, lambda e: heard.append((float(env.now), e.type.value, e.object.name)))
    env.run(until=1)
    created = cluster.create(lv("a"))
    assert created.meta.creation_timestamp is not None and heard == []  # not yet: the watch lags
    cluster.create(lv("b"))
    cluster.delete(resources.LOGICAL_VOLUME, "a")
    env.run(until=2)
    assert heard == [(1.5, "ADDED", "a"), (1.5, "ADDED", "b"), (1.5, "DELETED", "a")]
    assert clock.now() == engine.EPOCH + 2


def test_writes_of_an_instant_share_a_timer_only_while_nothing_comes_between() -> None:
    env = engine.SimEnvironment()
    cluster = memory.InMemoryCluster(engine.SimClock(env), dispatcher=engine.WatchDispatcher(env, 0.5))
    heard: list[str] = []
    cluster.watch(resources.LOGICAL_VOLUME, lambda e: heard.append(f"{e.type.value} {e.object.name}"))
    env.run(until=1)
    events_before = len(env._queue)  # how many timers the writes take
    cluster.create(lv("a"))
    cluster.create(lv("b"))  # joins a's timer
    engine.later(env, 0.5, lambda: heard.append("something else"))  # due at the same time, scheduled after b
    cluster.create(lv("c"))  # so c needs a timer of its own, after it
    assert len(env._queue) - events_before == 3
    env.run(until=2)
    assert heard == ["ADDED a", "ADDED b", "something else", "ADDED c"]


def test_work_queue_dedupes_takes_its_time_and_retries_with_backoff() -> None:
    env = simpy.Environment()
    calls: list[tuple[float, str]] = []
    outcomes = {"x": [node.Outcome.RETRY, node.Outcome.RETRY, node.Outcome.DONE]}

    def handle(name: str) -> tuple[node.Outcome, float]:
        calls.append((float(env.now), name))
        return (outcomes[name].pop(0) if name in outcomes else node.Outcome.DONE), 1.0

    queue = engine.WorkQueue(env, handle)
    queue.add("x")
    queue.add("x")  # deduplicated
    queue.add("y")
    env.run(until=10)
    # x at 0 (busy 1 s), y at 1; x again after 0.1 s (but the worker is busy until 2), then 0.2 s later
    assert [name for _, name in calls] == ["x", "y", "x", "x"]
    assert calls[0][0] == 0 and calls[1][0] == 1 and calls[2][0] == 2 and calls[3][0] == 3
    queue.stop()
    queue.add("z")
    env.run(until=20)
    assert calls[-1][1] == "x"  # a stopped queue takes nothing more
