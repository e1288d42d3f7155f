"""Parses ``lvm fullreport --reportformat json --units b --nosuffix`` into ``topolvm.core.model``.

Kept apart from running commands so it is tested on recorded fixtures (tests/fixtures/lvm). ``REPORT_ARGS``
names exactly the fields parsed here, so one report call answers every question lvmd asks.
"""

from __future__ import annotations

import json
from typing import TypedDict, cast

from topolvm import errors
from topolvm.core import model

VG_FIELDS = "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_missing_pv_count"
PV_FIELDS = "pv_name,pv_size,pv_free,pv_missing"
SEG_FIELDS = "lv_uuid,segtype,stripes,data_stripes"
LV_FIELDS = "lv_name,lv_uuid,lv_path,lv_size,lv_attr,lv_tags,pool_lv,origin,data_percent,metadata_percent"

REPORT_ARGS = (
    "--reportformat", "json", "--units", "b", "--nosuffix",
    "--configreport", "vg", "-o", VG_FIELDS,
    "--configreport", "pv", "-o", PV_FIELDS,
    "--configreport", "lv", "-o", LV_FIELDS,
    "--configreport", "seg", "-o", SEG_FIELDS,
    "--configreport", "pvseg", "-o", "pv_uuid",
)  # fmt: skip


class VgRow(TypedDict):
    vg_name: str
    vg_uuid: str
    vg_size: str
    vg_free: str
    vg_extent_size: str
    vg_missing_pv_count: str


class PvRow(TypedDict):
    pv_name: str
    pv_size: str
    pv_free: str
    pv_missing: str


class LvRow(TypedDict):
    lv_name: str
    lv_uuid: str
    lv_path: str
    lv_size: str
    lv_attr: str
    lv_tags: str
    pool_lv: str
    origin: str
    data_percent: str
    metadata_percent: str


class SegRow(TypedDict):
    lv_uuid: str
    segtype: str
    stripes: str
    data_stripes: str


class VgReport(TypedDict, total=False):
    vg: list[VgRow]
    pv: list[PvRow]
    lv: list[LvRow]
    seg: list[SegRow]


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise errors.LvmCommandError(["lvm", "fullreport"], 0, f"unparsable {what}: {value!r}") from None


def _percent(value: str) -> float | None:
    return float(value) if value else None


def _tags(value: str) -> tuple[str, ...]:
    return tuple(t for t in value.split(",") if t)


def parse_lv(row: LvRow, vg_name: str, seg: SegRow | None = None) -> model.LogicalVolume:
    segtype, stripes, data_stripes = "linear", 1, 1
    if seg is not None:
        segtype = seg["segtype"]
        stripes = _int(seg["stripes"] or "1", "stripes")
        data_stripes = _int(seg["data_stripes"] or str(stripes), "data_stripes")
    return model.LogicalVolume(
        name=row["lv_name"],
        vg_name=vg_name,
        size=_int(row["lv_size"] or "0", "lv_size"),
        uuid=row["lv_uuid"],
        path=row["lv_path"],
        attr=row["lv_attr"],
        tags=_tags(row["lv_tags"]),
        # pool_lv and origin are bracketed for hidden LVs, e.g. "[pool_tdata]".
        pool=row["pool_lv"].strip("[]"),
        origin=row["origin"].strip("[]"),
        data_percent=_percent(row["data_percent"]),
        metadata_percent=_percent(row["metadata_percent"]),
        segtype=segtype,
        stripes=stripes,
        data_stripes=data_stripes,
    )


def parse_vg(report: VgReport) -> model.VolumeGroup:
    vg_rows = report.get("vg", [])
    if len(vg_rows) != 1:
        raise errors.LvmCommandError(["lvm", "fullreport"], 0, f"expected one VG per report, got {len(vg_rows)}")
    vg = vg_rows[0]
    name = vg["vg_name"]
    pvs = tuple(
        model.PhysicalVolume(
            name=pv["pv_name"],
            size=_int(pv["pv_size"], "pv_size"),
            free=_int(pv["pv_free"], "pv_free"),
            missing=bool(pv["pv_missing"]),
        )
        for pv in report.get("pv", [])
    )
    first_segments: dict[str, SegRow] = {}
    for seg in report.get("seg", []):
        first_segments.setdefault(seg["lv_uuid"], seg)  # segments come in order; the first is the layout
    lvs = tuple(parse_lv(lv, name, first_segments.get(lv["lv_uuid"])) for lv in report.get("lv", []))
    return model.VolumeGroup(
        name=name,
        uuid=vg["vg_uuid"],
        size=_int(vg["vg_size"], "vg_size"),
        free=_int(vg["vg_free"], "vg_free"),
        extent_size=_int(vg["vg_extent_size"], "vg_extent_size"),
        missing_pvs=_int(vg["vg_missing_pv_count"] or "0", "vg_missing_pv_count"),
        pvs=pvs,
        lvs=lvs,
    )


def parse_fullreport(stdout: str) -> model.LvmState:
    """One ``fullreport`` JSON document → the state of every VG in it."""
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise errors.LvmCommandError(["lvm", "fullreport"], 0, f"report is not JSON: {exc}") from None
    reports = cast(list[VgReport], doc.get("report", []) if isinstance(doc, dict) else [])
    vgs = {}
    try:
        for report in reports:
            vg = parse_vg(report)
            vgs[vg.name] = vg
    except (KeyError, TypeError, AttributeError) as exc:
        # A report without the fields we asked for means an lvm we do not understand: fail loudly.
        raise errors.LvmCommandError(["lvm", "fullreport"], 0, f"unexpected report shape: {exc!r}") from None
    return model.LvmState(vgs=vgs)
