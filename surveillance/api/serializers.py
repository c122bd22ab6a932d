"""What the API reads and writes. Output fields are listed explicitly (pinned by tests): nothing leaks by default.

Fields that a state machine or the server owns (centre after creation, status, ladder stage, protocol, audit
fields) are read-only: changing them takes an action endpoint that goes through ``lifecycle``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re

import orjson
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import ISO_8601, api_settings

from surveillance.access.tenancy import scope
from surveillance.care import contact_details, infusions, lifecycle, planning
from surveillance.care.results import ResultEntry
from surveillance.care.risk_flags import FlagFacts
from surveillance.models import (
    CarTProduct,
    FollowUpVisit,
    Infusion,
    MalignancyEvent,
    Patient,
    PatientStatus,
    Protocol,
    ProtocolRule,
    Reminder,
    ReportingStep,
    ResultOutcome,
    TreatmentCentre,
    VisitResult,
    WebhookEndpoint,
)
from surveillance.models.integrations import WebhookEvent
from surveillance.models.patients import RiskFlag
from surveillance.models.visits import PLAN_FIELDS
from surveillance.scheduling.engine import EARLIEST_INFUSION
from surveillance.seeds.labels import label, labels_in, labels_of, labels_shown

EARLIEST_BIRTH = dt.date(1900, 1, 1)
MAX_RESULT_KEYS = 50


def _today() -> dt.date:
    return timezone.localdate()


class ScopedSlugField(serializers.SlugRelatedField):
    """A related object named by slug, looked up only among the caller's centres (a foreign one does not exist)."""

    def __init__(self, *, centre_path: str, **kwargs):
        self.centre_path = centre_path
        super().__init__(**kwargs)

    def get_queryset(self):
        return scope(super().get_queryset(), self.context["request"].user, self.centre_path)


class ScopedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    def __init__(self, *, centre_path: str, **kwargs):
        self.centre_path = centre_path
        super().__init__(**kwargs)

    def get_queryset(self):
        return scope(super().get_queryset(), self.context["request"].user, self.centre_path)


# --------------------------------------------------------------------------------------------- centres
class CentreSerializer(serializers.ModelSerializer):
    class Meta:
        model = TreatmentCentre
        fields = ["id", "code", "name", "time_zone"]
        read_only_fields = fields


# --------------------------------------------------------------------------------------------- patients
class UnquotedChoiceField(serializers.ChoiceField):
    """A choice field whose error does not quote the value sent: on a patient, it may be patient data."""

    default_error_messages = {"invalid_choice": "Not one of the allowed values."}


