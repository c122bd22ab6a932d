"""The status URL of an import job (FHIR's asynchronous request pattern): ``202`` with ``X-Progress`` while it
runs, then what the synchronous import would have answered: ``200`` and the report, or ``400`` and the
OperationOutcome that refused the upload. Scoped to the caller's centres like every object: another centre's
job is a 404."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from surveillance.api import serializers as api_serializers
from surveillance.api.auth import TokenPrincipal
from surveillance.imports import jobs, tasks
from surveillance.models import ImportJob, ImportJobStatus

#: Seconds a client is asked to wait before it asks again.
RETRY_AFTER_SECONDS = 5


class ImportJobProgressSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=[ImportJobStatus.QUEUED, ImportJobStatus.RUNNING])
    format = serializers.CharField()
    dry_run = serializers.BooleanField()
    lines_done = serializers.IntegerField(help_text="NDJSON: lines imported and committed so far.")
    lines_total = serializers.IntegerField(allow_null=True, help_text="NDJSON: lines in the upload.")
    entries_done = serializers.DictField(
        child=serializers.IntegerField(), help_text="NDJSON: patients and infusions of the lines committed so far."
    )
    attempts = serializers.IntegerField()
    created_at = serializers.DateTimeField()

    @staticmethod
    def of(job: ImportJob) -> dict:
        state = job.progress or {}
        return {
            "id": job.pk,
            "status": job.status,
            "format": job.format,
            "dry_run": job.dry_run,
            "lines_done": job.lines_done,
            "lines_total": job.lines_total,
            "entries_done": {
                "patients": sum(state.get(f"patients_{k}", 0) for k in ("created", "updated", "unchanged")),
                "infusions": sum(state.get(f"infusions_{k}", 0) for k in ("created", "replanned", "unchanged")),
            },
            "attempts": job.attempts,
            "created_at": job.created_at,
        }


def progress_header(job: ImportJob) -> str:
    """``X-Progress``: a short human-readable state, as FHIR's asynchronous pattern suggests."""
    if job.status == ImportJobStatus.QUEUED and not job.lines_done:
        return "queued"
    if job.lines_total is not None:
        return f"{job.lines_done} of {job.lines_total} lines"
    return job.status


def requester_label(request) -> str:
    user = request.user
    return user.audit_label if isinstance(user, TokenPrincipal) else f"user:{user.get_username()}"


def job_accepted(request, *, centre, format: str, payload: bytes, source_system: str, dry_run: bool) -> Response:
    """Store an upload as a job, ask a worker to run it, and answer 202 with the status URL."""
    job = tasks.import_job_submit(
        centre,
        format=format,
        payload=payload,
        source_system=source_system,
        dry_run=dry_run,
        requested_by=requester_label(request),
    )
    return progress_response(request, job)


def progress_response(request, job: ImportJob) -> Response:
    url = request.build_absolute_uri(reverse("api:import-job", args=[job.pk]))
    response = Response(ImportJobProgressSerializer.of(job), status=202)
    response["Content-Location"] = response["Location"] = url
    response["X-Progress"] = progress_header(job)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class ImportJobView(GenericAPIView):
    """Mixed in with the API's tenancy (``ApiViewMixin``, which scopes the queryset by centre) in ``views``."""

    queryset = ImportJob.objects.defer("payload")
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        summary="The status of an import job",
        description=(
            "While the job is queued or running: 202, an `X-Progress` header and the lines done so far. When it "
            "has finished: what the synchronous import answers, 200 and the report, or 400 and the "
            "OperationOutcome that refused the upload (nothing of a refused Bundle or CSV was saved). A job a "
            "worker could not finish after several attempts answers 500 with an OperationOutcome that says what "
            "was imported."
        ),
        responses={
            200: api_serializers.ImportReportSerializer,
            202: ImportJobProgressSerializer,
            (400, "application/fhir+json"): OpenApiResponse(
                api_serializers.OperationOutcomeSerializer, description="The upload was refused."
            ),
            (500, "application/fhir+json"): OpenApiResponse(
                api_serializers.OperationOutcomeSerializer, description="The import could not be finished."
            ),
        },
    )
    def get(self, request, pk=None):
        job = self.get_object()
        if not job.finished:
            return progress_response(request, job)
        if job.result_status == 200:
            request._request.audit_patient_ids = jobs.job_patient_ids(job)
            return Response(job.result)
        return Response(job.result, status=job.result_status, content_type="application/fhir+json")
