"""Host side of the HIL tests: fixtures that boot the VM, and the rule that guest/ runs only in the VM.

tests/hil/guest/ holds tests that need the VM's kernel (device-mapper, NVMe); on the host they are not
collected at all, the host test in test_vm_suites.py runs them inside the VM and reports each one.
"""

from __future__ import annotations

import os

import pytest

from harness import availability
from tests.support import prerequisites

collect_ignore_glob = [] if os.environ.get("TOPOLVM_HIL_GUEST") == "1" else ["guest/*", "node/*"]


@pytest.fixture(scope="session")
def hil_ready() -> None:
    """Skip (locally) or fail (CI=true) with the reason when the VM cannot run on this machine."""
    reason = availability.unavailable()
    if reason is None:
        return
    prerequisites.missing(f"HIL VM unavailable: {reason}", ci=f"HIL VM cannot start in CI: {reason}")
