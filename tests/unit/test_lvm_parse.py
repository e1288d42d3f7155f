"""The lvm report parser and error classifier, on recorded lvm2 output (tests/fixtures/lvm)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from topolvm import errors
from topolvm.lvm import classify, command, parse

FIXTURES = Path(__file__).parent.parent / "fixtures" / "lvm"


def test_parse_recorded_thick_report() -> None:
    state = parse.parse_fullreport((FIXTURES / "fullreport_thick.json").read_text())
    vg = state.vg("exvg")
    assert vg is not None
    assert (vg.size, vg.free, vg.extent_size, vg.missing_pvs) == (4286578688, 4072669184, 4194304, 0)
    assert [(pv.name, pv.free) for pv in vg.pvs] == [("/dev/loop0", 1983905792), ("/dev/loop1", 2088763392)]
    lv1 = vg.find_lv("lv1")
    assert lv1 is not None and lv1.size == 104857600 and lv1.tags == ("topolvm.io/owner=x",)
    assert lv1.path == "/dev/exvg/lv1" and not lv1.is_thin and lv1.data_percent is None
    lv2 = vg.find_lv("lv2")
    assert lv2 is not None and (lv2.segtype, lv2.stripes, lv2.data_stripes) == ("striped", 2, 2)
    assert (lv1.segtype, lv1.stripes) == ("linear", 1)
    assert vg.find_lv("nope") is None


def test_parse_thin_rows() -> None:
    row: parse.LvRow = {
        "lv_name": "thin1", "lv_uuid": "u", "lv_path": "/dev/vg/thin1", "lv_size": "1073741824",
        "lv_attr": "Vwi-a-tz--", "lv_tags": "a=1,b=2", "pool_lv": "pool", "origin": "[base]",
        "data_percent": "12.50", "metadata_percent": "",
    }  # fmt: skip
    lv = parse.parse_lv(row, "vg")
    assert lv.is_thin and lv.pool == "pool" and lv.origin == "base" and lv.tags == ("a=1", "b=2")
    assert lv.data_percent == 12.5 and lv.metadata_percent is None


@pytest.mark.parametrize("text", ["", "not json", '{"report": [{"vg": []}]}', '{"report": [{"vg": [{}]}]}'])
def test_malformed_reports_are_errors_not_crashes(text: str) -> None:
    with pytest.raises(errors.TopoLVMError):
        parse.parse_fullreport(text)


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ('  Volume group "vg" has insufficient free space (10 extents): 25600 required.', errors.InsufficientCapacity),
        ('  Logical Volume "lv1" already exists in volume group "vg"', errors.AlreadyExists),
        ('  Failed to find logical volume "vg/x"', errors.NotFound),
        ('  Volume group "nosuch" not found', errors.NotFound),
        ("  New size given (1 extents) not larger than existing size (2 extents)", errors.OutOfRange),
        ('  Logical volume name "a;b" is invalid.', errors.InvalidArgument),
        ("  Internal error: something odd", errors.LvmCommandError),
    ],
)
def test_classify(stderr: str, error: type[Exception]) -> None:
    exc = classify.error_for(["lvm", "x"], 5, "  WARNING: Activation disabled.\n" + stderr)
    assert type(exc) is error


def test_runner_argv_has_prefix_config_and_no_shell() -> None:
    runner = command.Runner(prefix=("nsenter", "-t", "1"), config="global { activation = 0 }")
    assert runner.argv("lvs", ["--", "vg"]) == [
        "nsenter", "-t", "1", "lvm", "lvs", "--config", "global { activation = 0 }", "--", "vg",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        # upstream's lvm-command-prefix ends with the lvm binary (its default: nsenter ... /sbin/lvm)
        (("/usr/bin/nsenter", "-t", "1", "/sbin/lvm"), ["/usr/bin/nsenter", "-t", "1", "/sbin/lvm", "lvs"]),
        (("/usr/sbin/lvm",), ["/usr/sbin/lvm", "lvs"]),
        # a prefix without it runs lvm from PATH after it; none at all runs lvm directly
        (("nsenter", "-t", "1"), ["nsenter", "-t", "1", "lvm", "lvs"]),
        ((), ["lvm", "lvs"]),
        (("/opt/lvm-wrapper",), ["/opt/lvm-wrapper", "lvm", "lvs"]),
    ],
)
def test_runner_accepts_upstreams_prefix_with_the_lvm_binary(prefix: tuple[str, ...], expected: list[str]) -> None:
    assert command.Runner(prefix=prefix).argv("lvs", []) == expected


def test_runner_timeout_kills_and_reports_unavailable() -> None:
    runner = command.Runner(lvm_binary="sleep", timeout=0.2)
    with pytest.raises(errors.Unavailable, match="timed out"):
        runner.run("5", [])


def test_runner_timeout_kills_lvm_behind_a_forking_prefix() -> None:
    # A prefix that forks and waits, like nsenter -p: killing only the direct child would leave "lvm" running.
    forking = (sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])")
    marker = "31.41592"
    runner = command.Runner(prefix=forking, lvm_binary="sleep", timeout=0.5)
    with pytest.raises(errors.Unavailable, match=r"timed out after 0.5s"):
        runner.run(marker, [])
    time.sleep(0.2)
    alive = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False)
    assert alive.returncode == 1, f"lvm survived its timeout: {alive.stdout!r}"


def test_runner_missing_binary_is_unavailable() -> None:
    with pytest.raises(errors.Unavailable, match="cannot run"):
        command.Runner(lvm_binary="/nonexistent/lvm").run("lvs", [])
