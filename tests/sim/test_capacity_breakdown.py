"""What the utilisation reports count as used: a class's own volumes, apart from the bytes reserved out of its
volume group (a thin pool's extents, spare-gb), which no volume of the class can have."""

from __future__ import annotations

import copy
from typing import Any

from simulator import run, scenario, trace
from tests.sim import test_simulation

GiB = 1 << 30


def one_node(thin: bool) -> dict[str, Any]:
    data = copy.deepcopy(test_simulation.FIVE)
    classes: list[dict[str, Any]] = [{"name": "ssd", "volume-group": "vg", "default": True, "spare-gb": 10}]
    pool: dict[str, Any] = {**test_simulation.pool("solo", 1, "400Gi"), "lvmd": {"device-classes": classes}}
    if thin:
        pool["thin-pools"] = [{"volume-group": "vg", "name": "pool0", "size": "100Gi"}]
        classes.append(
            {
                "name": "thin",
                "volume-group": "vg",
                "type": "thin",
                "thin-pool": {"name": "pool0", "overprovision-ratio": 2.0},
            }
        )
        data["cluster"]["storage-classes"].append({"name": "sc-thin", "device-class": "thin"})
    data["cluster"]["node-pools"] = [pool]
    return data


def simulate(data: dict[str, Any]) -> run.Result:
    ops: list[trace.Op] = [test_simulation.pod(60, "p1", 30 * GiB)]
    result = run.simulate(scenario.parse(data, "test"), replay=ops)
    assert result.error is None, result.error
    return result


def test_a_thin_pool_and_spare_bytes_are_reserved_not_used() -> None:
    plain, with_pool = simulate(one_node(thin=False)), simulate(one_node(thin=True))
    for result, reserved in ((plain, 10 * GiB), (with_pool, 110 * GiB)):
        first, last = result.series[0], result.series[-1]
        assert first["ssd.used"] == 0 and last["ssd.used"] == 30 * GiB  # the one 30 GiB volume
        assert first["ssd.reserved"] == last["ssd.reserved"] == reserved  # spare, plus the pool's extents
        assert last["ssd.used"] + last["ssd.reserved"] + last["ssd.free"] == last["ssd.size"] == 400 * GiB
        # full means no free bytes left: utilisation is over used + free, not over the VG
        assert last["ssd.utilization"] == round(30 / (400 - reserved // GiB), 6)
        capacity = result.summary["capacity"]["ssd"]
        assert (capacity["used_bytes_end"], capacity["reserved_bytes_end"]) == (30 * GiB, reserved)
    thin = with_pool.series[-1]
    assert (thin["thin.size"], thin["thin.used"], thin["thin.reserved"]) == (200 * GiB, 0, 0)
