"""The CSV export for clinics without FHIR: one row per infusion, the patient's details repeated.

Header (any order, case-insensitive)::

    mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number

and, optionally, how the patient may be reached: ``sms_consent`` (yes/no) and ``preferred_channel`` (email or sms);
the risk flags of the infusion: ``risk_flags`` (flag codes separated by ``;``, e.g.
``clonal_haematopoiesis;prior_auto_hct``), ``risk_flags_observed_on`` (the date they were recorded, required with
flags) and ``ch_findings`` (CH genes and VAF in percent, e.g. ``DNMT3A 4;TET2 2.5``). Each flag yields a
:class:`RiskFlagRecord` (source id ``csv:<mrn>:<product>:<date>:<flag>``).

``product`` is a product slug or brand name (case-insensitive); dates are ISO ``YYYY-MM-DD``. A good row
yields a :class:`PatientRecord` (source id ``csv:<mrn>``) and an :class:`InfusionRecord` (source id
``csv:<mrn>:<product>:<date>``); a bad row yields one :class:`ImportIssue` per bad field and no record. A file
without rows, or a row repeating another's MRN, product and date, is an issue too: a clinic that sends either has
exported the wrong thing, and "0 imported" or a silently merged row would hide it. Pure Python, read lazily row by
row.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping

from surveillance.imports.fhir.records import (
    FhirImportError,
    ImportIssue,
    InfusionRecord,
    PatientRecord,
    RiskFlagRecord,
    latest_infusion,
)
from surveillance.scheduling.engine import EARLIEST_INFUSION, RISK_FLAGS

COLUMNS = (
    "mrn",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "email",
    "phone",
    "preferred_language",
    "product",
    "infusion_date",
    "lot_number",
)
OPTIONAL_COLUMNS = ("sms_consent", "preferred_channel", "risk_flags", "risk_flags_observed_on", "ch_findings")
_YES_NO = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False}
_CHANNELS = ("email", "sms")
CSV_SYSTEM = "csv"  # matched_code is ("csv", <product as written>) for CSV infusions

_SEX = {
    "": "unknown",
    "f": "female",
    "female": "female",
    "m": "male",
    "male": "male",
    "o": "other",
    "other": "other",
    "u": "unknown",
    "unknown": "unknown",
}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_LANGUAGE = re.compile(r"([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*")
_FINDING = re.compile(r"([A-Za-z0-9-]{1,32})\s+(\d{1,3}(?:\.\d+)?)\s*%?")
CH_FLAG = "clonal_haematopoiesis"


def _date(text: str) -> dt.date | None:
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def csv_decode(data: bytes) -> str:
    """The file as text (UTF-8, with or without a byte order mark).

    Raises ``FhirImportError`` naming the first line that is not UTF-8 (a Latin-1 export, typically), so that the
    clinic can find it: the import's usual issue shape, not a bare decoding error.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = "not UTF-8 text (export the file as UTF-8)"
        raise FhirImportError([ImportIssue(None, line, "", message, "structure")]) from None


def _header_problem(header: list[str]) -> str | None:
    names = [name.strip().lstrip("\ufeff").casefold() for name in header]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    missing = [name for name in COLUMNS if name not in names]
    unknown = [name for name in names if name not in COLUMNS and name not in OPTIONAL_COLUMNS]
    parts = []
    if duplicates:
        parts.append(f"duplicate columns {duplicates}")
    if missing:
        parts.append(f"missing columns {missing}")
    if unknown:
        parts.append(f"unknown columns {unknown}")
    if not parts:
        return None
    return "; ".join(parts) + f" (expected: {','.join(COLUMNS)}, optionally {','.join(OPTIONAL_COLUMNS)})"


