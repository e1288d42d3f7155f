"""Maps a failed lvm command (exit code + stderr under LC_ALL=C) to a domain error.

lvm exits 5 (ECMD_FAILED) for most failures; the message tells them apart. Unknown failures become
``LvmCommandError`` carrying argv, exit code and stderr.
"""

from __future__ import annotations

import re

from topolvm import errors

_NOT_FOUND = re.compile(r"not found|Failed to find|doesn't exist|does not exist", re.IGNORECASE)
_NO_SPACE = re.compile(
    r"insufficient (free )?(space|extents)|not enough free|Insufficient suitable|must not exceed number of physical",
    re.IGNORECASE,
)
_EXISTS = re.compile(r"already exists", re.IGNORECASE)
_SHRINK = re.compile(r"not larger than existing|matches existing size", re.IGNORECASE)
_INVALID = re.compile(r"is invalid|Invalid argument|must be", re.IGNORECASE)


def error_for(argv: list[str], exit_code: int, stderr: str) -> errors.TopoLVMError:
    text = "\n".join(line.strip() for line in stderr.splitlines() if "WARNING:" not in line)
    if _NO_SPACE.search(text):
        return errors.InsufficientCapacity(text or stderr.strip())
    if _SHRINK.search(text):
        return errors.OutOfRange(text)
    if _EXISTS.search(text):
        return errors.AlreadyExists(text)
    if _NOT_FOUND.search(text):
        return errors.NotFound(text)
    if _INVALID.search(text):
        return errors.InvalidArgument(text)
    return errors.LvmCommandError(argv, exit_code, stderr)
