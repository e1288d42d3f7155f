"""Domain errors to ``grpc.StatusCode`` and back, by the code each error class names (``topolvm.errors``).

Servicers (lvmd, CSI) wrap each unary handler in ``handler``, the one place errors become status codes, and
are decorated with ``unimplemented_from`` so an RPC they leave out answers UNIMPLEMENTED quietly; gRPC clients
call ``to_domain`` so a caller sees the same exception whichever adapter it talks to.
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
Servicer = TypeVar("Servicer", bound=type)

_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def code_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, errors.TopoLVMError):
        return _BY_VALUE.get(exc.code, grpc.StatusCode.INTERNAL)
    return grpc.StatusCode.INTERNAL


# A call without a deadline reports one centuries away (gRPC's "infinite future"); no wait here can take that.
NO_DEADLINE_BEYOND = 7 * 24 * 3600.0


def time_left(context: grpc.ServicerContext | None) -> float | None:
    """Seconds left before the caller's deadline, or None when the call has none (or there is no call)."""
    if context is None:
        return None
    remaining: float | None = context.time_remaining()
    if remaining is None or remaining > NO_DEADLINE_BEYOND:
        return None
    return max(0.0, remaining)


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


def _unimplemented(name: str) -> Callable[[Any, Any, grpc.ServicerContext], Any]:
    def method(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        log.warning("rpc=%s not implemented (not advertised in capabilities): answering UNIMPLEMENTED", name)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented by this driver")

    method.__name__ = method.__qualname__ = name
    return method


def unimplemented_from(base: type) -> Callable[[Servicer], Servicer]:
    """Class decorator: every RPC of the generated ``base`` servicer that the class does not define answers
    UNIMPLEMENTED with one WARNING line. The generated defaults raise NotImplementedError, which gRPC logs as a
    failed application call with a traceback at ERROR — noise for a CO probing an RPC that is not advertised."""

    def decorate(cls: Servicer) -> Servicer:
        for name, default in vars(base).items():
            if not name.startswith("_") and callable(default) and getattr(cls, name) is default:
                setattr(cls, name, _unimplemented(name))
        return cls

    return decorate
