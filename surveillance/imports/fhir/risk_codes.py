"""The codes that make an EHR resource a risk flag (clinical-reference.md (b) "Triggers"): one table, pure Python.

Which resource carries which flag:

- **Clonal haematopoiesis**: an Observation LOINC 69548-6 "Genetic variant assessment" (the HL7 Genomics
  Reporting shape) with a component 48018-6 "Gene studied" naming one of the CH genes the reference names
  (DNMT3A, TET2, ASXL1, TP53, PPM1D) and, optionally, 81258-6 "Sample variant allelic frequency". The flag is
  present when the variant is (value LA9633-4 "Present", or no value) and its VAF is at least 2 % (or not given);
  LA9634-2 "Absent" records it absent.
- **EBV**: an Observation LOINC 5002-1 "Epstein Barr virus DNA [Presence] in Blood by NAA", or a viral load
  36923-1 (blood) / 47982-4 (serum or plasma); positive, detected or a load above zero is present. A Condition
  ICD-10-CM B27.0- (gammaherpesviral mononucleosis, i.e. EBV) is present too.
- **Prior autologous HCT**: a completed Procedure CPT 38241 "Hematopoietic progenitor cell; autologous
  transplantation", or ICD-10-PCS 30233G0 / 30243G0 / 30233Y0 / 30243Y0 (transfusion of autologous bone marrow or
  haematopoietic stem cells into a peripheral or central vein).
- **Prolonged cytopenia**: a Condition ICD-10-CM D61.810 / D61.818 (pancytopenia), D70.1 / D70.2
  (drug-induced agranulocytosis), D69.59 (secondary thrombocytopenia) or D64.81 (anaemia due to antineoplastic
  chemotherapy).
"""

from __future__ import annotations

from surveillance.imports.fhir.codes import _system_key

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
CPT = "http://www.ama-assn.org/go/cpt"

CH = "clonal_haematopoiesis"
PRIOR_AUTO_HCT = "prior_auto_hct"
PROLONGED_CYTOPENIA = "prolonged_cytopenia"
EBV = "ebv_positive"

#: Observation codes: LOINC code -> flag.
GENETIC_VARIANT_ASSESSMENT = "69548-6"
GENE_STUDIED = "48018-6"
VARIANT_ALLELIC_FREQUENCY = "81258-6"
EBV_PRESENCE = "5002-1"
EBV_VIRAL_LOADS = frozenset({"36923-1", "47982-4"})
OBSERVATION_FLAGS: dict[str, str] = {
    GENETIC_VARIANT_ASSESSMENT: CH,
    EBV_PRESENCE: EBV,
    **dict.fromkeys(EBV_VIRAL_LOADS, EBV),
}

#: The CH genes clinical-reference (b) names, and its VAF threshold (percent).
CH_GENES = frozenset({"DNMT3A", "TET2", "ASXL1", "TP53", "PPM1D"})
CH_VAF_PERCENT = 2.0

#: Answers that say a finding is there or not (LOINC answer lists; SNOMED CT qualifier values).
PRESENT_ANSWERS = frozenset({(LOINC, "LA9633-4"), (SNOMED, "10828004"), (SNOMED, "260373001")})
ABSENT_ANSWERS = frozenset({(LOINC, "LA9634-2"), (SNOMED, "260385009"), (SNOMED, "260415000")})

#: Procedure codes of an autologous haematopoietic cell transplant.
AUTO_HCT_PROCEDURES = frozenset(
    {(CPT, "38241"), (ICD10PCS, "30233G0"), (ICD10PCS, "30243G0"), (ICD10PCS, "30233Y0"), (ICD10PCS, "30243Y0")}
)

#: Condition codes (ICD-10-CM, with or without the dot) -> flag; B27.0 covers B27.00-B27.09.
CONDITION_FLAGS: dict[str, str] = {
    "D61.810": PROLONGED_CYTOPENIA,
    "D61.818": PROLONGED_CYTOPENIA,
    "D70.1": PROLONGED_CYTOPENIA,
    "D70.2": PROLONGED_CYTOPENIA,
    "D69.59": PROLONGED_CYTOPENIA,
    "D64.81": PROLONGED_CYTOPENIA,
    "B27.0": EBV,
}


def is_loinc(system: str | None) -> bool:
    return _system_key(system) == LOINC


def observation_flag(system: str | None, code: str | None) -> str | None:
    """The flag an Observation's code stands for, or None."""
    return OBSERVATION_FLAGS.get(code or "") if _system_key(system) == LOINC else None


def condition_flag(system: str | None, code: str | None) -> str | None:
    """The flag an ICD-10-CM Condition code stands for (B27.00 matches B27.0), or None."""
    if _system_key(system) != ICD10CM or not code:
        return None
    text = code.strip().upper()
    if "." not in text and len(text) > 3:
        text = f"{text[:3]}.{text[3:]}"
    for prefix, flag in CONDITION_FLAGS.items():
        if text == prefix or (len(prefix) == 5 and text.startswith(prefix)):
            return flag
    return None


def procedure_flag(system: str | None, code: str | None) -> str | None:
    """The flag a Procedure's code stands for (a prior autologous transplant), or None."""
    return PRIOR_AUTO_HCT if (_system_key(system), (code or "").strip()) in AUTO_HCT_PROCEDURES else None


def answer_presence(system: str | None, code: str | None) -> bool | None:
    """True for a "present / positive / detected" answer, False for its opposite, None for anything else."""
    key = (_system_key(system), (code or "").strip())
    if key in PRESENT_ANSWERS:
        return True
    if key in ABSENT_ANSWERS:
        return False
    return None


def raw_codings(resource: dict) -> list[tuple[str, str]]:
    """The (system, code) pairs of a raw resource's ``code`` (before validation: a cheap look at every line)."""
    concept = resource.get("code")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list):
        return []
    return [
        (str(coding.get("system") or ""), str(coding.get("code") or ""))
        for coding in codings
        if isinstance(coding, dict)
    ]


def may_carry_flag(resource: dict) -> bool:
    """Whether a raw Observation or Condition is coded as a risk flag (only those are validated and read)."""
    kind = resource.get("resourceType")
    lookup = observation_flag if kind == "Observation" else condition_flag if kind == "Condition" else None
    return lookup is not None and any(lookup(system, code) for system, code in raw_codings(resource))
