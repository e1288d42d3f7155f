"""Domain exceptions shared by every layer and every world (real, in-memory, simulated).

Raised by core validation, services and adapters; translated to gRPC status codes in exactly one place
(``topolvm.grpc_status``) and back again by gRPC clients, so callers see the same exception whichever adapter
sits behind a port.
"""


class TopoLVMError(Exception):
    """Base of all domain errors."""


class InvalidArgument(TopoLVMError):
    """The request itself is malformed: bad name, bad size, unknown option."""


class NotFound(TopoLVMError):
    """A named thing (LV, VG, device class, thin pool) does not exist."""


class AlreadyExists(TopoLVMError):
    """The name is taken by something incompatible with the request."""


class InsufficientCapacity(TopoLVMError):
    """Not enough free space for the request."""


class OutOfRange(TopoLVMError):
    """A size is outside what is allowed (e.g. shrinking an LV)."""


class FailedPrecondition(TopoLVMError):
    """The system is not in a state that allows the operation."""


class Unavailable(TopoLVMError):
    """A dependency (lvmd, the API server) cannot be reached right now; retrying may help."""


class ConfigError(TopoLVMError):
    """A configuration file is invalid; the message names the field and the reason."""


class LvmCommandError(TopoLVMError):
    """An lvm command failed for a reason we do not classify further."""

    def __init__(self, argv: list[str], exit_code: int, stderr: str) -> None:
        self.argv = argv
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(f"{' '.join(argv)} exited {exit_code}: {stderr.strip()}")
