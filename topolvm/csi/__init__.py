"""CSI servicers (Identity, Controller; Node next) on stubs generated from the official ``csi.proto``.

Wire format only: requests become ``topolvm.services`` calls, waiting is done by ``topolvm.runtime``, errors
become status codes in ``topolvm.grpc_status.handler``.
"""
