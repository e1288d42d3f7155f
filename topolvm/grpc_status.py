"""The one mapping between domain errors and gRPC status codes, both ways.

Servers (lvmd, and the CSI servicers later) call ``abort`` in one wrapper, never per handler; gRPC clients call
``to_domain`` so a caller sees the same exception whichever ``Lvmd`` adapter it talks to.
"""

from __future__ import annotations

import grpc

from topolvm import errors

_CODES: tuple[tuple[type[errors.TopoLVMError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.InsufficientCapacity, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
)
_EXCEPTIONS: dict[grpc.StatusCode, type[errors.TopoLVMError]] = {}
for _exc, _code in _CODES:
    _EXCEPTIONS.setdefault(_code, _exc)


def code_for(exc: BaseException) -> grpc.StatusCode:
    for exc_type, code in _CODES:
        if isinstance(exc, exc_type):
            return code
    return grpc.StatusCode.INTERNAL


def to_domain(err: grpc.RpcError) -> errors.TopoLVMError:
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(f"deadline exceeded: {details}")
    exc_type = _EXCEPTIONS.get(code)
    if exc_type is None:
        return errors.TopoLVMError(f"{code.name}: {details}")
    return exc_type(details)
