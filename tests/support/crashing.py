"""Run a TopoLVM command that kills itself (SIGKILL, no cleanup) right after a chosen call returns.

    python -m tests.support.crashing MODULE CLASS.METHOD -- ARGS...

e.g. ``tests.support.crashing topolvm.cmd.node topolvm.services.lvmd:LvmdService.create_lv -- --node-name n1``:
the node agent dies just after lvcreate succeeded and before the LogicalVolume's status is written. Used by the
crash-safety tests; product code carries no fail points.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any


def main() -> None:
    command, target, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: crashing MODULE PKG.MOD:CLASS.METHOD -- ARGS..."
    module_name, _, qualname = target.partition(":")
    class_name, method_name = qualname.split(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    original = getattr(cls, method_name)

    def then_die(self: Any, *a: Any, **kw: Any) -> Any:
        original(self, *a, **kw)
        print(f"crashing: {qualname} returned; SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(cls, method_name, then_die)
    sys.argv = [command, *args]
    sys.exit(importlib.import_module(command).main())


if __name__ == "__main__":
    main()
