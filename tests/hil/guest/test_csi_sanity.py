"""csi-sanity (kubernetes-csi/csi-test v5.6.0) against the all-in-one driver on real device-mapper LVM.

Runs inside the HIL VM only. The driver is ``python -m topolvm.cmd.allinone``: embedded lvmd over lvm2, the
in-memory cluster, the node agent, and CSI Identity/Controller/Node on one unix socket. Two configurations
(a thick device class; a thin class on a thin pool), each with the mount and the block access type. Every spec
must pass; specs skipped on purpose are listed with a reason in tests/hil/csi-sanity-skip.txt, and csi-sanity
skips by itself the ones whose capability the driver does not advertise. After each run no LV may be left.

csi-sanity is a Go binary built on the host by ci/peers/build.sh and shipped into the VM by the harness
(``Job.files``, found here through $TOPOLVM_HIL_FILES); the ``csi-sanity`` suite of tests/hil/test_vm_suites.py
does that. Without it (the ``guest`` suite) these tests skip. csi-sanity's output, its JUnit report, a summary
and the driver's log of every run are written to $TOPOLVM_HIL_OUT and come back to the host run directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import faults
from tests.hil.guest.serving import wait_serving

pytestmark = [pytest.mark.root, pytest.mark.dm, pytest.mark.slow]

SKIP_LIST = Path(__file__).resolve().parents[1] / "csi-sanity-skip.txt"
WORK = Path("/tmp/csi-sanity")
VG = "csivg"
NODE = "hil-node"
MiB = 1 << 20
VOLUME_SIZE = 64 * MiB  # csi-sanity's default is 10 GiB; the VM's disks are 1 GiB each
EXPAND_SIZE = 128 * MiB
SANITY_TIMEOUT_S = 600.0  # one run takes 60-75 s under TCG
POOL = "pool"
# Skips csi-sanity takes because of an answer, not a capability: they would hide a wrong answer as a skip.
RESULT_DRIVEN_SKIPS = ("Required bytes not supported", "capacity of the volume is unknown")

CONFIGS = {
    "thick": """\
device-classes:
  - name: thick
    volume-group: csivg
    default: true
    spare-gb: 0
lvm-command-prefix: []
""",
    "thin": """\
device-classes:
  - name: thin
    volume-group: csivg
    default: true
    type: thin
    thin-pool:
      name: pool
      overprovision-ratio: 10.0
lvm-command-prefix: []
""",
}


def out_dir() -> Path:
    path = Path(os.environ.get("TOPOLVM_HIL_OUT", "/tmp/hil-out"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_csi_sanity() -> Path | None:
    explicit = os.environ.get("TOPOLVM_CSI_SANITY")
    if explicit:
        return Path(explicit)
    shipped = os.environ.get("TOPOLVM_HIL_FILES")
    if shipped and (Path(shipped) / "csi-sanity").is_file():
        return Path(shipped) / "csi-sanity"
    found = shutil.which("csi-sanity")
    return Path(found) if found else None


@dataclasses.dataclass(frozen=True)
class SkipEntry:
    pattern: str
    reason: str
    config: str = ""  # "" applies to every configuration


def read_skip_list(path: Path = SKIP_LIST) -> list[SkipEntry]:
    """Entries ``[config] <regexp>  # <reason>`` (the ``[config]`` part optional); comment and blank lines
    ignored; a missing reason is an error."""
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        config = ""
        if line.startswith("["):
            config, _, line = line[1:].partition("]")
            if config not in CONFIGS:
                raise ValueError(f"{path}:{number}: unknown configuration [{config}]")
            line = line.strip()
        pattern, sep, reason = line.partition("  # ")
        if not sep or not reason.strip() or not pattern.strip():
            raise ValueError(f"{path}:{number}: an entry is '[config] <regexp>  # <reason>', got {raw!r}")
        re.compile(pattern)  # Go's RE2 syntax is close enough to catch typos
        entries.append(SkipEntry(pattern.strip(), reason.strip(), config))
    return entries


def skip_regexp(entries: list[SkipEntry], config: str = "") -> str:
    return "|".join(f"(?:{e.pattern})" for e in entries if e.config in ("", config))


@dataclasses.dataclass(frozen=True)
class Driver:
    config: str
    device_class: str
    socket: Path
    workdir: Path
    log: Path
    process: subprocess.Popen[bytes]


def _volume_lvs() -> list[str]:
    """Every visible LV of the VG but the thin pool: what the driver made and has not removed yet."""
    report = json.loads(faults.run("lvs", "--reportformat", "json", "-o", "lv_name", "--select", f"vg_name={VG}"))
    return [row["lv_name"] for row in report["report"][0]["lv"] if row["lv_name"] != POOL]


def _wipe(disks: list[str]) -> None:
    subprocess.run(["vgremove", "-ff", "-y", VG], capture_output=True, check=False)
    for disk in disks:
        subprocess.run(["pvremove", "-ff", "-y", disk], capture_output=True, check=False)
        subprocess.run(["wipefs", "-a", "-q", disk], capture_output=True, check=False)
    subprocess.run(["udevadm", "settle"], capture_output=True, check=False)


@pytest.fixture(scope="module")
def csi_sanity() -> Path:
    binary = find_csi_sanity()
    if binary is None:
        pytest.skip(
            "csi-sanity was not shipped with this run: `pytest tests/hil -k csi-sanity` ships it (build it with "
            "ci/peers/build.sh), or `python -m harness.run --ship <cache>/peers-v1/bin/csi-sanity -m '' "
            "tests/hil/guest/test_csi_sanity.py`"
        )
    assert os.access(binary, os.X_OK), f"{binary} is not executable"
    return binary


@pytest.fixture(scope="module", params=list(CONFIGS))
def driver(request: pytest.FixtureRequest, csi_sanity: Path) -> Iterator[Driver]:
    config: str = request.param
    disks = faults.nvme_disks() or [d for d in os.environ.get("TOPOLVM_TEST_PVS", "").split(",") if d]
    assert disks, "no NVMe disks in the VM"
    _wipe(disks)
    faults.run("pvcreate", "-y", *disks)
    faults.run("vgcreate", "-y", VG, *disks)
    if config == "thin":
        faults.run("lvcreate", "-y", "--type", "thin-pool", "-L", "2g", "-n", POOL, VG)
    workdir = WORK / config
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    lvmd_yaml = workdir / "lvmd.yaml"
    lvmd_yaml.write_text(CONFIGS[config])
    socket_path = workdir / "csi.sock"
    log = out_dir() / f"driver-{config}.log"
    with log.open("wb") as log_handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "topolvm.cmd.allinone",
                "--csi-socket",
                str(socket_path),
                "--config",
                str(lvmd_yaml),
                "--node-name",
                NODE,
                "--allowed-target-prefix",
                str(workdir),
                "--create-timeout",
                "120",
            ],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_serving(socket_path, process, log)
        yield Driver(config, config, socket_path, workdir, log, process)
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the driver did not stop within 60s of SIGTERM; log in {log}", pytrace=False)
        assert code == 0, f"the driver exited with {code} after SIGTERM:\n{log.read_text()[-4000:]}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        _wipe(disks)


def _junit_counts(path: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """Counts by status, the failed specs' names, and the skipped specs with their reasons."""
    counts: dict[str, int] = {}
    failed, skipped = [], []
    if not path.exists():
        return counts, failed, skipped
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if not name.startswith("[It]"):
            continue  # [BeforeSuite]/[AfterSuite] and friends are not specs
        status = case.get("status", "")
        counts[status] = counts.get(status, 0) + 1
        if status == "skipped":
            node = case.find("skipped")
            reason = node.get("message", "") if node is not None else ""
            skipped.append(f"{name} -- {reason.removeprefix('skipped - ')}")
        elif status == "pending":  # disabled in csi-sanity itself (XIt)
            skipped.append(f"{name} -- pending: disabled in csi-sanity")
        elif status != "passed":
            failed.append(name)
    return counts, failed, skipped


