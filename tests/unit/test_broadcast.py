from __future__ import annotations

from topolvm.services import broadcast


def test_older_values_never_overwrite_newer_ones() -> None:
    b: broadcast.Broadcaster[str] = broadcast.Broadcaster()
    seen: list[str] = []
    b.subscribe(seen.append, lambda: (0, "initial"))
    b.deliver(2, "newer")
    b.deliver(1, "older, computed first but delivered late")
    b.deliver(3, "newest")
    assert seen == ["initial", "newer", "newest"]


def test_late_subscriber_gets_the_latest_delivered_value() -> None:
    b: broadcast.Broadcaster[str] = broadcast.Broadcaster()
    b.deliver(5, "five")
    seen: list[str] = []
    b.subscribe(seen.append, lambda: (4, "stale snapshot"))
    assert seen == ["five"]


def test_a_failing_listener_does_not_stop_the_others() -> None:
    b: broadcast.Broadcaster[int] = broadcast.Broadcaster()
    seen: list[int] = []

    def broken(value: int) -> None:
        if value > 0:
            raise RuntimeError("bug")

    b.subscribe(broken, lambda: (0, 0))
    sub = b.subscribe(seen.append, lambda: (0, 0))
    b.deliver(1, 1)
    sub.close()
    b.deliver(2, 2)
    assert seen == [0, 1]


def test_a_value_a_subscriber_reads_before_its_producer_delivers_reaches_every_listener() -> None:
    """The producer took seq 1 under its own lock and released it; before its deliver() got the broadcaster's
    lock, a one-shot subscriber read (1, value) as its current value. The producer's deliver() is then dropped as
    not newer, so the subscriber's arrival delivers it to the listeners already there (a lost capacity update
    after an lvremove, docs/fidelity.md)."""
    b: broadcast.Broadcaster[str] = broadcast.Broadcaster()
    stream: list[str] = []
    b.subscribe(stream.append, lambda: (0, "before"))
    one_shot: list[str] = []
    b.subscribe(one_shot.append, lambda: (1, "after removal"))
    b.deliver(1, "after removal")  # the producer's own, late: not delivered twice
    assert one_shot == ["after removal"]
    assert stream == ["before", "after removal"]
    b.deliver(2, "next")
    assert stream == ["before", "after removal", "next"] and one_shot == ["after removal", "next"]
