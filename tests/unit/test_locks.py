from __future__ import annotations

import threading

import pytest

from topolvm import errors
from topolvm.csi import locks


def test_same_key_waits_other_keys_do_not_and_nothing_leaks() -> None:
    keyed = locks.KeyedLock()
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with keyed.hold("vol-a"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        with keyed.hold("vol-a"):
            order.append("second in")

    t1 = threading.Thread(target=first)
    t1.start()
    inside.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    with keyed.hold("vol-b"):  # another volume is not blocked by vol-a
        order.append("other")
    release.set()
    t1.join(10)
    t2.join(10)
    assert order == ["first in", "other", "first out", "second in"]
    assert len(keyed) == 0


def test_non_blocking_hold_is_operation_pending_while_another_call_holds_the_key() -> None:
    keyed = locks.KeyedLock()
    with keyed.hold("vol-a"):
        with pytest.raises(errors.OperationPending) as info, keyed.hold("vol-a", blocking=False):
            pass
        assert info.value.code == errors.ABORTED
        with keyed.hold("vol-b", blocking=False):  # other keys are free
            assert len(keyed) == 2
    with keyed.hold("vol-a", blocking=False):  # free again once released
        pass
    assert len(keyed) == 0