def test_skip_list_entries_have_reasons() -> None:
    entries = read_skip_list()
    assert len({e.pattern for e in entries}) == len(entries), "duplicate entries in the skip list"


@pytest.mark.parametrize("access_type", ["mount", "block"])
def test_csi_sanity(csi_sanity: Path, driver: Driver, access_type: str) -> None:
    name = f"{driver.config}-{access_type}"
    workdir = driver.workdir / access_type
    workdir.mkdir()
    params = workdir / "parameters.yaml"
    params.write_text(f"topolvm.io/device-class: {driver.device_class}\n")
    out = out_dir()
    junit_xml = out / f"csi-sanity-{name}.xml"
    output = out / f"csi-sanity-{name}.log"
    argv = [
        str(csi_sanity),
        f"-csi.endpoint=unix://{driver.socket}",
        f"-csi.mountdir={workdir / 'mount'}",
        f"-csi.stagingdir={workdir / 'staging'}",
        f"-csi.testvolumesize={VOLUME_SIZE}",
        f"-csi.testvolumeexpandsize={EXPAND_SIZE}",
        f"-csi.testvolumeparameters={params}",
        f"-csi.testvolumeaccesstype={access_type}",
        f"-ginkgo.junit-report={junit_xml}",
        "-ginkgo.no-color",
        "-ginkgo.v",
    ]
    skip = skip_regexp(read_skip_list(), driver.config)
    if skip:
        argv.append(f"-ginkgo.skip={skip}")
    started = time.monotonic()
    with output.open("wb") as handle:
        try:
            done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, timeout=SANITY_TIMEOUT_S, check=False)
            code: int | None = done.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.monotonic() - started
    counts, failed, skipped = _junit_counts(junit_xml)
    # Deleted volumes must really go: the node agent removes each LV after DeleteVolume (asynchronously).
    deadline = time.monotonic() + 120
    leftover = _volume_lvs()
    while leftover and time.monotonic() < deadline:
        time.sleep(1)
        leftover = _volume_lvs()
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(workdir) in line]
    summary = {
        "configuration": name,
        "exit_code": code,
        "seconds": round(seconds, 1),
        "counts": counts,
        "failed": failed,
        "skipped": skipped,
        "leftover_lvs": leftover,
        "leftover_mounts": mounts,
    }
    (out / f"csi-sanity-{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    tail = output.read_text(errors="replace")[-12000:]
    assert code == 0 and not failed, (
        f"csi-sanity {name}: exit code {code}, {counts}, failed: {failed}\n\n--- csi-sanity output (tail) ---\n"
        f"{tail}\n--- driver log (tail) ---\n{driver.log.read_text(errors='replace')[-6000:]}"
    )
    assert counts.get("passed", 0) > 0, f"csi-sanity {name} ran no spec: {counts}\n{tail}"
    hidden = [s for s in skipped if s.endswith(RESULT_DRIVEN_SKIPS)]
    assert not hidden, f"csi-sanity {name} skipped specs because of the driver's answers: {hidden}"
    assert not leftover, f"LVs left after csi-sanity {name} deleted every volume: {leftover}"
    assert not mounts, f"mounts left under {workdir}: {mounts}"
