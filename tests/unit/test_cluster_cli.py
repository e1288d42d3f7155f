"""The end-to-end cluster's command line refuses bad input before it starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import cluster_cli


@pytest.mark.parametrize(
    ("value", "message"),
    [("10x", "--topolvm: not a quantity: '10x'"), ("1Mi", "--topolvm: 1Mi is too small"), ("-4Gi", "--topolvm")],
)
def test_a_bad_vg_size_is_refused_naming_the_flag(
    value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cluster_cli.main(["up", "--dir", str(tmp_path), f"--topolvm={value}"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_status_and_down_of_a_cluster_that_never_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster_cli.main(["status", "--dir", str(tmp_path)]) == 1
    assert '"running": false' in capsys.readouterr().out
    assert cluster_cli.main(["down", "--dir", str(tmp_path)]) == 0
    assert "not running" in capsys.readouterr().out
