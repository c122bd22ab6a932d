"""API v1 views: thin shells. Each validates with a serializer, calls one domain function, renders an explicit
output serializer. Every queryset is scoped to the caller's centres, so a foreign object is a 404, never a 403."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.http import HttpResponse
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from surveillance.access.tenancy import scope, user_centre_ids
from surveillance.api import filters, idempotency, import_jobs, serializers, visit_list
from surveillance.api.auth import TokenPrincipal
from surveillance.api.exceptions import PROBLEM_JSON, Conflict, ErrorSerializer, PayloadTooLarge
from surveillance.care import infusions, lifecycle, reporting, risk_flags
from surveillance.care import results as visit_results
from surveillance.exports import fhir_export, visit_pages
from surveillance.imports import ehr_import, jobs
from surveillance.imports.fhir.records import FhirImportError
from surveillance.models import (
    FollowUpVisit,
    ImportFormat,
    Infusion,
    MalignancyEvent,
    Patient,
    Protocol,
    Reminder,
    ResultSource,
    TreatmentCentre,
    WebhookEndpoint,
)
from surveillance.models import audit as audit_models


def acting_user(request):
    """The user row to attribute a change to; None for a token (audit rows then carry the token's label)."""
    user = request.user
    return None if isinstance(user, TokenPrincipal) or not user.is_authenticated else user


def result_source(request) -> dict[str, str]:
    """Where results posted in this request come from: a person, or the integration behind an API token (named
    as the audit trail names it), whose results are machine data that never replace a person's."""
    user = request.user
    if isinstance(user, TokenPrincipal):
        return {"source": ResultSource.INTEGRATION, "source_label": user.audit_label}
    return {"source": ResultSource.PERSON, "source_label": ""}


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
            self._idempotency_claim(request)

    def _idempotency_claim(self, request) -> None:
        """A token's POST with an ``Idempotency-Key``: claim it, or answer as the first time (``Replay``)."""
        self._idempotency = None
        if request.method != "POST":
            return
        key = idempotency.idempotency_key_of(request)
        if key is None:
            return
        fingerprint = idempotency.request_fingerprint(request, ehr_import.import_max_bytes())
        if fingerprint is not None:
            self._idempotency = idempotency.idempotency_key_claim(request.user.token.pk, key, fingerprint)

    def handle_exception(self, exc):
        if isinstance(exc, idempotency.Replay):
            return exc.response
        try:
            return super().handle_exception(exc)
        except BaseException:
            claim = getattr(self, "_idempotency", None)
            if claim is not None:
                idempotency.idempotency_key_release(claim)
                self._idempotency = None
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        claim = getattr(self, "_idempotency", None)
        if claim is not None:
            idempotency.idempotency_key_answer(claim, response)
            self._idempotency = None
        return super().finalize_response(request, response, *args, **kwargs)

    def dispatch(self, request, *args, **kwargs):
        # The token's label names whoever acts until the view is done, however it ends: an error that escapes
        # the view must not leave it to label the next request this worker serves.
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            token = getattr(self, "_label_token", None)
            if token is not None:
                audit_models.request_actor_label.reset(token)
                self._label_token = None

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.centre_path is None:
            return queryset
        return scope(queryset, self.request.user, self.centre_path)

    def patient_id_of(self, obj) -> int | None:
        if self.patient_attr is None:
            return None
        if isinstance(obj, dict):  # a row of the visit list (``visit_list_page``) names its patient "patient"
            return obj["patient"]
        value = obj
        for part in self.patient_attr.split("."):
            value = getattr(value, part, None)
        return value

    def paginate_queryset(self, queryset):
        return self.page_audited(super().paginate_queryset(queryset))

    def page_audited(self, page):
        """The page, its patients named for the audit trail."""
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
        description=(
            f"A bounded window, so the feed answers quickly at any cohort size: by default from "
            f"{fhir_export.CALENDAR_DAYS_BACK} days ago to {fhir_export.CALENDAR_DAYS_AHEAD} days ahead; move it "
            f"with the parameters (one alone moves the whole window), up to {fhir_export.CALENDAR_MAX_DAYS} days "
            "long."
        ),
        parameters=[
            OpenApiParameter(
                "due_after",
                OpenApiTypes.DATE,
                description=f"Default: {fhir_export.CALENDAR_DAYS_BACK} days ago, or the window's length before "
                "due_before.",
            ),
            OpenApiParameter(
                "due_before",
                OpenApiTypes.DATE,
                description=f"Default: {fhir_export.CALENDAR_DAYS_AHEAD} days ahead, or the window's length after "
                "due_after.",
            ),
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
        start, end = _date_range(
            request,
            default_back_days=fhir_export.CALENDAR_DAYS_BACK,
            default_ahead_days=fhir_export.CALENDAR_DAYS_AHEAD,
            max_days=fhir_export.CALENDAR_MAX_DAYS,
            sliding=True,
        )
        visits = (
            FollowUpVisit.objects.filter(infusion__patient__centre=centre, due_date__range=(start, end))
            .select_related("infusion")
            .order_by("due_date", "pk")
        )
        body = fhir_export.visits_calendar(visits, name=f"{centre.code} follow-up visits", per_patient=False)
        return HttpResponse(body, content_type="text/calendar; charset=utf-8")


def _date_range(request, *, default_back_days: int, default_ahead_days: int, max_days: int, sliding: bool = False):
    """The ``due_after``/``due_before`` range of a request (defaults around today), refused when longer than
    ``max_days``: the range bounds the work of the answer.

    ``sliding``: a request naming one bound moves the default window there (the other bound keeps the default
    length), rather than stretching it from today.
    """
    import datetime as dt

    from django.utils import timezone

    today = timezone.localdate()
    length = dt.timedelta(days=default_back_days + default_ahead_days)
    values: dict[str, dt.date] = {}
    errors = {}
    for name in ("due_after", "due_before"):
        raw = request.query_params.get(name)
        if raw in (None, ""):
            continue
        try:
            values[name] = dt.date.fromisoformat(raw)
        except ValueError:
            errors[name] = ["expected a date YYYY-MM-DD"]
    if errors:
        raise exceptions.ValidationError(errors)
    if sliding and "due_after" in values and "due_before" not in values:
        values["due_before"] = values["due_after"] + length
    elif sliding and "due_before" in values and "due_after" not in values:
        values["due_after"] = values["due_before"] - length
    values.setdefault("due_after", today - dt.timedelta(days=default_back_days))
    values.setdefault("due_before", today + dt.timedelta(days=default_ahead_days))
    if values["due_after"] > values["due_before"]:
        raise exceptions.ValidationError({"due_before": ["must not be before due_after"]})
    if (values["due_before"] - values["due_after"]).days > max_days:
        raise exceptions.ValidationError({"due_before": [f"the range may span at most {max_days} days"]})
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
        summary="Record a death, withdrawal, transfer or loss to follow-up",
        description=(
            "`deceased`, `withdrawn` and `transferred` close follow-up: every open visit is cancelled and every "
            "pending reminder stopped. `lost_to_follow_up` keeps visits and reminders (a recorded visit brings the "
            "patient back). 409 when the patient's follow-up is already closed (or, for lost, not active)."
        ),
        request=serializers.PatientStatusSerializer,
        responses={200: serializers.PatientSerializer},
        filters=False,
    )
    @action(detail=True, methods=["post"], url_path="status", filter_backends=[])
    def status(self, request, pk=None):
        patient = self.get_object()
        serializer = serializers.PatientStatusSerializer(
            data=request.data, context={**self.get_serializer_context(), "patient": patient}
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        patient = _transition(
            lambda: lifecycle.patient_status_record(
                patient, status=data["status"], on=data["date"], reason=data["reason"], by=acting_user(request)
            )
        )
        return Response(serializers.PatientSerializer(patient, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="The patient's schedule as a FHIR CarePlan",
        description="A Bundle (collection) of the CarePlan and a proposed Appointment per open visit.",
        responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT},
        filters=False,
    )
    @action(detail=True, url_path="careplan", content_negotiation_class=JsonErrorsNegotiation, filter_backends=[])
    def careplan(self, request, pk=None):
        # The patient and its visits in one query (``get_object`` would read the patient apart), among the
        # caller's centres as ``get_queryset`` scopes it, and audited as ``get_object`` audits it.
        patient, visits = fhir_export.careplan_read(request.user, pk)
        request._request.audit_patient_id = patient.pk
        return Response(fhir_export.patient_careplan_bundle(patient, visits), content_type="application/fhir+json")

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
    queryset = Infusion.objects.select_related("product", "protocol", "patient").prefetch_related(
        "risk_flags", "condition_decisions"
    )
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
        values = dict(serializer.validated_data)
        flags = [serializers.RiskFlagSerializer.facts(data) for data in values.pop("risk_flags", [])]
        infusion = Infusion(**values)
        with _refusal_as_400():
            infusions.infusion_record(
                infusion, by=acting_user(self.request), reason="recorded through the API", risk_flags=flags
            )
        serializer.instance = infusion
        self.request._request.audit_patient_id = infusion.patient_id

    def perform_update(self, serializer):
        values = {name: value for name, value in serializer.validated_data.items() if name != "patient"}
        with _refusal_as_400():
            infusions.infusion_correct(
                serializer.instance,
                by=acting_user(self.request),
                reason="infusion date or product corrected",
                **values,
            )

    @extend_schema(
        summary="Record a risk flag of the infusion (its schedule is re-planned at once)",
        description=(
            "Creates or changes the flag of that code, then re-plans the infusion: a flag that calls for the "
            "intensified variant adds its visits, one withdrawn (`present: false`) may remove them again; completed "
            "and missed visits are never touched. The change and the re-plan, with the variant's reasons, are in "
            "the audit trail and the visits' history. The same flag sent again changes nothing. With "
            "`?dry_run=1` the answer is the re-plan that would follow, and nothing is saved."
        ),
        parameters=[OpenApiParameter("dry_run", bool, description="Show the re-plan; save nothing.")],
        request=serializers.RiskFlagChangeSerializer,
        responses={200: serializers.RiskFlagOutcomeSerializer},
        filters=False,
    )
    @action(detail=True, methods=["post"], url_path="risk-flags", url_name="risk-flags", filter_backends=[])
    def record_risk_flag(self, request, pk=None):
        infusion = self.get_object()
        serializer = serializers.RiskFlagChangeSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        dry_run = _flag(request, "dry_run")
        outcome = risk_flags.infusion_risk_flags_record(
            infusion,
            [serializers.RiskFlagSerializer.facts(serializer.validated_data)],
            by=acting_user(request),
            reason=serializer.validated_data["reason"] or "risk flag recorded through the API",
            dry_run=dry_run,
        )
        body = {
            "dry_run": dry_run,
            "changed": outcome.changed,
            "plan": None if outcome.diff is None else {**outcome.diff.as_dict(), "summary": outcome.diff.summary()},
        }
        return Response(serializers.RiskFlagOutcomeSerializer(body).data)


@contextmanager
def _refusal_as_400() -> Iterator[None]:
    """An infusion that contradicts the patient's record is a 400 naming the field, like any invalid input."""
    try:
        yield
    except infusions.InfusionRefused as exc:
        raise exceptions.ValidationError({exc.field_name: [exc.message]}) from exc


# --------------------------------------------------------------------------------------------- visits
@contextmanager
def _results_refused_as_fields() -> Iterator[None]:
    """A refused result is a 400 naming each entry's field (``assessment_results.0.unit``)."""
    try:
        yield
    except visit_results.ResultsRefused as refused:
        raise exceptions.ValidationError(
            {f"assessment_results.{where}": messages for where, messages in refused.problems.items()}
        ) from None


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

    def list(self, request, *args, **kwargs):
        """A page read by ``visit_list_page``, the list an EHR polls most: the rows, filters, errors and cursors of
        the generic list, with ``VisitFilter`` validating the request but no queryset built and compiled."""
        nothing = FollowUpVisit.objects.none()
        filterset = self.filterset_class(request.query_params, queryset=nothing, request=request)
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        centre_ids = user_centre_ids(request.user)

        def read(order: tuple[str, ...], after: tuple | None, limit: int) -> list[dict]:
            return visit_list.visit_list_page(centre_ids, filterset.form.cleaned_data, order, after, limit)

        ordering = self.paginator.get_ordering(request, nothing, self)
        page = self.page_audited(self.paginator.paginate_reader(read, FollowUpVisit, request, ordering))
        return self.get_paginated_response(
            visit_list.page_data(page, lambda rows: self.get_serializer(rows, many=True).data)
        )

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
        def record(visit, data, by):
            with _results_refused_as_fields():
                return visit_results.visit_record(
                    visit,
                    completed_on=data["completed_on"],
                    results=[visit_results.ResultEntry(**item) for item in data["assessment_results"]],
                    rest_normal=data["rest_normal"],
                    notes=data.get("results") or {},
                    actor=by,
                    **result_source(request),
                )[0]

        return self._act(request, serializers.VisitCompleteSerializer, record)

    @extend_schema(
        methods=["GET"],
        summary="The visit's recorded results",
        responses={200: serializers.VisitResultSerializer(many=True)},
        filters=False,
    )
    @extend_schema(
        methods=["POST"],
        summary="Record results on the visit (a token's, like an EHR value, never replace a person's)",
        request=serializers.VisitResultsSerializer,
        responses={200: serializers.VisitResultSerializer(many=True)},
        filters=False,
    )
    @action(detail=True, methods=["get", "post"], filter_backends=[], pagination_class=None)
    def results(self, request, pk=None):
        visit = self.get_object()
        if request.method == "POST":
            serializer = serializers.VisitResultsSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            with _results_refused_as_fields():
                visit_results.results_record(
                    visit, serializer.entries(), actor=acting_user(request), **result_source(request)
                )
        rows = visit.assessment_results.all()
        return Response(serializers.VisitResultSerializer(rows, many=True).data)

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
    OpenApiParameter(
        "Prefer",
        str,
        OpenApiParameter.HEADER,
        description="`respond-async`: import as a job whatever the size (202 and a status URL). An upload over "
        "the synchronous limit becomes a job anyway.",
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

    def check_size(self, request) -> tuple[int, int]:
        """The import limit and the upload's declared length (413 beyond the limit)."""
        limit = ehr_import.import_max_bytes()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError as exc:
            raise exceptions.ValidationError({"Content-Length": ["not a number"]}) from exc
        if length > limit:
            raise PayloadTooLarge(f"The payload is {length} bytes; the limit is {limit}.")
        return limit, length

    @staticmethod
    def as_job(request, length: int) -> bool:
        """An upload larger than a request may import in time, or one whose sender asks for it, becomes a job."""
        return length > jobs.import_sync_max_bytes() or jobs.prefers_async(request.headers.get("Prefer", ""))

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
    202: OpenApiResponse(
        import_jobs.ImportJobProgressSerializer,
        description="Accepted as a job (a large upload, or `Prefer: respond-async`): follow `Content-Location`.",
    ),
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
        limit, length = self.check_size(request)
        args = self.import_args(request)
        kind = self.content_type(request)
        if kind not in NDJSON_TYPES + JSON_TYPES:
            raise exceptions.UnsupportedMediaType(
                kind or "none", detail=f"Send {', '.join(JSON_TYPES + NDJSON_TYPES)}."
            )
        if self.as_job(request, length):
            fmt = ImportFormat.NDJSON if kind in NDJSON_TYPES else ImportFormat.BUNDLE
            return import_jobs.job_accepted(request, format=fmt, payload=self.read_all(request, limit), **args)
        try:
            if kind in NDJSON_TYPES:
                lines = ehr_import.ndjson_lines(request._request, limit)
                report = ehr_import.ndjson_import(lines, **args)
            else:
                report = ehr_import.bundle_import(self.read_all(request, limit), **args)
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
        limit, length = self.check_size(request)
        args = self.import_args(request)
        if self.content_type(request) != "text/csv":
            raise exceptions.UnsupportedMediaType(self.content_type(request) or "none", detail="Send text/csv.")
        body = self.read_all(request, limit)
        if self.as_job(request, length):
            return import_jobs.job_accepted(request, format=ImportFormat.CSV, payload=body, **args)
        try:
            report = ehr_import.csv_import(body, **args)
        except FhirImportError as exc:
            return self.outcome(exc)
        request._request.audit_patient_ids = sorted(report.patient_ids)
        return Response(report.as_dict())


class ImportJobView(ApiViewMixin, import_jobs.ImportJobView):
    centre_path = "centre"


# --------------------------------------------------------------------------------------------- bulk export
class VisitsExportView(ApiViewMixin, APIView):
    content_negotiation_class = JsonErrorsNegotiation

    @extend_schema(
        summary="Bulk export of visits due in a date range (NDJSON, one visit per line), in pages",
        description=(
            "Each page holds up to `page_size` visits in (due date, id) order and ends with one marker line "
            '`{"resourceType": "ExportPage", "complete": true|false, "count": n}`. While more follow, the marker '
            "says `complete: false` and carries `next`, the URL of the next page, also sent as `Link: <...>; "
            'rel="next"`. The export is complete only when a page ends with a whole marker line (newline '
            "included) saying `complete: true`; a page cut short does not (and is shorter than its Content-Length)."
        ),
        parameters=[
            OpenApiParameter("due_after", OpenApiTypes.DATE, description="Default: 30 days ago."),
            OpenApiParameter("due_before", OpenApiTypes.DATE, description="Default: a year from today."),
            OpenApiParameter("centre", str, description="Centre code (default: all the caller's centres)."),
            OpenApiParameter("cursor", str, description="Where the page starts: from the previous page's `next`."),
            OpenApiParameter(
                "page_size",
                int,
                description=f"Visits per page, 1 to {visit_pages.MAX_PAGE_SIZE}. "
                f"Default {visit_pages.DEFAULT_PAGE_SIZE}.",
            ),
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    def get(self, request):
        _no_nul(request, "centre", "cursor")
        start, end = _date_range(request, default_back_days=30, default_ahead_days=365, max_days=366 * 50)
        size, after = _export_page_args(request)
        visits = scope(FollowUpVisit.objects.all(), request.user, "infusion__patient__centre").filter(
            due_date__range=(start, end)
        )
        code = request.query_params.get("centre")
        if code:
            visits = visits.filter(infusion__patient__centre__code=code)
        page = visit_pages.visits_page(visits, after=after, size=size)
        request._request.audit_patient_ids = sorted({visit.infusion.patient_id for visit in page.visits})
        next_url = None
        if not page.complete:
            query = request.query_params.copy()
            query["cursor"] = page.next_cursor.encode()
            query.setdefault("due_after", start.isoformat())
            query.setdefault("due_before", end.isoformat())
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        response = HttpResponse(page.ndjson(next_url), content_type="application/x-ndjson")
        if next_url:
            response["Link"] = f'<{next_url}>; rel="next"'
        return response


def _export_page_args(request) -> tuple[int, visit_pages.VisitCursor | None]:
    """The page size and the cursor of an export request (400, naming each, when either is not valid)."""
    errors = {}
    raw_size = request.query_params.get("page_size") or str(visit_pages.DEFAULT_PAGE_SIZE)
    if not (raw_size.isascii() and raw_size.isdigit() and 0 < int(raw_size) <= visit_pages.MAX_PAGE_SIZE):
        errors["page_size"] = [f"a whole number from 1 to {visit_pages.MAX_PAGE_SIZE}"]
    after = None
    if request.query_params.get("cursor"):
        try:
            after = visit_pages.VisitCursor.decode(request.query_params["cursor"])
        except ValueError:
            errors["cursor"] = ["invalid cursor"]
    if errors:
        raise exceptions.ValidationError(errors)
    return int(raw_size), after
