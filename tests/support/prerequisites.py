"""A test whose prerequisite is missing (a peer binary, the VM, chromium…): skipped here with the reason, failed
with it in CI (``CI`` is true/1/yes), where a missing prerequisite is a broken set-up, not a reason to test less.
tests/conftest.py turns any other skip in CI into a failure too, unless its reason is one of the allowed ones."""

from __future__ import annotations

from typing import NoReturn

import pytest

from harness import availability


def missing(reason: str, *, ci: str | None = None) -> NoReturn:
    """Skip with ``reason``; in CI, fail with ``ci`` (default: ``reason``) and no traceback. Reported at the caller's
    line, not this one."""
    __tracebackhide__ = True
    if availability.in_ci():
        pytest.fail(reason if ci is None else ci, pytrace=False)
    pytest.skip(reason)
