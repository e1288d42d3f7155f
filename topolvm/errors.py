"""Domain exceptions shared by every layer and every world (real, in-memory, simulated).

Raised by core validation, services and adapters. Each class names its gRPC status code (``code``, the number
from the gRPC spec) — the one mapping there is: ``topolvm.grpc_status`` turns it into ``grpc.StatusCode`` for
servers and back for clients, and services that record a code without speaking gRPC (a LogicalVolume's
``status.code``) use the same number. So callers see the same exception whichever adapter sits behind a port.
"""

from __future__ import annotations

# gRPC status codes (grpc/status.h); kept here so layers below gRPC can name them.
OK = 0
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
INTERNAL = 13
UNAVAILABLE = 14


class TopoLVMError(Exception):
    """Base of all domain errors."""

    code = INTERNAL


class InvalidArgument(TopoLVMError):
    """The request itself is malformed: bad name, bad size, unknown option."""

    code = INVALID_ARGUMENT


class NotFound(TopoLVMError):
    """A named thing (LV, VG, device class, thin pool) does not exist."""

    code = NOT_FOUND


class AlreadyExists(TopoLVMError):
    """The name is taken by something incompatible with the request."""

    code = ALREADY_EXISTS


class InsufficientCapacity(TopoLVMError):
    """Not enough free space for the request."""

    code = RESOURCE_EXHAUSTED


class OutOfRange(TopoLVMError):
    """A size is outside what is allowed (e.g. shrinking an LV)."""

    code = OUT_OF_RANGE


class FailedPrecondition(TopoLVMError):
    """The system is not in a state that allows the operation."""

    code = FAILED_PRECONDITION


class Unavailable(TopoLVMError):
    """A dependency (lvmd, the API server) cannot be reached right now; retrying may help."""

    code = UNAVAILABLE


class DeadlineExceeded(TopoLVMError):
    """The caller's deadline came before the operation finished; it goes on, and a retry picks it up."""

    code = DEADLINE_EXCEEDED


class OperationPending(TopoLVMError):
    """Another call about the same volume is in progress (CSI: ABORTED, "operation pending for volume")."""

    code = ABORTED


class ConfigError(TopoLVMError):
    """A configuration file is invalid; the message names the field and the reason."""

    code = INVALID_ARGUMENT


class Conflict(TopoLVMError):
    """An update raced another writer (stale resourceVersion); re-read and retry."""

    code = ABORTED


class CommandError(TopoLVMError):
    """A system command (mkfs, mount, ...) failed for a reason we do not classify further."""

    def __init__(self, argv: list[str], exit_code: int, stderr: str) -> None:
        self.argv = argv
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)} exited {exit_code}: {stderr.strip()}")


class LvmCommandError(CommandError):
    """An lvm command failed for a reason we do not classify further."""


_BY_CODE: dict[int, type[TopoLVMError]] = {}
for _cls in (InvalidArgument, NotFound, AlreadyExists, InsufficientCapacity, OutOfRange, FailedPrecondition,
             Unavailable, Conflict, DeadlineExceeded):  # fmt: skip
    _BY_CODE.setdefault(_cls.code, _cls)


def from_code(code: int, message: str) -> TopoLVMError:
    """The domain error for a gRPC status code (a generic TopoLVMError for codes without a class)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        err = TopoLVMError(message)
        err.code = code
        return err
    return cls(message)
