"""The e2e stack's RBAC-refusal detector: it must catch every way our processes and the sidecars log an API
server's 403, and nothing else (CI failed once on a timestamp's ",403" milliseconds, once on a volume ID)."""

import pytest

from tests.support.stack import _REFUSED


@pytest.mark.parametrize(
    "line",
    [
        "WARNING topolvm.extender: POST /filter -> 403: nope",
        "kubernetes.client.exceptions.ApiException: (403)",
        'E1206 leader lease: leases "topolvm-io" is forbidden: User "system:serviceaccount:x" cannot get',
        "ERROR LogicalVolume 'x': access denied: no",
        "failed: HTTP 403 Forbidden",
        "watch ended with status: 403",
        "rpc error: code: 403",
    ],
)
def test_a_refusal_is_found(line: str) -> None:
    assert _REFUSED.search(line)


@pytest.mark.parametrize(
    "line",
    [
        "2026-12-06 08:45:09,403 INFO topolvm.services.lvmd: resized LV vg/e87ebf7d to 4294967296 bytes",
        "INFO created LV vg/403f0ea2-1c9b-4c1e-9a0b-3f1d7c2b8e11",
        "INFO volume pvc-1403 size 4030 bytes",
    ],
)
def test_other_lines_are_not_refusals(line: str) -> None:
    assert not _REFUSED.search(line)
