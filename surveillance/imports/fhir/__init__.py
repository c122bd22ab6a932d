"""FHIR R4 import (Bundle, Bulk Data NDJSON) on fhir.resources: pure parsing into plain records."""

from surveillance.imports.fhir.codes import CarTCodeIndex, product_names, product_slug
from surveillance.imports.fhir.parse import parse_bundle, parse_ndjson
from surveillance.imports.fhir.records import (
    FhirImportError,
    Ignored,
    ImportIssue,
    InfusionRecord,
    ParseResult,
    PatientRecord,
)

__all__ = [
    "CarTCodeIndex",
    "FhirImportError",
    "Ignored",
    "ImportIssue",
    "InfusionRecord",
    "ParseResult",
    "PatientRecord",
    "parse_bundle",
    "parse_ndjson",
    "product_names",
    "product_slug",
]
