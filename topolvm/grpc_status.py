"""Domain errors to ``grpc.StatusCode`` and back, by the code each error class names (``topolvm.errors``).

Servicers (lvmd, CSI) wrap each unary handler in ``handler``, the one place errors become status codes; gRPC
clients call ``to_domain`` so a caller sees the same exception whichever adapter it talks to.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from topolvm import errors

log = logging.getLogger(__name__)
Req = TypeVar("Req")
Resp = TypeVar("Resp")

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


def handler(
    fn: Callable[[Any, Req, grpc.ServicerContext], Resp],
) -> Callable[[Any, Req, grpc.ServicerContext], Resp]:
    """Wrap a servicer method: domain errors abort with their code; anything else is INTERNAL and logged."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            return fn(self, request, context)
        except errors.TopoLVMError as exc:
            code = code_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.error("%s failed: %s", fn.__name__, exc)
            context.abort(code, str(exc))
        except Exception:
            log.exception("%s failed unexpectedly", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{fn.__name__}: internal error, see the log")

    return wrapper
