"""Beyond the blood count, an EHR export fills the other measured assessments the protocols ask for, by LOINC
(``seeds/analytes.yaml``): serum IgG, the CD3/CD4/CD8/CD19 counts of the lymphocyte subsets, CRP and ferritin,
LDH, and the EBV load among the viral PCRs, each under the visit's own assessment with its unit, range and
interpretation. A result in a unit that does not convert (an EBV load in IU/mL, ferritin in pmol/L) is left out,
never guessed; an assessment the visit does not ask for takes nothing.

The export is Synthea-shaped: the patient's hundreds of weekly blood counts and real old encounters around the
results under test, as ``test_visits_reconciled`` builds it."""

from __future__ import annotations

import pytest

from surveillance.imports import ehr_import
from surveillance.models import VisitResult
from tests.imports.test_visits_reconciled import SYNTHEA_ORG, count, export, visit

pytestmark = pytest.mark.django_db


@pytest.fixture
def centre(centre_a):
    centre_a.ehr_site_identifiers = f"{SYNTHEA_ORG}\n"
    centre_a.save()
    return centre_a


def rows(rule_code: str) -> dict[str, VisitResult]:
    return {row.analyte: row for row in VisitResult.objects.filter(visit=visit(rule_code)).exclude(analyte="")}


def test_it_files_igg_subsets_and_ldh_under_the_month_3_visits_own_assessments(centre):
    ehr_import.bundle_import(
        export(
            count("2465-3", 452, "mg/dL", 96, 700, 1600, flag="L"),
            count("8122-4", 910, "/uL", 96, 700, 2100),
            count("24467-3", 180, "/uL", 96, 400, 1500, flag="L"),
            count("14135-8", 620, "/uL", 96, 200, 900),
            count("8116-6", 0, "/uL", 96, 100, 500, flag="L"),
            count("14804-9", 412, "U/L", 96, 135, 225, flag="H"),
        ),
        centre,
    )
    m3, found = visit("M3"), rows("M3")
    assert {"igg_level", "cd3_cells", "cd4_cells", "cd8_cells", "cd19_cells", "ldh_activity"} <= set(found)
    igg = found["igg_level"]
    assert (igg.assessment, igg.value, igg.unit, igg.reference_low, igg.outcome) == (
        "igg",
        452,
        "mg/dL",
        700,
        "abnormal",
    )
    assert (igg.source, igg.source_id, igg.loinc) == ("ehr", "Observation/obs-2465-3-96", "2465-3")
    subsets = {code: found[code] for code in ("cd3_cells", "cd4_cells", "cd8_cells", "cd19_cells")}
    assert {row.assessment for row in subsets.values()} == {"lymphocyte_subsets"}
    assert [subsets[code].outcome for code in ("cd3_cells", "cd4_cells", "cd8_cells", "cd19_cells")] == [
        "normal",
        "abnormal",
        "normal",
        "abnormal",
    ]
    assert subsets["cd19_cells"].value == 0  # B-cell aplasia is a value, not a missing one
    ldh = found["ldh_activity"]
    assert (ldh.assessment, ldh.value, ldh.unit, ldh.outcome, ldh.loinc) == ("ldh", 412, "U/L", "abnormal", "14804-9")
    assert {"igg", "lymphocyte_subsets", "ldh"} <= set(m3.assessments)


def test_it_files_the_ebv_load_under_viral_pcrs_and_never_replaces_it_with_a_load_in_international_units(centre):
    ehr_import.bundle_import(export(count("32585-2", 2400, "{copies}/mL", 30, 0, 500, flag="H")), centre)
    ebv = rows("D28")["ebv_dna_load"]
    assert (ebv.assessment, ebv.value, ebv.unit, ebv.outcome) == ("viral_pcr", 2400, "{copies}/mL", "abnormal")
    assert (ebv.source_id, ebv.loinc) == ("Observation/obs-32585-2-30", "32585-2")
    ehr_import.bundle_import(export(count("32585-2", 1500, "[IU]/mL", 31, 0, 500, flag="H")), centre)
    ebv.refresh_from_db()
    assert (ebv.value, ebv.unit, ebv.source_id) == (2400, "{copies}/mL", "Observation/obs-32585-2-30")


def test_it_files_crp_and_ferritin_only_where_the_visit_asks_for_them(centre):
    ehr_import.bundle_import(
        export(
            count("1988-5", 1.2, "mg/dL", 96, 0, 0.5, flag="H"),
            count("2276-4", 2900, "ng/mL", 96, 30, 400, flag="H"),
        ),
        centre,
    )
    assert not {"crp", "ferritin"} & set(rows("M3"))  # month 3 asks for neither: nothing filed
    ehr_import.bundle_import(
        export(count("1988-5", 1.2, "mg/dL", 4, 0, 0.5, flag="H"), count("2276-4", 2900, "pmol/L", 4, 67, 900)), centre
    )
    acute = {row.analyte: row for row in VisitResult.objects.filter(analyte__in=["crp", "ferritin"])}
    assert set(acute) == {"crp"}  # ferritin in pmol/L is not converted, so not filed
    assert (acute["crp"].assessment, acute["crp"].unit, acute["crp"].outcome) == ("crp_ferritin", "mg/dL", "abnormal")
