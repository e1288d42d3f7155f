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
    cfg = config.loads("mode: pack\nreservation-ttl: 0\nmax-body-bytes: 1024\ntie-break: scheduler\n")
    assert cfg.policy.mode is scheduling.Mode.PACK
    assert (cfg.reservation_ttl, cfg.max_body_bytes) == (0, 1024)
    assert (cfg.policy.tie_break, cfg.extender_weight) == (scheduling.TieBreak.SCHEDULER, None)


def test_the_extender_breaks_ties_only_when_the_weight_says_kube_scheduler_follows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The extender cannot read kube-scheduler's configuration. An upstream file (no tie-break, no weight) sits
    beside upstream's weight 1, where an extender's tie-break is not followed: it holds every tied node instead."""
    caplog.set_level("INFO")
    upstream = config.loads(UPSTREAM)
    assert (upstream.policy.tie_break, upstream.extender_weight) == (scheduling.TieBreak.SCHEDULER, None)
    assert "no extender-weight, so tie-break: scheduler" in caplog.text
    caplog.clear()
    cfg = config.loads("extender-weight: 200\n")
    assert (cfg.policy.tie_break, cfg.extender_weight) == (scheduling.TieBreak.EXTENDER, 200)
    assert config.loads("extender-weight: 1\n").policy.tie_break is scheduling.TieBreak.SCHEDULER
    assert not caplog.text
    caplog.set_level("WARNING")
    explicit = config.loads("tie-break: extender\n")  # the operator's choice, with a warning about what it assumes
    assert explicit.policy.tie_break is scheduling.TieBreak.EXTENDER
    assert f"at least {scheduling.MIN_EXTENDER_WEIGHT}" in caplog.text
    caplog.clear()
    assert config.loads("tie-break: scheduler\nextender-weight: 1\n").extender_weight == 1  # any weight will do
    assert not caplog.text


def test_minimum_weight_outweighs_the_default_plugins() -> None:
    """One step of our score (weight x 10) must beat every default plugin at its best against its worst."""
    assert scheduling.MIN_EXTENDER_WEIGHT * 10 > scheduling.DEFAULT_PLUGIN_WEIGHTS * 100
    assert (scheduling.MIN_EXTENDER_WEIGHT - 1) * 10 <= scheduling.DEFAULT_PLUGIN_WEIGHTS * 100
    with pytest.raises(errors.ConfigError, match="at least 161"):
        config.loads(f"tie-break: extender\nextender-weight: {scheduling.MIN_EXTENDER_WEIGHT - 1}\n")
    low = config.loads(f"extender-weight: {scheduling.MIN_EXTENDER_WEIGHT - 1}\n")
    assert low.policy.tie_break is scheduling.TieBreak.SCHEDULER  # chosen, not refused, when tie-break is unset
    assert config.loads(f"extender-weight: {scheduling.MIN_EXTENDER_WEIGHT}\n").extender_weight == 161


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
        ("tie-break: random", "tie-break"),
        ("extender-weight: 0", "extender-weight"),
        ("extender-weight: 2.5e2", "extender-weight"),
        ("extender-weight: true", "extender-weight"),
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
