"""A coordinator imports a clinic CSV in a real browser, without a shell: the dry-run preview counts what the file
would create and saves nothing, applying it creates the patients with their planned visits, and a file of
another kind is a form error."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models import FollowUpVisit, Patient
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
HEADER = "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number\n"


def _csv(centre) -> bytes:
    day = (timezone.localdate(timezone.now(), centre.tz) - dt.timedelta(days=20)).isoformat()
    return (
        HEADER
        + f"UP-1,Ana,Lima,1970-01-02,f,ana@example.org,,es,Yescarta,{day},L1\n"
        + f"UP-2,Ben,Ngata,1980-03-04,m,,,en,carvykti,{day},\n"
    ).encode()


def _choose(page, centre, name: str, content: bytes, mime: str = "text/csv") -> None:
    page.select_option("#id_centre", str(centre.pk))
    page.set_input_files("#id_file", files=[{"name": name, "mimeType": mime, "buffer": content}])
    page.fill("#id_source_system", "clinic-ehr")
    page.get_by_role("button", name="Preview the import").click()


def test_it_previews_a_csv_then_applies_it(page, live_server, sign_in, coordinator_a, centre_a):
    sign_in(page, "coordinator-a")
    page.get_by_role("link", name="Import a file").click()
    page.wait_for_url("**/admin/import/")
    _choose(page, centre_a, "cohort.csv", _csv(centre_a))

    page.locator("#import-preview").wait_for()
    assert "nothing is saved yet" in page.inner_text("#import-preview")
    assert page.inner_text("[data-figure=patients-created]") == "2"
    assert page.inner_text("[data-figure=infusions-created]") == "2"
    planned = int(page.inner_text("[data-figure=visits-planned]"))
    assert planned > 0 and page.inner_text("[data-figure=refused]") == "0"
    assert not Patient.objects.exists()  # a preview writes nothing
    screenshot(page, "import-preview")

    page.get_by_role("button", name="Apply the import").click()
    page.get_by_text("Imported.").wait_for()
    assert page.inner_text("[data-figure=patients-created]") == "2"
    patients = Patient.objects.filter(centre=centre_a)
    assert set(patients.values_list("mrn", flat=True)) == {"UP-1", "UP-2"}
    assert FollowUpVisit.objects.filter(infusion__patient__in=patients).count() == planned

    page.goto(f"{live_server.url}/admin/surveillance/patient/?q=UP-")
    rows = page.locator("#result_list tbody tr").all_inner_texts()
    assert len(rows) == 2 and any("Lima, Ana" in row for row in rows) and any("Ngata, Ben" in row for row in rows)


def test_it_refuses_a_file_of_another_kind_with_a_form_error(page, live_server, sign_in, coordinator_a, centre_a):
    sign_in(page, "coordinator-a")
    page.goto(f"{live_server.url}/admin/import/")
    _choose(page, centre_a, "notes.txt", b"call Ana on Monday\n", mime="text/plain")

    error = page.locator("#upload-form .errorlist")
    error.wait_for()
    assert "Choose a CSV (.csv) or FHIR file" in error.inner_text()
    assert page.locator("#import-preview").count() == 0 and page.locator("#apply-form").count() == 0
    assert not Patient.objects.exists()
