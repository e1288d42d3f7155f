"""Host-only tests of the harness plumbing that needs no VM: JUnit parsing and host-side reporting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from harness import junit, runner
from tests.support import hil_node_config

FIXTURE = Path(__file__).parent / "fixtures" / "inner-junit.xml"


def test_junit_cases_get_pytest_node_ids() -> None:
    cases = {c.nodeid: c for c in junit.parse(FIXTURE)}
    assert list(cases) == [
        "tests/contract/test_lvm_contract.py::test_thin[lvm2]",
        "tests/contract/test_lvm_contract.py::TestResize::test_grow[xfs]",
        "tests/contract/test_lvm_contract.py::test_raid1[lvm2]",
        "tests/contract/test_lvm_contract.py::test_plain",
    ]
    grow = cases["tests/contract/test_lvm_contract.py::TestResize::test_grow[xfs]"]
    assert (grow.outcome, grow.line, grow.message) == ("failed", 80, "AssertionError: 1 != 2")
    assert "lvextend said hello" in grow.details
    assert cases["tests/contract/test_lvm_contract.py::test_raid1[lvm2]"].outcome == "skipped"


def test_shipped_source_excludes_caches_and_venv() -> None:
    files = runner.source_files(runner.cache.REPO_ROOT)
    assert Path("harness/agent.py") in files
    assert not [f for f in files if f.parts[0] in (".venv", ".git", ".hil") or "__pycache__" in f.parts]


_OUTER = """
from pathlib import Path
from harness import junit, report, runner, vm

def test_suite(request):
    cases = junit.parse(Path({fixture!r}))
    outcome = vm.VmOutcome(0, False, 1.0, Path("console.log"), Path("qemu.log"))
    run = runner.RunResult(runner.Job("x", ("true",)), Path("."), outcome, {{"exit_code": 1}}, None)
    pytest_run = runner.PytestRun(run, cases)
    report.emit(request.node, pytest_run)
    report.check(pytest_run, "dm or root", request.node)
"""


@pytest.mark.parametrize("xdist", [pytest.param([], id="plain"), pytest.param(["-n", "1"], id="xdist")])
def test_in_vm_cases_become_host_results(tmp_path: Path, xdist: list[str]) -> None:
    (tmp_path / "test_outer.py").write_text(textwrap.dedent(_OUTER.format(fixture=str(FIXTURE))))
    outer_xml = tmp_path / "outer.xml"
    env = {**os.environ, "PYTHONPATH": str(runner.cache.REPO_ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rA",
            *xdist,
            f"--junitxml={outer_xml}",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # the in-VM failure fails the host session
    names = [tc.get("name") for tc in ET.parse(outer_xml).getroot().iter("testcase")]
    if xdist:  # one aggregated host result that names the in-VM failure
        assert "1 failed in" in done.stdout, done.stdout
        assert "tests/contract/test_lvm_contract.py::TestResize::test_grow[xfs]: AssertionError" in done.stdout
        assert len(names) == 1, names
    else:  # each in-VM case is a host result
        assert "1 failed, 3 passed, 1 skipped" in done.stdout, done.stdout
        assert "test_suite::tests/contract/test_lvm_contract.py::TestResize::test_grow[xfs]" in done.stdout
        assert len(names) == 5, names


def test_shipped_files_keep_their_mode_and_are_announced(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_bytes(b"#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    job = runner.Job("x", ("true",), env={"A": "1"}, source=runner.cache.REPO_ROOT, files={"csi-sanity": tool})
    disk = tmp_path / "job.tar"
    runner.pack_job(job, disk)
    with tarfile.open(disk) as archive:
        member = archive.getmember("files/csi-sanity")
        assert member.mode & 0o111 and member.size == tool.stat().st_size
        spec = json.loads(archive.extractfile("job.json").read())  # type: ignore[union-attr]
    assert spec["env"] == {"A": "1", "TOPOLVM_HIL_FILES": runner.FILES_DIR}
    plain = tmp_path / "plain.tar"  # nothing shipped: no files/ and no variable
    runner.pack_job(runner.Job("x", ("true",)), plain)
    with tarfile.open(plain) as archive:
        assert not [n for n in archive.getnames() if n.startswith("files")]
        assert "TOPOLVM_HIL_FILES" not in json.loads(archive.extractfile("job.json").read())["env"]  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_shipped_file_names_are_plain(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        runner.pack_job(runner.Job("x", ("true",), files={name: tmp_path}), tmp_path / "job.tar")


def test_missing_shipped_file_fails_before_boot(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        runner.pack_job(runner.Job("x", ("true",), files={"tool": tmp_path / "nope"}), tmp_path / "job.tar")


def test_extra_drives_are_attached_read_only_by_serial(tmp_path: Path) -> None:
    """A job's drives (the node profile) reach qemu as read-only virtio disks named by serial, after the job and
    output disks (so the guest's vda..vdc stay root, job, out); the CPU hides the vector extensions qemu 7.2
    emulates slowly."""
    from harness import image, vm

    base = image.Image(tmp_path, tmp_path / "vmlinuz", tmp_path / "initrd.img", tmp_path / "root.img", {})
    profile = tmp_path / "node.img"
    disks = vm.Disks(job=tmp_path / "job.tar", out=tmp_path / "out.img", extra=(("hil-node", profile),))
    argv = vm.argv(vm.VmConfig(nvme_disks=1), base, tmp_path, disks)
    drives = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-drive"]
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    assert drives[3] == f"file={profile},if=none,id=x0,format=raw,readonly=on"
    assert devices[:4] == [
        "virtio-blk-pci,drive=root,serial=hil-root",
        "virtio-blk-pci,drive=job,serial=hil-job",
        "virtio-blk-pci,drive=out,serial=hil-out",
        "virtio-blk-pci,drive=x0,serial=hil-node",
    ]
    assert argv[argv.index("-cpu") + 1] == "max,-avx,-avx2,-sha-ni"


def test_the_node_suites_lvmd_state_age_is_kubelets_stats_period() -> None:
    """lvmd's --max-state-age in the node suite's chart values is kubelet's volumeStatsAggPeriod there: a dead disk
    then shows within three periods (tests/hil/node/test_health.py's DETECTION_S)."""
    values = yaml.safe_load((Path(__file__).parent / "node" / "values.yaml").read_text())
    assert values["lvmd"]["args"] == [f"--max-state-age={hil_node_config.VOLUME_STATS_PERIOD_S}"]
    assert hil_node_config.kubelet_config(10248)["volumeStatsAggPeriod"] == f"{hil_node_config.VOLUME_STATS_PERIOD_S}s"
