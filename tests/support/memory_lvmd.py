"""An lvmd service over in-memory LVM, started: one volume group ``vg`` and one default thick class ``ssd`` with
no spare (the set-up most service tests need)."""

from __future__ import annotations

from topolvm.core import model
from topolvm.lvm import memory as lvm_memory
from topolvm.services import lvmd


def started(vg_bytes: int) -> lvmd.LvmdService:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [vg_bytes])
    svc = lvmd.LvmdService(
        lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    )
    svc.start()
    return svc
