"""Domain errors survive a trip through gRPC status codes unchanged in kind."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from topolvm import errors, grpc_status


class FakeCall(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def __getattr__(self, name: str) -> Any:  # the rest of grpc.Call is not needed here
        raise AttributeError(name)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.InsufficientCapacity("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.OutOfRange("x"), grpc.StatusCode.OUT_OF_RANGE),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.Conflict("x"), grpc.StatusCode.ABORTED),
        (errors.LvmCommandError(["lvm"], 5, "boom"), grpc.StatusCode.INTERNAL),
        (RuntimeError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
def test_round_trip(exc: Exception, code: grpc.StatusCode) -> None:
    assert grpc_status.code_for(exc) is code
    back = grpc_status.to_domain(FakeCall(code, "msg"))
    assert str(back) == "msg" and back.code == code.value[0]
    if isinstance(exc, errors.TopoLVMError) and code is not grpc.StatusCode.INTERNAL:
        assert type(back) is type(exc)


def test_deadline_is_unavailable() -> None:
    assert isinstance(grpc_status.to_domain(FakeCall(grpc.StatusCode.DEADLINE_EXCEEDED, "slow")), errors.Unavailable)
