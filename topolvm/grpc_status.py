"""Domain errors to ``grpc.StatusCode`` and back, by the code each error class names (``topolvm.errors``).

Servers (lvmd, and the CSI servicers later) call ``abort`` in one wrapper, never per handler; gRPC clients call
``to_domain`` so a caller sees the same exception whichever ``Lvmd`` adapter it talks to.
"""

from __future__ import annotations

import grpc

from topolvm import errors

_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def code_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, errors.TopoLVMError):
        return _BY_VALUE.get(exc.code, grpc.StatusCode.INTERNAL)
    return grpc.StatusCode.INTERNAL


def to_domain(err: grpc.RpcError) -> errors.TopoLVMError:
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(f"deadline exceeded: {details}")
    return errors.from_code(code.value[0], details)
