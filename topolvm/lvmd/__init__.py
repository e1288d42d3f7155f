"""lvmd: the daemon that owns a node's volume groups.

``config`` loads upstream-format lvmd.yaml; ``server`` serves ``topolvm.services.lvmd.LvmdService`` over gRPC on
a unix socket; ``client`` is the gRPC ``Lvmd`` adapter; ``cli`` is the ``topolvm-lvmd`` command.
"""