class PatientSerializer(serializers.ModelSerializer):
    serializer_choice_field = UnquotedChoiceField
    centre = ScopedSlugField(
        slug_field="code",
        centre_path="",
        queryset=TreatmentCentre.objects.all(),
        required=False,
        help_text="Centre code; optional when the caller has exactly one centre. Fixed once created.",
    )

    class Meta:
        model = Patient
        fields = [
            "id",
            "centre",
            "mrn",
            "given_name",
            "family_name",
            "birth_date",
            "sex",
            "email",
            "phone",
            "preferred_language",
            "time_zone",
            "contact_consent",
            "sms_consent",
            "preferred_channel",
            "status",
            "status_date",
            "status_reason",
            "ladder_stage",
            "source_system",
            "source_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "status_date",
            "status_reason",
            "ladder_stage",
            "created_at",
            "updated_at",
        ]
        # Uniqueness (MRN, source identity) is checked in validate() within the centre; the database enforces it.
        validators: list = []

    def validate_birth_date(self, value):
        if value is not None and not EARLIEST_BIRTH <= value <= _today():
            raise serializers.ValidationError(f"must lie between {EARLIEST_BIRTH} and today")
        if self.instance is not None:
            try:
                infusions.patient_birth_date_check(self.instance, value)
            except infusions.InfusionRefused as exc:
                raise serializers.ValidationError(exc.message) from exc
        return value

    def validate_mrn(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("must not be blank")
        return value.strip()

    def validate(self, attrs):
        request = self.context["request"]
        if self.instance is not None:
            if "centre" in attrs and attrs["centre"] != self.instance.centre:
                raise serializers.ValidationError({"centre": ["cannot be changed; transfer the patient instead"]})
            centre = self.instance.centre
        else:
            centre = attrs.get("centre")
            if centre is None:
                centres = list(scope(TreatmentCentre.objects.all(), request.user, "")[:2])
                if len(centres) != 1:
                    raise serializers.ValidationError({"centre": ["required: you have more than one centre"]})
                centre = attrs["centre"] = centres[0]
        others = Patient.objects.filter(centre=centre)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        mrn = attrs.get("mrn", getattr(self.instance, "mrn", None))
        if mrn and others.filter(mrn=mrn).exists():
            raise serializers.ValidationError({"mrn": ["another patient of this centre has this MRN"]})
        source_id = attrs.get("source_id", getattr(self.instance, "source_id", ""))
        source_system = attrs.get("source_system", getattr(self.instance, "source_system", ""))
        if source_id and others.filter(source_system=source_system, source_id=source_id).exists():
            raise serializers.ValidationError({"source_id": ["another patient of this centre has this source id"]})
        if "phone" in attrs:
            try:
                attrs["phone"] = contact_details.phone_normalise(attrs["phone"], centre.country)
            except contact_details.PhoneInvalid as exc:
                raise serializers.ValidationError({"phone": [str(exc)]}) from exc
        return attrs


class PatientStatusSerializer(serializers.Serializer):
    """A status recorded by hand: a death, withdrawal or transfer closes follow-up; lost to follow-up keeps it."""

    status = serializers.ChoiceField(
        choices=[(value, PatientStatus(value).label) for value in lifecycle.RECORDED_STATUSES],
        help_text="deceased, withdrawn and transferred cancel every open visit and reminder.",
    )
    date = serializers.DateField(help_text="When it happened (not in the future, not before birth).")
    reason = serializers.CharField(max_length=255, help_text="Why, e.g. the source of a death notice.")

    def validate_date(self, value: dt.date) -> dt.date:
        problem = lifecycle.patient_status_date_problem(self.context["patient"], value, _today())
        if problem:
            raise serializers.ValidationError(problem)
        return value


# --------------------------------------------------------------------------------------------- infusions
MAX_FINDINGS = 50


def _validate_findings(value):
    """NGS findings: a list of ``{"gene": "DNMT3A", "vaf_percent": 4.0}`` (gene names, not patient data)."""
    if not isinstance(value, list):
        raise serializers.ValidationError("must be a list of findings")
    if len(value) > MAX_FINDINGS:
        raise serializers.ValidationError(f"at most {MAX_FINDINGS} findings")
    for item in value:
        if not isinstance(item, dict) or set(item) - {"gene", "vaf_percent"} or "gene" not in item:
            raise serializers.ValidationError('each finding is {"gene": ..., "vaf_percent": ...}')
        gene = item["gene"]
        if not isinstance(gene, str) or not 0 < len(gene) <= 32 or not gene.replace("-", "").isalnum():
            raise serializers.ValidationError("a gene is 1 to 32 letters, digits or hyphens, e.g. DNMT3A")
        vaf = item.get("vaf_percent")
        if vaf is not None and (isinstance(vaf, bool) or not isinstance(vaf, int | float) or not 0 <= vaf <= 100):
            raise serializers.ValidationError("vaf_percent is a number from 0 to 100")
    return value


class RiskFlagSerializer(serializers.ModelSerializer):
    """A risk factor for second cancers, with where it came from and when (the variant follows from them)."""

    findings = serializers.JSONField(
        required=False,
        default=list,
        validators=[_validate_findings],
        help_text='NGS findings, e.g. [{"gene": "DNMT3A", "vaf_percent": 4.0}].',
    )

    class Meta:
        model = RiskFlag
        fields = ["code", "present", "source", "observed_on", "detail", "findings", "source_reference"]
        extra_kwargs = {"present": {"default": True}}

    def validate_observed_on(self, value):
        if not EARLIEST_BIRTH <= value <= _today():
            raise serializers.ValidationError(f"must lie between {EARLIEST_BIRTH} and today")
        return value

    @staticmethod
    def facts(data: dict) -> FlagFacts:
        return FlagFacts(
            code=data["code"],
            present=data.get("present", True),
            source=data["source"],
            observed_on=data["observed_on"],
            detail=data.get("detail", ""),
            findings=tuple(data.get("findings") or ()),
            source_reference=data.get("source_reference", ""),
        )


class RiskFlagChangeSerializer(RiskFlagSerializer):
    reason = serializers.CharField(
        max_length=255, required=False, default="", allow_blank=True, help_text="Kept with the re-plan."
    )

    class Meta(RiskFlagSerializer.Meta):
        fields = [*RiskFlagSerializer.Meta.fields, "reason"]


class VariantReasonSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A risk flag code, or prior_lines_ge_3, age_ge_65, target_bcma.")
    label = serializers.CharField()


class PlannedVisitRefSerializer(serializers.Serializer):
    visit_id = serializers.IntegerField(allow_null=True)
    rule_code = serializers.CharField()
    occurrence = serializers.IntegerField()
    due_date = serializers.DateField()


class PlannedVisitMoveSerializer(serializers.Serializer):
    visit_id = serializers.IntegerField()
    rule_code = serializers.CharField()
    occurrence = serializers.IntegerField()
    old_due = serializers.DateField()
    new_due = serializers.DateField()


class PlanDiffSerializer(serializers.Serializer):
    protocol_from = serializers.CharField(allow_null=True)
    protocol_to = serializers.CharField(allow_null=True)
    reasons = serializers.ListField(child=serializers.CharField(), help_text="Why the variant (codes).")
    summary = serializers.CharField()
    added = PlannedVisitRefSerializer(many=True)
    moved = PlannedVisitMoveSerializer(many=True)
    removed = PlannedVisitRefSerializer(many=True)
    changed = PlannedVisitRefSerializer(many=True)


class RiskFlagOutcomeSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    changed = serializers.ListField(
        child=serializers.CharField(), help_text="Codes of the flags that changed (empty: it was recorded already)."
    )
    plan = PlanDiffSerializer(allow_null=True, help_text="The re-plan (applied unless dry_run); null if none.")


class InfusionSerializer(serializers.ModelSerializer):
    patient = ScopedPrimaryKeyField(centre_path="centre", queryset=Patient.objects.all())
    product = serializers.SlugRelatedField(
        slug_field="code",
        queryset=CarTProduct.objects.all(),
        # the value is free text from the caller's system: it is not repeated back
        error_messages={"does_not_exist": "Not a product code of the catalogue (e.g. yescarta, kymriah, carvykti)."},
    )
    protocol = serializers.StringRelatedField(read_only=True, help_text="Protocol version, e.g. 'standard v1'.")
    risk_flags = RiskFlagSerializer(
        many=True,
        required=False,
        help_text="Writable when the infusion is recorded; later changes go to POST /infusions/{id}/risk-flags.",
    )
    variant_reasons = serializers.SerializerMethodField(
        help_text="Why the intensified variant was chosen (empty: standard): recorded flags, then derived triggers."
    )

    class Meta:
        model = Infusion
        fields = [
            "id",
            "patient",
            "product",
            "infusion_date",
            "indication",
            "lot_number",
            "prior_lines",
            "protocol",
            "superseded_by",
            "risk_flags",
            "variant_reasons",
            "source_system",
            "source_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "protocol", "superseded_by", "variant_reasons", "created_at", "updated_at"]
        validators: list = []
        extra_kwargs = {"prior_lines": {"max_value": 30}}

    def validate_infusion_date(self, value):
        if not EARLIEST_INFUSION <= value <= _today():
            raise serializers.ValidationError(f"must lie between {EARLIEST_INFUSION} and today")
        return value

    @extend_schema_field(VariantReasonSerializer(many=True))
    def get_variant_reasons(self, infusion: Infusion) -> list[dict]:
        return [{"code": code, "label": label} for code, label in planning.infusion_variant_reasons(infusion)]

    def validate_risk_flags(self, value: list[dict]) -> list[dict]:
        codes = [item["code"] for item in value]
        if len(set(codes)) != len(codes):
            raise serializers.ValidationError("one entry per flag code")
        return value

    def validate(self, attrs):
        if self.instance is not None and "risk_flags" in attrs:
            raise serializers.ValidationError(
                {"risk_flags": ["change flags with POST /api/v1/infusions/{id}/risk-flags, which re-plans the visits"]}
            )
        if self.instance is not None and "patient" in attrs and attrs["patient"] != self.instance.patient:
            raise serializers.ValidationError({"patient": ["cannot be changed"]})
        patient = attrs.get("patient") or self.instance.patient
        source_id = attrs.get("source_id", getattr(self.instance, "source_id", ""))
        source_system = attrs.get("source_system", getattr(self.instance, "source_system", ""))
        if source_id:
            others = Infusion.objects.filter(patient=patient, source_system=source_system, source_id=source_id)
            if self.instance is not None:
                others = others.exclude(pk=self.instance.pk)
            if others.exists():
                raise serializers.ValidationError({"source_id": ["another infusion of this patient has it"]})
        return attrs


# --------------------------------------------------------------------------------------------- visits
class RowListSerializer(serializers.ListSerializer):
    """A page of rows fetched with ``.values()``, keyed by the child serializer's field names.

    No model instances, no attribute look-ups, and for each field a renderer made once per page
    (``column_renderer``): the same output as the child serializer gives for an instance. A list page renders 50
    rows or more, where the per-field machinery of ``Serializer.to_representation`` cost more than the query.

    A child may render a field from another field's column (``ROW_KEYS``: field name -> row key), so that a value
    read once serves both.
    """

    #: The child's readable fields with their row keys, per child serializer class: building a serializer's fields
    #: (a deep copy of the declared ones, then one per model field) costs more than rendering a page. Only fields
    #: whose rendering does not depend on the request may be listed this way (no hyperlinks).
    _fields: dict[type, list[tuple[str, str, serializers.Field]]] = {}

    def to_representation(self, data):
        fields = self._fields.get(type(self.child))
        if fields is None:
            keys = getattr(self.child, "ROW_KEYS", {})
            fields = [(f.field_name, keys.get(f.field_name, f.field_name), f) for f in self.child._readable_fields]
            self._fields[type(self.child)] = fields
        renderers = [(name, key, column_renderer(field)) for name, key, field in fields]
        page = []
        for row in data:
            item = {}
            for name, key, render in renderers:
                value = row[key]
                item[name] = value if value is None or render is None else render(value)
            page.append(item)
        return page


#: Fields whose ``to_representation`` gives a column's value back unchanged (an int, a str, a bool); matched by
#: exact class, so a subclass that renders otherwise never is (JSON values and choices: ``_renders_as_stored``).
_RENDERED_AS_STORED = (
    serializers.IntegerField,
    serializers.CharField,
    serializers.BooleanField,
    serializers.ReadOnlyField,
)


def column_renderer(field: serializers.Field):
    """A function that renders a column's value (not None) as ``field.to_representation`` renders the model's,
    made for one page; None when the value renders as itself.

    What DRF's fields look up on every call (the output format, the time zone) is looked up here once; a field may
    offer its own ``column_renderer()`` (the assessments' labels, read once per page).
    """
    own = getattr(field, "column_renderer", None)
    if own is not None:
        return own()
    if _renders_as_stored(field):
        return None
    kind = type(field)
    if kind is serializers.DateField and iso_format(field, api_settings.DATE_FORMAT):
        return dt.date.isoformat
    if kind is serializers.DateTimeField and iso_format(field, api_settings.DATETIME_FORMAT):
        zone = field.timezone if hasattr(field, "timezone") else field.default_timezone()
        if zone is not None:
            return functools.partial(_iso_datetime, zone=zone, field=field)
    if isinstance(field, serializers.PrimaryKeyRelatedField):
        return lambda pk: field.to_representation(PKOnlyObject(pk=pk))
    return field.to_representation


def _renders_as_stored(field: serializers.Field) -> bool:
    kind = type(field)
    if kind is serializers.BigIntegerField:  # a primary key: an int unless the settings want big ones as text
        return not getattr(field, "coerce_to_string", api_settings.COERCE_BIGINT_TO_STRING)
    if kind is serializers.PrimaryKeyRelatedField:
        return field.pk_field is None  # a related field's column holds the primary key, which is what it renders
    if kind is serializers.JSONField:
        return not field.binary
    if kind is serializers.ChoiceField:  # renders the choice's key for its text: the same text when keys are text
        return all(isinstance(key, str) for key in field.choice_strings_to_values.values())
    return kind in _RENDERED_AS_STORED


def iso_format(field: serializers.Field, default: str) -> bool:
    output_format = getattr(field, "format", default)
    return isinstance(output_format, str) and output_format.lower() == ISO_8601


def _iso_datetime(value: dt.datetime, *, zone: dt.tzinfo, field: serializers.DateTimeField) -> str:
    """``DateTimeField.to_representation`` of an aware value in ``zone``, in ISO 8601 with UTC as ``Z``."""
    if value.tzinfo is None:  # DRF's field decides what a naive value means
        return field.to_representation(value)
    try:
        text = value.astimezone(zone).isoformat()
    except OverflowError:  # out of range in that zone: DRF's field says so
        return field.to_representation(value)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def codes_of(value):
    """A visit's stored assessments (JSON text), read as a tuple decoded once per process for each different list:
    a list page's rows bring back the same few lists, and decoding each again was a twentieth of the page.
    Anything but a list of text is decoded as a JSON column is."""
    codes = _codes(value) if isinstance(value, str) else None
    return stored_json(value) if codes is None else codes


#: 19 digits in a row: where a number may be an integer that 64 bits do not hold.
_LONG_NUMBER = re.compile(r"\d{19}")


def stored_json(value):
    """A JSON column's text decoded as ``JSONField`` decodes it when read by the ORM.

    orjson first (a page decodes one per row, and the standard module took a twentieth of the page), but not for a
    text with 19 digits in a row, which may be an integer beyond 64 bits: orjson reads such a number as a float,
    the standard module (as the ORM) as the integer it is. What orjson refuses goes to the standard module too."""
    if not isinstance(value, str):
        return value
    if _LONG_NUMBER.search(value) is None:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@functools.lru_cache(maxsize=1024)
def _codes(text: str) -> tuple[str, ...] | None:
    """The codes of a JSON list of text (shared between rows, hence a tuple), or None for any other JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return tuple(value) if isinstance(value, list) and all(isinstance(code, str) for code in value) else None


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "label": {"type": "string"}},
            "required": ["code", "label"],
        },
    }
)
class AssessmentLabelsField(serializers.ReadOnlyField):
    """The visit's assessment codes with their English labels from the catalogue (``seeds/labels.yaml``)."""

    def to_representation(self, value):
        return labels_of(value or [])

    def column_renderer(self):
        """For ``RowListSerializer``: the catalogue's labels read once for the page, and each list of codes shown
        once (a page's visits ask for a few dozen different lists; rows with the same list share it)."""
        labels, shown = labels_in(), {}

        def render(codes: list[str]) -> list[dict[str, str]]:
            key = tuple(codes)
            found = shown.get(key)
            if found is None:
                found = shown[key] = labels_shown(labels, codes)
            return found

        return render


class VisitSerializer(serializers.ModelSerializer):
    patient = serializers.IntegerField(source="infusion.patient_id", read_only=True)
    centre = serializers.CharField(source="infusion.patient.centre.code", read_only=True)
    assessments_display = AssessmentLabelsField(source="assessments")

    #: Fields of a list row (``visit_list_page``) that come through joins.
    JOINED = ("patient", "centre")
    #: Fields a list row renders from another key: the assessments, read once for both fields that show them, and
    #: through ``codes_of``.
    ROW_KEYS = {"assessments": "assessment_codes", "assessments_display": "assessment_codes"}

    class Meta:
        model = FollowUpVisit
        list_serializer_class = RowListSerializer
        fields = [
            "id",
            "patient",
            "centre",
            "infusion",
            "rule_code",
            "occurrence",
            *PLAN_FIELDS,
            "assessments_display",
            "status",
            "status_reason",
            "completed_on",
            "results",
            "sequence",
            "updated_at",
        ]
        read_only_fields = fields


def _validate_results(value):
    if not isinstance(value, dict):
        raise serializers.ValidationError("must be an object of named results")
    if len(value) > MAX_RESULT_KEYS:
        raise serializers.ValidationError(f"at most {MAX_RESULT_KEYS} results")
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 64:
            raise serializers.ValidationError("result names are 1 to 64 characters")
        if item is not None and not isinstance(item, str | int | float | bool):
            raise serializers.ValidationError(f"{key}: a result is a string, number, boolean or null")
        if "\x00" in key or (isinstance(item, str) and "\x00" in item):
            raise serializers.ValidationError("null characters are not allowed")
        if isinstance(item, str) and len(item) > 500:
            raise serializers.ValidationError(f"{key}: at most 500 characters")
    return value


class ResultEntrySerializer(serializers.Serializer):
    """One result to record: an assessment's outcome, or one analyte of a blood count with its value and unit."""

    assessment = serializers.CharField(max_length=64, help_text="An assessment code the visit asks for.")
    outcome = serializers.ChoiceField(
        choices=ResultOutcome.choices,
        required=False,
        default="",
        allow_blank=True,
        help_text="Required for an assessment; for an analyte its interpretation (else read from the range).",
    )
    analyte = serializers.CharField(max_length=32, required=False, default="", allow_blank=True)
    loinc = serializers.CharField(max_length=16, required=False, default="", allow_blank=True)
    value = serializers.FloatField(required=False, default=None, allow_null=True)
    unit = serializers.CharField(max_length=32, required=False, default="", allow_blank=True)
    reference_low = serializers.FloatField(required=False, default=None, allow_null=True)
    reference_high = serializers.FloatField(required=False, default=None, allow_null=True)
    effective_on = serializers.DateField(required=False, default=None, allow_null=True)
    note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class VisitResultsSerializer(serializers.Serializer):
    assessment_results = ResultEntrySerializer(many=True, max_length=200)

    def entries(self) -> list[ResultEntry]:
        return [ResultEntry(**item) for item in self.validated_data["assessment_results"]]


class VisitCompleteSerializer(serializers.Serializer):
    completed_on = serializers.DateField(help_text="The day it was done (not in the future).")
    results = serializers.JSONField(
        required=False, default=dict, validators=[_validate_results], help_text="Free-form notes, kept as sent."
    )
    assessment_results = ResultEntrySerializer(many=True, required=False, default=list, max_length=200)
    rest_normal = serializers.BooleanField(
        required=False, default=False, help_text='"Done, nothing abnormal" for every assessment not given a result.'
    )

    def validate_completed_on(self, value):
        if value > _today():
            raise serializers.ValidationError("cannot be in the future")
        if value < EARLIEST_INFUSION:
            raise serializers.ValidationError(f"cannot be before {EARLIEST_INFUSION}")
        return value


class VisitRescheduleSerializer(serializers.Serializer):
    due_date = serializers.DateField(help_text="The new date, within the visit's window.")
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate_due_date(self, value):
        visit = self.context["visit"]
        if not visit.window_start <= value <= visit.window_end:
            raise serializers.ValidationError(
                f"must lie within the visit window {visit.window_start} to {visit.window_end}"
            )
        return value


class VisitCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=255, help_text="Why the visit will not take place.")


class VisitResultSerializer(serializers.ModelSerializer):
    assessment_label = serializers.SerializerMethodField()
    analyte_label = serializers.SerializerMethodField()

    class Meta:
        model = VisitResult
        fields = [
            "id",
            "assessment",
            "assessment_label",
            "analyte",
            "analyte_label",
            "loinc",
            "value",
            "unit",
            "reference_low",
            "reference_high",
            "outcome",
            "effective_on",
            "source",
            "source_id",
            "recorded_by_label",
            "note",
            "recorded_at",
        ]
        read_only_fields = fields

    def get_assessment_label(self, row: VisitResult) -> str:
        return label(row.assessment)

    def get_analyte_label(self, row: VisitResult) -> str:
        return label(row.analyte) if row.analyte else ""


# --------------------------------------------------------------------------------------------- protocols
class ProtocolRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProtocolRule
        fields = [
            "position",
            "code",
            "label",
            "kind",
            "offset_amount",
            "offset_unit",
            "repeat_every",
            "repeat_until",
            "lifelong",
            "window_before_days",
            "window_after_days",
            "assessments",
            "applies_to",
            "condition",
            "source",
        ]
        read_only_fields = fields


class ProtocolSerializer(serializers.ModelSerializer):
    rules = ProtocolRuleSerializer(many=True, read_only=True)

    class Meta:
        model = Protocol
        fields = ["id", "code", "version", "name", "variant", "status", "description", "activated_at", "rules"]
        read_only_fields = fields


# --------------------------------------------------------------------------------------------- reminders
class ReminderSerializer(serializers.ModelSerializer):
    class Meta:
        model = Reminder
        fields = [
            "id",
            "visit",
            "audience",
            "purpose",
            "days_before",
            "channel",
            "send_after",
            "status",
            "attempts",
            "sent_at",
            "outcome_reason",
            "last_smtp_code",
            "last_error",
        ]
        read_only_fields = fields
        # What the mail server (or provider) last answered, so an integration can see why a reminder is retried or
        # failed; the dispatcher stores it without the recipient's address.
        extra_kwargs = {
            "last_smtp_code": {
                "help_text": "The mail server's last reply code (e.g. 450, 550), or the SMS provider's HTTP status."
            },
            "last_error": {"help_text": "The last delivery error, without the recipient's address."},
        }


# --------------------------------------------------------------------------------------------- malignancy events
class ReportingStepSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReportingStep
        fields = ["kind", "due_date", "completed_at", "reference"]
        read_only_fields = fields


class MalignancyEventSerializer(serializers.ModelSerializer):
    infusion = ScopedPrimaryKeyField(centre_path="patient__centre", queryset=Infusion.objects.all())
    patient = serializers.IntegerField(source="infusion.patient_id", read_only=True)
    reporting_steps = ReportingStepSerializer(many=True, read_only=True)

    class Meta:
        model = MalignancyEvent
        fields = [
            "id",
            "patient",
            "infusion",
            "diagnosis_date",
            "malignancy_type",
            "confirmed",
            "description",
            "transgene_status",
            "recorded_at",
            "reporting_steps",
        ]
        read_only_fields = ["id", "patient", "transgene_status", "recorded_at", "reporting_steps"]

    def validate(self, attrs):
        infusion, day = attrs["infusion"], attrs["diagnosis_date"]
        if day > _today():
            raise serializers.ValidationError({"diagnosis_date": ["cannot be in the future"]})
        if day < infusion.infusion_date:
            raise serializers.ValidationError({"diagnosis_date": ["cannot be before the infusion"]})
        return attrs


# --------------------------------------------------------------------------------------------- webhooks
class WebhookEndpointSerializer(serializers.ModelSerializer):
    centre = ScopedSlugField(slug_field="code", centre_path="", queryset=TreatmentCentre.objects.all(), required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        required=False,
        max_length=len(WebhookEvent.values),
        help_text="Event types to receive; empty or absent means all.",
    )
    url = serializers.URLField(
        max_length=500,
        help_text="An https:// URL whose host resolves to public addresses only (no private, loopback or link-local "
        "address).",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "centre", "url", "events", "active", "description", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_url(self, value: str) -> str:
        from surveillance.integrations.webhooks import webhook_url_problem

        problem = webhook_url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs):
        if self.instance is not None:
            if "centre" in attrs and attrs["centre"] != self.instance.centre:
                raise serializers.ValidationError({"centre": ["cannot be changed"]})
        elif attrs.get("centre") is None:
            centres = list(scope(TreatmentCentre.objects.all(), self.context["request"].user, "")[:2])
            if len(centres) != 1:
                raise serializers.ValidationError({"centre": ["required: you have more than one centre"]})
            attrs["centre"] = centres[0]
        return attrs


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="The signing secret; shown only in this response.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookEndpointSerializer.Meta.read_only_fields, "secret"]


# --------------------------------------------------------------------------------------------- import reports
class ImportCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField(required=False)
    replanned = serializers.IntegerField(required=False)
    unchanged = serializers.IntegerField()
    closed = serializers.IntegerField(required=False)


class ImportReconciledSerializer(serializers.Serializer):
    completed = serializers.IntegerField()
    booked = serializers.IntegerField()
    results_recorded = serializers.IntegerField()


class ImportIgnoredSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    by_reason = serializers.DictField(child=serializers.IntegerField())


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(allow_null=True)
    entry = serializers.IntegerField(allow_null=True)
    field = serializers.CharField(allow_blank=True)
    message = serializers.CharField()
    code = serializers.CharField()


class ImportReportSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    format = serializers.ChoiceField(choices=["bundle", "ndjson", "csv"])
    patients = ImportCountsSerializer()
    infusions = ImportCountsSerializer()
    visits_planned = serializers.IntegerField()
    risk_flags_recorded = serializers.IntegerField(help_text="Risk flags new or changed on the patients' infusions.")
    signals_raised = serializers.IntegerField(
        help_text="Second-cancer signals raised from the results and diagnoses imported (each on a physician review)."
    )
    visits_reconciled = ImportReconciledSerializer(
        help_text="Visits completed by the EHR's finished encounters, booked by its appointments, and results filled."
    )
    ignored = ImportIgnoredSerializer()
    lines = serializers.IntegerField()
    error_count = serializers.IntegerField()
    errors = ImportErrorSerializer(many=True)


class OperationOutcomeIssueSerializer(serializers.Serializer):
    severity = serializers.CharField()
    code = serializers.CharField()
    diagnostics = serializers.CharField(required=False)
    expression = serializers.ListField(child=serializers.CharField(), required=False)


class OperationOutcomeSerializer(serializers.Serializer):
    resourceType = serializers.CharField()
    issue = OperationOutcomeIssueSerializer(many=True)
