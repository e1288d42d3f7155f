"""``topolvm-sim fidelity``: a real replay's outcome file against the simulator (simulator/fidelity_cli.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from simulator import cli, fidelity, fidelity_cli, fidelity_trace


def said(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed, with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


@pytest.fixture(scope="module")
def simulated() -> fidelity.Outcome:
    """What the simulator does with the checked-in trace in deploy/'s mode: a "real" outcome that agrees."""
    ops = fidelity_trace.load()
    outcome = fidelity.simulated(fidelity_trace.simulate("both", ops), ops)
    return dataclasses.replace(outcome, tied={})  # the real replayer knows no tied sets


def test_an_agreeing_outcome_passes_and_writes_the_view(
    simulated: fidelity.Outcome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = fidelity_cli.dump(simulated, mode="both", path=tmp_path / "fidelity-both.real.json")
    assert fidelity_cli.load(str(real)) == ("both", simulated)  # the file round-trips
    out = tmp_path / "out"
    assert cli.main(["fidelity", "--real", str(real), "--seeds", "1", "--out", str(out)]) == 0
    page = (out / "fidelity-both.html").read_text()
    assert "the worlds agree" in page and "<svg" in page
    summary = json.loads((out / "fidelity-both.json").read_text())
    assert summary["ok"] is True and summary["same_node"] == summary["claims"] == 311
    assert "the worlds agree" in said(capsys)


def test_a_claim_placed_elsewhere_fails_and_is_named(simulated: fidelity.Outcome, tmp_path: Path) -> None:
    key, node = next((k, n) for k, n in simulated.nodes.items() if n is not None)
    other = next(n for n in fidelity_trace.NODES if n != node)
    moved = dataclasses.replace(simulated, nodes={**simulated.nodes, key: other})
    real = fidelity_cli.dump(moved, mode="both", path=tmp_path / "real.json")
    out = tmp_path / "out"
    assert cli.main(["fidelity", "--real", str(real), "--seeds", "", "--out", str(out)]) == 1
    summary = json.loads((out / "fidelity-both.json").read_text())
    assert summary["ok"] is False
    assert any(f"claim {key[0]}/{key[1]}: simulated {node}" in m for m in summary["mismatches"])
    assert "the worlds DISAGREE" in (out / "fidelity-both.html").read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(mode="spread"), "mode 'spread' is not one of both, extender, capacity-tracking"),
        (lambda d: d.update(trace_sha256="0" * 64), "trace_sha256 is not that of"),
        (lambda d: d.update(format="v0"), "format 'v0' is not"),
        (lambda d: d.update(colour="blue"), "unknown field `colour`"),
        (lambda d: d.pop("unplaced"), "missing required field `unplaced`"),
        (lambda d: d["free"][0].update(bytes="lots"), "Expected `int`, got `str` - at `$.free[0].bytes`"),
        (lambda d: d.update(unplaced=-1), "unplaced must not be negative, not -1"),
        (lambda d: d["free"][2].update(bytes=-5), "free[2].bytes must not be negative, not -5"),
        (lambda d: d["claims"].append(dict(d["claims"][0])), "claims[311]: fidelity/p000-d0 is listed twice"),
        (lambda d: d["free"].append(dict(d["free"][0])), "free[27]: k02 ssd is listed twice"),
    ],
)
def test_a_bad_outcome_file_is_refused_with_the_field_named(
    simulated: fidelity.Outcome, tmp_path: Path, change: object, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fidelity_cli.dump(simulated, mode="both", path=tmp_path / "real.json")
    data = json.loads(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert cli.main(["fidelity", "--real", str(path), "--out", str(out)]) == 2
    assert message in said(capsys)
    assert not out.exists()  # nothing written for a refused file


def test_a_missing_or_broken_file_and_bad_seeds_are_refused(
    simulated: fidelity.Outcome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["fidelity", "--real", str(tmp_path / "none.json")]) == 2
    assert "No such file" in said(capsys)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert cli.main(["fidelity", "--real", str(broken)]) == 2
    assert "not JSON" in said(capsys)
    good = fidelity_cli.dump(simulated, mode="both", path=tmp_path / "real.json")
    assert cli.main(["fidelity", "--real", str(good), "--seeds", "1,x", "--out", str(tmp_path / "o")]) == 2
    assert "--seeds '1,x': comma-separated integers" in said(capsys)


def test_the_summary_is_strict_json_when_the_statistic_is_infinite(simulated: fidelity.Outcome, tmp_path: Path) -> None:
    """A real plane that placed nothing: the homogeneity statistic is inf, written as null (no ``Infinity``)."""
    nothing = dataclasses.replace(simulated, nodes=dict.fromkeys(simulated.nodes))
    real = fidelity_cli.dump(nothing, mode="both", path=tmp_path / "real.json")
    out = tmp_path / "out"
    assert cli.main(["fidelity", "--real", str(real), "--seeds", "", "--out", str(out)]) == 1

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    summary = json.loads((out / "fidelity-both.json").read_text(), parse_constant=refuse)
    assert summary["distribution"]["statistic"] is None and summary["distribution"]["p_value"] == 0.0
