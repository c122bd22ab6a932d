"""API v1 views: thin shells. Each validates with a serializer, calls one domain function, renders an explicit
output serializer. Every queryset is scoped to the caller's centres, so a foreign object is a 404, never a 403."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from surveillance.access.tenancy import scope
from surveillance.api import filters, serializers
from surveillance.api.auth import TokenPrincipal
from surveillance.api.exceptions import PROBLEM_JSON, Conflict, ErrorSerializer, PayloadTooLarge
from surveillance.care import lifecycle, planning, reporting
from surveillance.exports import fhir_export
from surveillance.imports import ehr_import
from surveillance.imports.fhir.records import FhirImportError
from surveillance.models import (
    FollowUpVisit,
    Infusion,
    MalignancyEvent,
    Patient,
    Protocol,
    Reminder,
    TreatmentCentre,
    WebhookEndpoint,
)
from surveillance.models import audit as audit_models


def acting_user(request):
    """The user row to attribute a change to; None for a token (audit rows then carry the token's label)."""
    user = request.user
    return None if isinstance(user, TokenPrincipal) or not user.is_authenticated else user


class JsonErrorsNegotiation(BaseContentNegotiation):
    """Export endpoints answer their own media type on success; errors are always JSON, whatever was asked."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ApiViewMixin:
    """Tenancy, the token's audit label, and which patients a response showed (for the audit trail)."""

    #: Lookup from the model to its centre ("" for the centre itself, None for shared data such as protocols).
    centre_path: str | None = None
    #: Attribute path from an object to its patient id ("pk" for a patient, None when there is none).
    patient_attr: str | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if isinstance(request.user, TokenPrincipal):
            self._label_token = audit_models.request_actor_label.set(request.user.audit_label)

    def finalize_response(self, request, response, *args, **kwargs):
        token = getattr(self, "_label_token", None)
        if token is not None:
            audit_models.request_actor_label.reset(token)
            self._label_token = None
        return super().finalize_response(request, response, *args, **kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.centre_path is None:
            return queryset
        return scope(queryset, self.request.user, self.centre_path)

    def patient_id_of(self, obj) -> int | None:
        if self.patient_attr is None:
            return None
        if isinstance(obj, dict):  # a row of a list fetched with .values(): rows name their patient "patient"
            return obj["patient"]
        value = obj
        for part in self.patient_attr.split("."):
            value = getattr(value, part, None)
        return value

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        if page is not None and self.patient_attr is not None:
            self.request._request.audit_patient_ids = [
                pid for pid in (self.patient_id_of(obj) for obj in page) if pid is not None
            ]
        return page

    def get_object(self):
        obj = super().get_object()
        pid = self.patient_id_of(obj)
        if pid is not None:
            self.request._request.audit_patient_id = pid
        return obj


# --------------------------------------------------------------------------------------------- centres
@extend_schema_view(
    list=extend_schema(summary="List the caller's centres"),
    retrieve=extend_schema(summary="A centre of the caller"),
)
class CentreViewSet(ApiViewMixin, viewsets.ReadOnlyModelViewSet):
    queryset = TreatmentCentre.objects.all()
    serializer_class = serializers.CentreSerializer
    centre_path = ""
    ordering = ["code"]
    ordering_fields = ["code", "name", "id"]
    filterset_fields = ["code"]

    @extend_schema(
        summary="iCalendar feed of a centre's visits",
        parameters=[
            OpenApiParameter("due_after", OpenApiTypes.DATE, description="Default: 30 days ago."),
            OpenApiParameter("due_before", OpenApiTypes.DATE, description="Default: a year from today."),
        ],
        responses={(200, "text/calendar"): OpenApiTypes.BINARY},
        filters=False,
    )
    @action(
        detail=True,
        url_path="calendar.ics",
        url_name="calendar",
        content_negotiation_class=JsonErrorsNegotiation,
        pagination_class=None,
        filter_backends=[],
    )
    def calendar(self, request, pk=None):
        centre = self.get_object()
        start, end = _date_range(request, default_back_days=30, default_ahead_days=365)
        visits = (
            FollowUpVisit.objects.filter(infusion__patient__centre=centre, due_date__range=(start, end))
            .select_related("infusion")
            .order_by("due_date", "pk")
        )
        body = fhir_export.visits_calendar(visits, name=f"{centre.code} follow-up visits", per_patient=False)
        return HttpResponse(body, content_type="text/calendar; charset=utf-8")


def _date_range(request, *, default_back_days: int, default_ahead_days: int):
    import datetime as dt

    from django.utils import timezone

    today = timezone.localdate()
    values = {}
    errors = {}
    for name, default in (
        ("due_after", today - dt.timedelta(days=default_back_days)),
        ("due_before", today + dt.timedelta(days=default_ahead_days)),
    ):
        raw = request.query_params.get(name)
        if raw in (None, ""):
            values[name] = default
            continue
        try:
            values[name] = dt.date.fromisoformat(raw)
        except ValueError:
            errors[name] = ["expected a date YYYY-MM-DD"]
    if errors:
        raise exceptions.ValidationError(errors)
    if values["due_after"] > values["due_before"]:
        raise exceptions.ValidationError({"due_before": ["must not be before due_after"]})
    if (values["due_before"] - values["due_after"]).days > 366 * 50:
        raise exceptions.ValidationError({"due_before": ["the range may span at most 50 years"]})
    return values["due_after"], values["due_before"]


# --------------------------------------------------------------------------------------------- patients
@extend_schema_view(
    list=extend_schema(summary="List patients"),
    retrieve=extend_schema(summary="A patient"),
    create=extend_schema(summary="Register a patient"),
    update=extend_schema(summary="Replace a patient's details"),
    partial_update=extend_schema(summary="Change a patient's details"),
)
class PatientViewSet(
    ApiViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Patient.objects.select_related("centre")
    serializer_class = serializers.PatientSerializer
    filterset_class = filters.PatientFilter
    centre_path = "centre"
    patient_attr = "pk"
    ordering = ["id"]
    ordering_fields = ["id", "mrn", "created_at", "updated_at"]
    write_permission = "surveillance.change_patient"

    def get_permissions(self):
        if self.action == "create":
            self.write_permission = "surveillance.add_patient"
        return super().get_permissions()

    @extend_schema(
        summary="The patient's schedule as a FHIR CarePlan",
        description="A Bundle (collection) of the CarePlan and a proposed Appointment per open visit.",
        responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT},
        filters=False,
    )
    @action(detail=True, url_path="careplan", content_negotiation_class=JsonErrorsNegotiation, filter_backends=[])
    def careplan(self, request, pk=None):
        patient = self.get_object()
        return Response(fhir_export.patient_careplan_bundle(patient), content_type="application/fhir+json")

    @extend_schema(
        summary="The patient's schedule as CSV",
        responses={(200, "text/csv"): OpenApiTypes.BINARY},
        filters=False,
    )
    @action(
        detail=True,
        url_path="schedule.csv",
        url_name="schedule-csv",
        content_negotiation_class=JsonErrorsNegotiation,
        filter_backends=[],
    )
    def schedule_csv(self, request, pk=None):
        patient = self.get_object()
        body = fhir_export.visits_csv(fhir_export.schedule_visits(patient))
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="schedule-{patient.pk}.csv"'
        return response

    @extend_schema(
        summary="iCalendar feed of the patient's visits",
        responses={(200, "text/calendar"): OpenApiTypes.BINARY},
        filters=False,
    )
    @action(
        detail=True,
        url_path="calendar.ics",
        url_name="calendar",
        content_negotiation_class=JsonErrorsNegotiation,
        filter_backends=[],
    )
    def calendar(self, request, pk=None):
        patient = self.get_object()
        body = fhir_export.visits_calendar(
            fhir_export.schedule_visits(patient), name="Follow-up visits", per_patient=True
        )
        return HttpResponse(body, content_type="text/calendar; charset=utf-8")


# --------------------------------------------------------------------------------------------- infusions
@extend_schema_view(
    list=extend_schema(summary="List infusions"),
    retrieve=extend_schema(summary="An infusion"),
    create=extend_schema(summary="Record an infusion (its schedule is planned at once)"),
    update=extend_schema(summary="Replace an infusion (a new date or product re-plans it)"),
    partial_update=extend_schema(summary="Change an infusion (a new date or product re-plans it)"),
)
class InfusionViewSet(
    ApiViewMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Infusion.objects.select_related("product", "protocol", "patient").prefetch_related("risk_flags")
    serializer_class = serializers.InfusionSerializer
    filterset_class = filters.InfusionFilter
    centre_path = "patient__centre"
    patient_attr = "patient_id"
    ordering = ["id"]
    ordering_fields = ["id", "infusion_date", "created_at", "updated_at"]
    write_permission = "surveillance.change_infusion"

    def get_permissions(self):
        if self.action == "create":
            self.write_permission = "surveillance.add_infusion"
        return super().get_permissions()

    def perform_create(self, serializer):
        by = acting_user(self.request)
        with transaction.atomic():
            infusion = serializer.save()
            planning.infusion_plan(infusion, by=by, reason="recorded through the API")
            if Infusion.objects.filter(patient=infusion.patient, infusion_date__lt=infusion.infusion_date).exists():
                planning.infusion_supersede_earlier(infusion, by=by)
        self.request._request.audit_patient_id = infusion.patient_id

    def perform_update(self, serializer):
        before = (serializer.instance.infusion_date, serializer.instance.product_id)
        with transaction.atomic():
            infusion = serializer.save()
            if (infusion.infusion_date, infusion.product_id) != before and infusion.patient.under_follow_up:
                planning.infusion_plan(
                    infusion, by=acting_user(self.request), reason="infusion date or product corrected"
                )


# --------------------------------------------------------------------------------------------- visits
def _transition(call):
    try:
        return call()
    except lifecycle.TransitionError as exc:
        raise Conflict(str(exc)) from exc


@extend_schema_view(
    list=extend_schema(summary="List follow-up visits"),
    retrieve=extend_schema(summary="A follow-up visit"),
)
class VisitViewSet(ApiViewMixin, viewsets.ReadOnlyModelViewSet):
    queryset = FollowUpVisit.objects.select_related("infusion__patient__centre")
    serializer_class = serializers.VisitSerializer
    filterset_class = filters.VisitFilter
    centre_path = "infusion__patient__centre"
    patient_attr = "infusion.patient_id"
    ordering = ["due_date", "id"]
    ordering_fields = ["due_date", "id", "window_end", "updated_at"]
    write_permission = "surveillance.change_followupvisit"
    extra_error_codes = ("409",)

    def get_queryset(self):
        queryset = super().get_queryset()
        return serializers.VisitSerializer.rows(queryset) if self.action == "list" else queryset

    def _act(self, request, serializer_class, call):
        visit = self.get_object()
        serializer = serializer_class(data=request.data, context={**self.get_serializer_context(), "visit": visit})
        serializer.is_valid(raise_exception=True)
        visit = _transition(lambda: call(visit, serializer.validated_data, acting_user(request)))
        return Response(serializers.VisitSerializer(visit, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Record the visit as done, with its results",
        request=serializers.VisitCompleteSerializer,
        responses={200: serializers.VisitSerializer},
        filters=False,
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def complete(self, request, pk=None):
        return self._act(
            request,
            serializers.VisitCompleteSerializer,
            lambda visit, data, by: lifecycle.visit_mark_completed(
                visit, completed_on=data["completed_on"], results=data.get("results") or {}, by=by
            ),
        )

    @extend_schema(
        summary="Move the visit within its window",
        request=serializers.VisitRescheduleSerializer,
        responses={200: serializers.VisitSerializer},
        filters=False,
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def reschedule(self, request, pk=None):
        return self._act(
            request,
            serializers.VisitRescheduleSerializer,
            lambda visit, data, by: lifecycle.visit_reschedule(
                visit, new_date=data["due_date"], reason=data.get("reason", ""), by=by
            ),
        )

    @extend_schema(
        summary="Cancel the visit, with a reason",
        request=serializers.VisitCancelSerializer,
        responses={200: serializers.VisitSerializer},
        filters=False,
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def cancel(self, request, pk=None):
        return self._act(
            request,
            serializers.VisitCancelSerializer,
            lambda visit, data, by: lifecycle.visit_cancel(visit, reason=data["reason"], by=by),
        )


# --------------------------------------------------------------------------------------------- protocols
@extend_schema_view(
    list=extend_schema(summary="List protocol versions, with their rules"),
    retrieve=extend_schema(summary="A protocol version, with its rules"),
)
class ProtocolViewSet(ApiViewMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Protocol.objects.prefetch_related("rules")
    serializer_class = serializers.ProtocolSerializer
    filterset_fields = ["code", "status", "variant"]
    ordering = ["code", "version"]
    ordering_fields = ["code", "version", "id"]


# --------------------------------------------------------------------------------------------- reminders
@extend_schema_view(
    list=extend_schema(summary="List reminders (the outbox)"),
    retrieve=extend_schema(summary="A reminder"),
)
class ReminderViewSet(ApiViewMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Reminder.objects.select_related("visit__infusion")
    serializer_class = serializers.ReminderSerializer
    filterset_class = filters.ReminderFilter
    centre_path = "visit__infusion__patient__centre"
    patient_attr = "visit.infusion.patient_id"
    ordering = ["send_after", "id"]
    ordering_fields = ["send_after", "id"]


# --------------------------------------------------------------------------------------------- malignancy events
@extend_schema_view(
    list=extend_schema(summary="List malignancy events"),
    retrieve=extend_schema(summary="A malignancy event, with its reporting steps"),
    create=extend_schema(summary="Record a malignancy event (opens its reporting steps)"),
)
class MalignancyEventViewSet(
    ApiViewMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    queryset = MalignancyEvent.objects.select_related("infusion").prefetch_related("reporting_steps")
    serializer_class = serializers.MalignancyEventSerializer
    filterset_class = filters.MalignancyEventFilter
    centre_path = "infusion__patient__centre"
    patient_attr = "infusion.patient_id"
    ordering = ["id"]
    ordering_fields = ["id", "diagnosis_date"]
    write_permission = "surveillance.add_malignancyevent"

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = reporting.malignancy_event_record(
            data["infusion"],
            diagnosis_date=data["diagnosis_date"],
            malignancy_type=data["malignancy_type"],
            confirmed=data.get("confirmed", True),
            description=data.get("description", ""),
            by=acting_user(self.request),
        )
        self.request._request.audit_patient_id = data["infusion"].patient_id


# --------------------------------------------------------------------------------------------- webhooks
@extend_schema_view(
    list=extend_schema(summary="List the centres' webhook endpoints"),
    retrieve=extend_schema(summary="A webhook endpoint"),
    create=extend_schema(
        summary="Register a webhook endpoint", responses={201: serializers.WebhookEndpointCreatedSerializer}
    ),
    update=extend_schema(summary="Replace a webhook endpoint"),
    partial_update=extend_schema(summary="Change a webhook endpoint (e.g. deactivate it)"),
    destroy=extend_schema(summary="Remove a webhook endpoint"),
)
class WebhookEndpointViewSet(ApiViewMixin, viewsets.ModelViewSet):
    queryset = WebhookEndpoint.objects.select_related("centre")
    serializer_class = serializers.WebhookEndpointSerializer
    centre_path = "centre"
    ordering = ["id"]
    ordering_fields = ["id", "created_at"]
    filterset_fields = ["active"]
    write_permission = "surveillance.change_webhookendpoint"

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = serializer.save(secret=WebhookEndpoint.new_secret())
        out = serializers.WebhookEndpointCreatedSerializer(endpoint, context=self.get_serializer_context())
        return Response(out.data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------------------------- import
NDJSON_TYPES = ("application/x-ndjson", "application/fhir+ndjson", "application/ndjson")
JSON_TYPES = ("application/json", "application/fhir+json")

IMPORT_PARAMETERS = [
    OpenApiParameter("centre", str, description="Centre code; optional when the caller has exactly one centre."),
    OpenApiParameter("dry_run", bool, description="Report what would happen; save nothing."),
    OpenApiParameter(
        "source_system",
        str,
        description=f"Name of the sending EHR (identity of its ids). Default `{ehr_import.DEFAULT_SOURCE_SYSTEM}`.",
    ),
]


def _no_nul(request, *names: str) -> None:
    bad = {name: ["Null characters are not allowed."] for name in names if "\x00" in request.query_params.get(name, "")}
    if bad:
        raise exceptions.ValidationError(bad)


def _flag(request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise exceptions.ValidationError({name: ["expected 1/0 or true/false"]})


class ImportView(ApiViewMixin, APIView):
    write_permission = "surveillance.add_patient"
    parser_classes: list = []
    request_body_required = True
    extra_error_codes = ("413", "415")

    def import_args(self, request) -> dict:
        _no_nul(request, "centre", "source_system")
        code = request.query_params.get("centre")
        centres = scope(TreatmentCentre.objects.all(), request.user, "")
        if code:
            centre = centres.filter(code=code).first()
            if centre is None:
                raise exceptions.ValidationError({"centre": ["no such centre among yours"]})
        else:
            found = list(centres[:2])
            if len(found) != 1:
                raise exceptions.ValidationError({"centre": ["required: you have more than one centre"]})
            centre = found[0]
        source = (request.query_params.get("source_system") or ehr_import.DEFAULT_SOURCE_SYSTEM).strip()
        if not 0 < len(source) <= 255:
            raise exceptions.ValidationError({"source_system": ["1 to 255 characters"]})
        return {"centre": centre, "dry_run": _flag(request, "dry_run"), "source_system": source}

    def check_size(self, request) -> int:
        limit = ehr_import.import_max_bytes()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError as exc:
            raise exceptions.ValidationError({"Content-Length": ["not a number"]}) from exc
        if length > limit:
            raise PayloadTooLarge(f"The payload is {length} bytes; the limit is {limit}.")
        return limit

    def read_all(self, request, limit: int) -> bytes:
        body = request._request.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(f"The payload is over the limit of {limit} bytes.")
        return body

    @staticmethod
    def outcome(exc: FhirImportError) -> Response:
        return Response(exc.to_operation_outcome(), status=400, content_type="application/fhir+json")

    def content_type(self, request) -> str:
        return (request.content_type or "").split(";")[0].strip().lower()


_IMPORT_RESPONSES = {
    200: serializers.ImportReportSerializer,
    (400, PROBLEM_JSON): OpenApiResponse(ErrorSerializer, description="Bad query parameters."),
    (400, "application/fhir+json"): OpenApiResponse(
        serializers.OperationOutcomeSerializer,
        description="Refused: an OperationOutcome names each bad entry (or line) and element; nothing was saved.",
    ),
}


class FhirImportView(ImportView):
    @extend_schema(
        summary="Import a FHIR R4 Bundle or Bulk Data NDJSON",
        description=(
            "A Bundle (transaction, batch, collection or searchset) is atomic: any bad entry refuses it with an "
            "OperationOutcome and nothing is saved. NDJSON (`application/fhir+ndjson` or `application/x-ndjson`, "
            "one resource per line, Patient lines first) is applied in batches and reports problems per line. "
            "Patients, and Procedures / MedicationAdministrations / MedicationRequests coded as CAR-T, are "
            "imported; everything else is counted as ignored. Importing the same export twice changes nothing."
        ),
        parameters=IMPORT_PARAMETERS,
        request={
            "application/fhir+json": OpenApiTypes.OBJECT,
            "application/json": OpenApiTypes.OBJECT,
            "application/fhir+ndjson": OpenApiTypes.STR,
            "application/x-ndjson": OpenApiTypes.STR,
        },
        responses=_IMPORT_RESPONSES,
    )
    def post(self, request):
        limit = self.check_size(request)
        args = self.import_args(request)
        kind = self.content_type(request)
        try:
            if kind in NDJSON_TYPES:
                lines = ehr_import.ndjson_lines(request._request, limit)
                report = ehr_import.ndjson_import(lines, **args)
            elif kind in JSON_TYPES:
                report = ehr_import.bundle_import(self.read_all(request, limit), **args)
            else:
                raise exceptions.UnsupportedMediaType(
                    kind or "none", detail=f"Send {', '.join(JSON_TYPES + NDJSON_TYPES)}."
                )
        except FhirImportError as exc:
            return self.outcome(exc)
        request._request.audit_patient_ids = sorted(report.patient_ids)
        return Response(report.as_dict())


class CsvImportView(ImportView):
    @extend_schema(
        summary="Import a clinic CSV export",
        description=(
            "Header: mrn, given_name, family_name, birth_date, sex, email, phone, preferred_language, product, "
            "infusion_date, lot_number. Atomic: any bad row refuses the file with an OperationOutcome."
        ),
        parameters=IMPORT_PARAMETERS,
        request={"text/csv": OpenApiTypes.STR},
        responses=_IMPORT_RESPONSES,
    )
    def post(self, request):
        limit = self.check_size(request)
        args = self.import_args(request)
        if self.content_type(request) != "text/csv":
            raise exceptions.UnsupportedMediaType(self.content_type(request) or "none", detail="Send text/csv.")
        try:
            text = self.read_all(request, limit).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise exceptions.ValidationError({"body": ["the CSV is not UTF-8 text"]}) from exc
        try:
            report = ehr_import.csv_import(text, **args)
        except FhirImportError as exc:
            return self.outcome(exc)
        request._request.audit_patient_ids = sorted(report.patient_ids)
        return Response(report.as_dict())


# --------------------------------------------------------------------------------------------- bulk export
class VisitsExportView(ApiViewMixin, APIView):
    content_negotiation_class = JsonErrorsNegotiation

    @extend_schema(
        summary="Bulk export of visits due in a date range (NDJSON, one visit per line)",
        parameters=[
            OpenApiParameter("due_after", OpenApiTypes.DATE, description="Default: 30 days ago."),
            OpenApiParameter("due_before", OpenApiTypes.DATE, description="Default: a year from today."),
            OpenApiParameter("centre", str, description="Centre code (default: all the caller's centres)."),
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    def get(self, request):
        _no_nul(request, "centre")
        start, end = _date_range(request, default_back_days=30, default_ahead_days=365)
        visits = scope(FollowUpVisit.objects.all(), request.user, "infusion__patient__centre").filter(
            due_date__range=(start, end)
        )
        code = request.query_params.get("centre")
        if code:
            visits = visits.filter(infusion__patient__centre__code=code)
        visits = visits.select_related("infusion__patient").order_by("due_date", "pk")
        return StreamingHttpResponse(
            fhir_export.visits_ndjson(visits.iterator(chunk_size=2000)), content_type="application/x-ndjson"
        )
