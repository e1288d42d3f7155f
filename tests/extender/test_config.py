"""Config: upstream's YAML loads unchanged; our additions; clear errors naming the field."""

from __future__ import annotations

import pathlib

import pytest

from topolvm import errors
from topolvm.core import scheduling
from topolvm.extender import cli, config

UPSTREAM = """
listen: "localhost:9251"
default-divisor: 10
divisors:
  ssd: 5
  hdd: 10
"""


def test_upstream_config_loads_unchanged() -> None:
    cfg = config.loads(UPSTREAM)
    assert cfg.listen == "localhost:9251"
    assert cfg.policy.default_divisor == 10
    assert cfg.policy.divisor("ssd") == 5
    assert cfg.policy.divisor("other") == 10
    assert cfg.policy.mode is scheduling.Mode.SPREAD


def test_defaults_match_upstream() -> None:
    cfg = config.loads("")
    assert (cfg.listen, cfg.policy.default_divisor) == (":8000", 1.0)
    assert cfg.reservation_ttl == config.DEFAULT_RESERVATION_TTL


def test_additions() -> None:
    cfg = config.loads("mode: pack\nreservation-ttl: 0\nmax-body-bytes: 1024\n")
    assert cfg.policy.mode is scheduling.Mode.PACK
    assert (cfg.reservation_ttl, cfg.max_body_bytes) == (0, 1024)


def test_unknown_keys_warn(caplog: pytest.LogCaptureFixture) -> None:
    config.loads("divisor: 3\n")
    assert "divisor" in caplog.text


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("default-divisor: 0", "default-divisor"),
        ("default-divisor: abc", "default-divisor"),
        ("divisors: {ssd: -1}", "ssd"),
        ("divisors: {ssd: 1.0e-300}", "ssd"),  # would overflow log2 in scoring
        ("divisors: [1]", "divisors"),
        ("mode: fast", "mode"),
        ("reservation-ttl: -3", "reservation-ttl"),
        ("reservation-ttl: .inf", "reservation-ttl"),
        ("max-body-bytes: 0", "max-body-bytes"),
        ("listen: 8000", "listen"),
        ("listen: 'host:port'", "listen"),
        ("- a list", "mapping"),
        ("{{", "YAML"),
    ],
)
def test_bad_config_names_the_field(text: str, field: str) -> None:
    with pytest.raises(errors.ConfigError, match=field):
        config.loads(text)


@pytest.mark.parametrize(
    ("listen", "parsed"),
    [(":8000", ("", 8000)), ("127.0.0.1:1", ("127.0.0.1", 1)), ("[::1]:9", ("::1", 9))],
)
def test_parse_listen(listen: str, parsed: tuple[str, int]) -> None:
    assert config.parse_listen(listen) == parsed


def test_cli_reports_bad_config(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "scheduler.yaml"
    path.write_text("mode: sideways\n")
    assert cli.main(["--config", str(path)]) == 2
    assert cli.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in caplog.text
