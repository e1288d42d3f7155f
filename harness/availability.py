"""Can the HIL VM run here, and if not, why? Used by tests/hil to skip locally or fail in CI.

Called by tests/hil/conftest.py. A missing image is not a reason by itself: it is built on first use when
this machine can build it (root, debootstrap, network).
"""

from __future__ import annotations

import os

from harness import image, vm


def in_ci() -> bool:
    """CI=true (GitHub Actions, GitLab, most runners) or CI=1: HIL tests must run, never skip."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable() -> str | None:
    """None when the VM can boot (possibly after building the image); otherwise the reason."""
    problems = vm.prerequisites()
    if image.cached() is None:
        problems += [f"image not cached and cannot be built: {p}" for p in image.build_prerequisites()]
    return "; ".join(problems) or None