def parse_csv(
    stream: Iterable[str],
    products: Mapping[str, str],
    *,
    today: dt.date | None = None,
) -> Iterator[tuple[int, PatientRecord | InfusionRecord | RiskFlagRecord | ImportIssue]]:
    """Parse the clinic CSV lazily, yielding ``(line, item)``; ``line`` is where the row starts (header = 1).

    ``products`` maps product names (slug, brand; matched case-insensitively) to product slugs, e.g.
    :func:`surveillance.imports.fhir.codes.product_names`. A bad header yields a single issue and nothing else.
    """
    today = today or dt.date.today()
    latest = latest_infusion(today)
    product_slugs = {name.strip().casefold(): slug for name, slug in products.items()}
    reader = csv.reader(stream)
    header: list[str] | None = None
    header_line = 0
    rows = 0
    infusions: dict[str, int] = {}  # an infusion's source id -> the line of its row

    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield line, ImportIssue(None, line, "", f"unreadable CSV: {exc}", "structure")
            continue
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            problem = _header_problem(row)
            if problem:
                yield line, ImportIssue(None, line, "header", problem, "structure")
                return
            header = [name.strip().lstrip("\ufeff").casefold() for name in row]
            header_line = line
            continue
        rows += 1
        if len(row) != len(header):
            message = f"expected {len(header)} fields, got {len(row)}"
            yield line, ImportIssue(None, line, "", message, "structure")
            continue
        values = dict(zip(header, (cell.strip() for cell in row), strict=True))
        items = list(_row(line, values, product_slugs, today, latest))
        infusion = items[-1][1]
        if isinstance(infusion, InfusionRecord):
            first = infusions.setdefault(infusion.source_id, line)
            if first != line:
                message = f"duplicates line {first}: the same MRN, product and infusion date"
                yield line, ImportIssue(None, line, "", message, "duplicate")
                continue
        yield from items
    if header is None:
        yield 1, ImportIssue(None, 1, "", "the CSV is empty: expected a header line and a row per infusion", "required")
    elif not rows:
        yield header_line + 1, ImportIssue(None, header_line + 1, "", "the CSV has a header but no rows", "required")


