"""TopoLVM in Python: a CSI driver for node-local LVM, and a simulator of whole clusters.

Layers (see docs/architecture.md): ``topolvm.core`` is pure policy; ``topolvm.ports`` declares the narrow
interfaces; ``topolvm.services`` holds the stateful logic over those ports; adapters (``topolvm.lvm`` and friends)
talk to the real world; entrypoints (``topolvm.lvmd`` server and CLI) wire them together.
"""

__version__ = "0.1.0"
