"""The clinic CSV export: a good row gives a patient and an infusion, a bad one an issue per field."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from surveillance.imports.ehr_csv import COLUMNS, parse_csv
from surveillance.imports.fhir.codes import product_names
from surveillance.imports.fhir.records import ImportIssue, InfusionRecord, PatientRecord
from tests.imports.conftest import TODAY

HEADER = ",".join(COLUMNS)


def parse(*rows: str, header: str = HEADER) -> list[tuple[int, object]]:
    stream = io.StringIO("\n".join([header, *rows]) + "\n", newline="")
    return list(parse_csv(stream, product_names(), today=TODAY))


def test_it_reads_a_good_row_as_a_patient_and_an_infusion():
    items = parse("A-17,Ana María,García,1961-02-03,F,ana@example.org,+34 600 000 000,es-ES,Yescarta,2024-11-05,L-9")
    assert items == [
        (
            2,
            PatientRecord(
                source_id="csv:A-17",
                identifier_system=None,
                mrn="A-17",
                given_name="Ana María",
                family_name="García",
                birth_date=dt.date(1961, 2, 3),
                sex="female",
                email="ana@example.org",
                phone="+34 600 000 000",
                preferred_language="es",
                deceased=False,
                deceased_date=None,
                line=2,
            ),
        ),
        (
            2,
            InfusionRecord(
                source_id="csv:A-17:yescarta:2024-11-05",
                resource_type="csv",
                patient_ref="csv:A-17",
                product_code="yescarta",
                matched_code=("csv", "Yescarta"),
                infusion_date=dt.date(2024, 11, 5),
                lot_number="L-9",
                line=2,
            ),
        ),
    ]


def test_it_accepts_slugs_any_case_and_blank_optional_fields():
    items = parse("B-1,,,,,,,,CARVYKTI,2025-01-31,")
    patient, infusion = (item for _, item in items)
    assert (patient.sex, patient.preferred_language, patient.birth_date, patient.email) == ("unknown", "en", None, "")
    assert infusion.product_code == "carvykti"


def test_it_reports_each_bad_field_of_a_row_and_keeps_the_good_rows():
    items = parse(
        ",Jo,Doe,1961-02-30,X,not-an-email,,english!,Kymria,2024-13-01,",
        '"C-3","Jo","Doe",1970-01-01,m,,,,abecma,2024-06-01,',
    )
    issues = [item for _, item in items if isinstance(item, ImportIssue)]
    assert [(issue.line, issue.field) for issue in issues] == [
        (2, "mrn"),
        (2, "birth_date"),
        (2, "sex"),
        (2, "email"),
        (2, "preferred_language"),
        (2, "product"),
        (2, "infusion_date"),
    ]
    assert [(line, type(item).__name__) for line, item in items[-2:]] == [(3, "PatientRecord"), (3, "InfusionRecord")]


@pytest.mark.parametrize(
    ("infusion_date", "birth_date"),
    [("1899-12-31", ""), ("2026-06-02", ""), ("", ""), ("2024-01-01", "2025-06-02")],
)
def test_it_refuses_impossible_or_missing_dates(infusion_date, birth_date):
    items = parse(f"D-4,Jo,Doe,{birth_date},,,,,kymriah,{infusion_date},")
    assert len(items) == 1 and isinstance(items[0][1], ImportIssue)


def test_it_reports_a_row_with_the_wrong_number_of_fields():
    ((line, issue),) = parse("E-5,Jo,Doe")
    assert (line, issue.field, issue.message) == (2, "", "expected 11 fields, got 3")


def test_it_numbers_rows_by_their_first_line_across_quoted_newlines():
    items = parse('F-6,"Jo\nAnn",Doe,,,,,,kymriah,2024-01-01,', "", "G-7,Al,Roe,,,,,,kymriah,2024-01-01,")
    assert [line for line, _ in items] == [2, 2, 5, 5]


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (HEADER + ",mrn", ["duplicate columns ['mrn']"]),
        (
            HEADER.replace("birth_date", "birthdate"),
            ["missing columns ['birth_date']", "unknown columns ['birthdate']"],
        ),
    ],
)
def test_it_reports_a_bad_header_once_and_reads_no_row(header, words):
    items = parse("H-8,Jo,Doe,,,,,,kymriah,2024-01-01,", header=header)
    ((line, issue),) = items
    assert (line, issue.field) == (1, "header")
    assert all(word in issue.message for word in words)


def test_it_takes_the_header_in_any_order_and_case():
    header = ",".join(reversed([column.upper() for column in COLUMNS]))
    ((_, patient), (_, infusion)) = parse("L-1,2024-01-01,breyanzi,,,,,,Doe,Jo,I-9", header=header)
    assert (patient.mrn, infusion.product_code, infusion.lot_number) == ("I-9", "breyanzi", "L-1")


def test_it_refuses_an_empty_csv():
    items = list(parse_csv(io.StringIO(""), product_names(), today=TODAY))
    assert [(line, issue.line, issue.code) for line, issue in items] == [(1, 1, "required")]
    assert "empty" in items[0][1].message


def test_it_refuses_a_csv_with_a_header_and_no_rows():
    items = parse(header=HEADER)
    assert [(line, issue.line, issue.message) for line, issue in items] == [(2, 2, "the CSV has a header but no rows")]


def test_it_reports_a_duplicated_row_with_both_line_numbers():
    row = "J-1,Jo,Doe,,,,,,kymriah,2024-01-01,"
    items = parse(row, "K-2,Al,Roe,,,,,,kymriah,2024-01-01,", row)
    issues = [item for _, item in items if isinstance(item, ImportIssue)]
    assert [(issue.line, issue.code) for issue in issues] == [(4, "duplicate")]
    assert "line 2" in issues[0].message