def _row(
    line: int, values: dict[str, str], product_slugs: Mapping[str, str], today: dt.date, latest: dt.date
) -> Iterator[tuple[int, PatientRecord | InfusionRecord | RiskFlagRecord | ImportIssue]]:
    problems: list[tuple[str, str]] = []

    mrn = values["mrn"]
    if not mrn:
        problems.append(("mrn", "the MRN is required"))

    birth_date = None
    if values["birth_date"]:
        birth_date = _date(values["birth_date"])
        if birth_date is None:
            problems.append(("birth_date", "not a date (YYYY-MM-DD)"))
        elif birth_date > today:
            problems.append(("birth_date", "the birth date is in the future"))

    sex = _SEX.get(values["sex"].casefold())
    if sex is None:
        problems.append(("sex", "unknown sex (female, male, other, unknown or F/M/O/U)"))

    email = values["email"]
    if email and not _EMAIL.fullmatch(email):
        problems.append(("email", "not an email address"))

    language = "en"
    if values["preferred_language"]:
        match = _LANGUAGE.fullmatch(values["preferred_language"])
        if match is None:
            problems.append(("preferred_language", "not a language code (e.g. en, es, fr-CA)"))
        else:
            language = match.group(1).lower()

    sms_consent = _YES_NO.get(values.get("sms_consent", "").casefold()) if values.get("sms_consent") else None
    if values.get("sms_consent") and sms_consent is None:
        problems.append(("sms_consent", "not yes or no"))
    channel = values.get("preferred_channel", "").casefold() or None
    if channel is not None and channel not in _CHANNELS:
        problems.append(("preferred_channel", f"not one of {', '.join(_CHANNELS)}"))

    product_text = values["product"]
    product = product_slugs.get(product_text.casefold()) if product_text else None
    if not product_text:
        problems.append(("product", "the product is required"))
    elif product is None:
        problems.append(("product", "unknown product"))

    infusion_date = _date(values["infusion_date"]) if values["infusion_date"] else None
    if not values["infusion_date"]:
        problems.append(("infusion_date", "the infusion date is required"))
    elif infusion_date is None:
        problems.append(("infusion_date", "not a date (YYYY-MM-DD)"))
    elif not EARLIEST_INFUSION <= infusion_date <= latest:
        problems.append(("infusion_date", f"outside {EARLIEST_INFUSION} .. {latest}"))

    flags, observed_on, findings = _risk_flags(values, today, problems)

    if problems:
        for field, message in problems:
            yield line, ImportIssue(None, line, field, message, "value")
        return
    assert product is not None and infusion_date is not None and sex is not None
    patient_id = f"csv:{mrn}"
    infusion_id = f"{patient_id}:{product}:{infusion_date.isoformat()}"
    yield (
        line,
        PatientRecord(
            source_id=patient_id,
            identifier_system=None,
            mrn=mrn,
            given_name=values["given_name"],
            family_name=values["family_name"],
            birth_date=birth_date,
            sex=sex,
            email=email,
            phone=values["phone"],
            preferred_language=language,
            sms_consent=sms_consent,
            preferred_channel=channel,
            deceased=False,
            deceased_date=None,
            line=line,
        ),
    )
    yield (
        line,
        InfusionRecord(
            source_id=infusion_id,
            resource_type="csv",
            patient_ref=patient_id,
            product_code=product,
            matched_code=(CSV_SYSTEM, product_text),
            infusion_date=infusion_date,
            lot_number=values["lot_number"],
            line=line,
        ),
    )
    for code in flags:
        assert observed_on is not None
        ch = code == CH_FLAG
        yield (
            line,
            RiskFlagRecord(
                source_id=f"{infusion_id}:{code}",
                resource_type="csv",
                patient_ref=patient_id,
                code=code,
                present=True,
                observed_on=observed_on,
                matched_code=(CSV_SYSTEM, "risk_flags"),
                detail=", ".join(f"{gene} {vaf:g}%" for gene, vaf in findings) if ch else "",
                findings=findings if ch else (),
                line=line,
            ),
        )


def _risk_flags(
    values: dict[str, str], today: dt.date, problems: list[tuple[str, str]]
) -> tuple[list[str], dt.date | None, tuple[tuple[str, float], ...]]:
    """The optional risk-flag columns of a row: the flags, their date and the CH findings (problems appended)."""
    flags = [code.strip().casefold() for code in values.get("risk_flags", "").split(";") if code.strip()]
    if any(code not in RISK_FLAGS for code in flags):
        problems.append(("risk_flags", f"unknown risk flag (known: {', '.join(sorted(RISK_FLAGS))})"))
    if len(set(flags)) != len(flags):
        problems.append(("risk_flags", "a risk flag is listed twice"))
    observed_on = None
    raw = values.get("risk_flags_observed_on", "")
    if raw:
        observed_on = _date(raw)
        if observed_on is None:
            problems.append(("risk_flags_observed_on", "not a date (YYYY-MM-DD)"))
        elif observed_on > today:
            problems.append(("risk_flags_observed_on", "the date is in the future"))
    elif flags:
        problems.append(("risk_flags_observed_on", "the date the flags were recorded is required with risk_flags"))
    findings: list[tuple[str, float]] = []
    for part in (p.strip() for p in values.get("ch_findings", "").split(";")):
        if not part:
            continue
        match = _FINDING.fullmatch(part)
        if match is None or not 0 <= float(match.group(2)) <= 100:
            problems.append(("ch_findings", "expected GENE VAF% pairs separated by ';', e.g. DNMT3A 4;TET2 2.5"))
            break
        findings.append((match.group(1).upper(), float(match.group(2))))
    if findings and CH_FLAG not in flags:
        problems.append(("ch_findings", f"CH findings need {CH_FLAG} in risk_flags"))
    return flags, observed_on, tuple(findings)
