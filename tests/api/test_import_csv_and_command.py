"""The clinic CSV import (API), and ``manage.py import_ehr`` on the same inputs."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import CommandError, call_command

from surveillance.models import Infusion, Patient
from tests.imports.conftest import BULK

DAY = (dt.date.today() - dt.timedelta(days=20)).isoformat()
CSV = (
    "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number\n"
    f"C-1,Ana,Lima,1970-01-02,f,ana@example.org,,es,Yescarta,{DAY},L1\n"
    f"C-2,Ben,Ng,1980-03-04,m,,,en,carvykti,{DAY},\n"
)


def post_csv(client, text: str, query: str = ""):
    return client.generic("POST", f"/api/v1/import/csv{query}", text.encode(), content_type="text/csv")


def test_it_imports_a_clinic_csv_and_reimports_as_a_no_op(api_a, centre_a):
    report = post_csv(api_a, CSV).json()
    assert (report["patients"]["created"], report["infusions"]["created"]) == (2, 2)
    assert sorted(Infusion.objects.values_list("product__code", flat=True)) == ["carvykti", "yescarta"]
    again = post_csv(api_a, CSV).json()
    assert (again["patients"]["unchanged"], again["infusions"]["unchanged"]) == (2, 2)


def test_it_refuses_the_whole_csv_for_one_bad_row(api_a, centre_a):
    bad = CSV + "C-3,Cy,Do,1990-01-01,x,,,en,aspirin,2031-01-01,\n"
    response = post_csv(api_a, bad)
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
    assert not Patient.objects.exists()


def test_it_imports_a_file_from_the_command_line(centre_a, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(CSV)
    out = io.StringIO()
    call_command("import_ehr", str(path), "--centre", "a", stdout=out)
    assert json.loads(out.getvalue())["infusions"]["created"] == 2


def test_it_streams_ndjson_from_the_command_line(centre_a):
    out = io.StringIO()
    call_command("import_ehr", str(BULK / "Patient.000.ndjson"), "--centre", "a", "--dry-run", stdout=out)
    assert json.loads(out.getvalue())["patients"]["created"] == 11
    assert not Patient.objects.exists()


def test_it_exits_with_a_one_line_reason(centre_a, tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text('{"resourceType": "Patient"}')
    with pytest.raises(CommandError, match=r"refused, nothing saved: .*expected a Bundle"):
        call_command("import_ehr", str(path), "--centre", "a")
    with pytest.raises(CommandError, match="no such centre"):
        call_command("import_ehr", str(path), "--centre", "zz")


def test_it_reports_a_latin_1_csv_by_its_line(api_a, centre_a):
    body = CSV.encode() + "C-3,Zoë,Müller,,,,,,kymriah,2024-01-01,\n".encode("latin-1")
    response = api_a.generic("POST", "/api/v1/import/csv", body, content_type="text/csv")
    assert response.status_code == 400
    (issue,) = response.json()["issue"]
    assert issue["diagnostics"] == "line 4: not UTF-8 text (export the file as UTF-8)"
    assert not Patient.objects.exists()


def test_it_refuses_a_value_longer_than_its_column_with_its_line(api_a, centre_a):
    long_name = "L" * 101
    response = post_csv(api_a, CSV + f"C-3,{long_name},Do,,,,,,kymriah,{DAY},\n")
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["diagnostics"] == "line 4: longer than the 100 characters stored"
    assert issue["expression"] == ["given_name"]
    assert not Patient.objects.filter(given_name__startswith="L").exists() and not Patient.objects.exists()


def test_it_refuses_a_header_only_csv_rather_than_reporting_success(api_a, centre_a):
    response = post_csv(api_a, CSV.splitlines()[0] + "\n")
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"] == "line 2: the CSV has a header but no rows"
