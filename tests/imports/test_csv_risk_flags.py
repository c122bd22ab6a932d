"""The clinic CSV's optional risk-flag columns: flags with their date and CH findings, or a field message."""

from __future__ import annotations

import datetime as dt
import io

from surveillance.imports.ehr_csv import COLUMNS, parse_csv
from surveillance.imports.fhir.codes import product_names
from surveillance.imports.fhir.records import ImportIssue, InfusionRecord, RiskFlagRecord
from tests.imports.conftest import TODAY

HEADER = ",".join([*COLUMNS, "risk_flags", "risk_flags_observed_on", "ch_findings"])
ROW = "A-17,Ana,García,1961-02-03,F,,,en,Yescarta,2024-11-05,L-9"


def parse(*rows: str, header: str = HEADER) -> list[object]:
    stream = io.StringIO("\n".join([header, *rows]) + "\n", newline="")
    return [item for _, item in parse_csv(stream, product_names(), today=TODAY)]


def test_it_reads_each_flag_of_a_row_with_its_date_and_findings():
    items = parse(f"{ROW},clonal_haematopoiesis;prior_auto_hct,2024-10-20,DNMT3A 4;TET2 2.5%")
    flags = [item for item in items if isinstance(item, RiskFlagRecord)]
    assert [(f.code, f.present, f.observed_on, f.patient_ref) for f in flags] == [
        ("clonal_haematopoiesis", True, dt.date(2024, 10, 20), "csv:A-17"),
        ("prior_auto_hct", True, dt.date(2024, 10, 20), "csv:A-17"),
    ]
    assert flags[0].findings == (("DNMT3A", 4.0), ("TET2", 2.5)) and flags[0].detail == "DNMT3A 4%, TET2 2.5%"
    assert flags[1].findings == () and flags[0].source_id == "csv:A-17:yescarta:2024-11-05:clonal_haematopoiesis"
    assert any(isinstance(item, InfusionRecord) for item in items)


def test_it_still_reads_a_file_without_the_optional_columns():
    items = parse(ROW, header=",".join(COLUMNS))
    assert not [item for item in items if isinstance(item, ImportIssue | RiskFlagRecord)]


def test_it_names_each_bad_flag_column():
    items = parse(f"{ROW},bad_luck;prior_auto_hct,,DNMT3A lots")
    assert {(item.field) for item in items if isinstance(item, ImportIssue)} == {
        "risk_flags",
        "risk_flags_observed_on",
        "ch_findings",
    }
    assert not [item for item in items if isinstance(item, RiskFlagRecord | InfusionRecord)]


def test_it_refuses_ch_findings_without_the_ch_flag():
    items = parse(f"{ROW},prior_auto_hct,2024-10-20,DNMT3A 4")
    assert [(i.field, i.message) for i in items if isinstance(i, ImportIssue)] == [
        ("ch_findings", "CH findings need clonal_haematopoiesis in risk_flags")
    ]
