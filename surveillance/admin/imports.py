"""Upload page: coordinators choose a CSV or FHIR file, see what the import would do (a dry run of the import's own
entry points), then apply it. Large files run as import jobs (``imports.jobs``) with a status page.

Between the preview and the apply the file is held, never typed in again: a small one in the user's session (at
most ``CARTWATCH_IMPORT_SYNC_MAX_BYTES``), dropped once applied. A large one's dry-run job empties its upload when
it finishes, as every job does; applying it asks for the same file again, checked by its SHA-256 against the one
previewed, and starts the real job.
"""

from __future__ import annotations

import base64
import hashlib

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from surveillance.access.audit import audit_record
from surveillance.access.tenancy import scope
from surveillance.imports import ehr_import, jobs, tasks
from surveillance.imports.fhir.records import FhirImportError
from surveillance.imports.uploads import UploadRefused, upload_format, upload_import
from surveillance.models import ImportJob, ImportJobStatus, TreatmentCentre

HELD = "cartwatch_upload"  # session key: the small file previewed, waiting to be applied
HELD_JOBS = "cartwatch_upload_jobs"  # session key: dry-run job id -> SHA-256 of the file it previewed
PERMISSION = "surveillance.change_patient"  # coordinators and physicians; auditors only read


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class UploadForm(forms.Form):
    centre = forms.ModelChoiceField(queryset=TreatmentCentre.objects.none(), label=_("Centre"))
    file = forms.FileField(
        label=_("File"),
        help_text=_("A clinic CSV export (.csv), a FHIR Bundle (.json) or a Bulk Data export (.ndjson)."),
    )
    source_system = forms.CharField(
        label=_("Sending system"),
        max_length=255,
        initial=ehr_import.DEFAULT_SOURCE_SYSTEM,
        help_text=_("The EHR the file comes from: its ids are known by this name."),
    )

    def __init__(self, *args, centres, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["centre"].queryset = centres
        only = list(centres[:2])
        if len(only) == 1:
            self.fields["centre"].initial = only[0]
        self.payload = b""
        self.format = ""

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is None:
            return data
        limit = ehr_import.import_max_bytes()
        if upload.size > limit:
            self.add_error("file", _("The file is larger than %(limit)d bytes.") % {"limit": limit})
            return data
        payload = upload.read()
        try:
            self.format = upload_format(upload.name, payload)
        except UploadRefused as exc:
            self.add_error("file", exc.args[0])
            return data
        self.payload = payload
        return data


def _refusals(exc: FhirImportError) -> list[str]:
    return [issue["diagnostics"] for issue in exc.to_operation_outcome()["issue"]]


def _centres(request):
    return scope(TreatmentCentre.objects.all(), request.user, "").order_by("name")


def upload_view(site, request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    if request.method == "POST" and request.POST.get("action") == "apply":
        return _apply_held(site, request)
    form = UploadForm(request.POST or None, request.FILES or None, centres=_centres(request))
    context = {**site.each_context(request), "title": _("Import a file"), "form": form}
    if request.method == "POST" and form.is_valid():
        centre, source = form.cleaned_data["centre"], form.cleaned_data["source_system"].strip()
        if len(form.payload) > jobs.import_sync_max_bytes():
            job = _job_start(request, centre, form.format, form.payload, source, dry_run=True)
            request.session[HELD_JOBS] = {**request.session.get(HELD_JOBS, {}), str(job.pk): _digest(form.payload)}
            return HttpResponseRedirect(reverse("admin:import_job", args=[job.pk]))
        try:
            report = upload_import(form.payload, form.format, centre, source_system=source, dry_run=True)
        except FhirImportError as exc:
            context["refusals"] = _refusals(exc)
        else:
            token = _digest(form.payload)
            request.session[HELD] = {
                "token": token,
                "centre": centre.pk,
                "format": form.format,
                "source_system": source,
                "payload": base64.b64encode(form.payload).decode("ascii"),
            }
            context.update(report=report.as_dict(), token=token)
    status = 400 if form.errors else 200
    return TemplateResponse(request, "surveillance/admin/import_upload.html", context, status=status)


def _apply_held(site, request):
    """Import for real the small file previewed in this session (the token says it is the one the user saw)."""
    held = request.session.get(HELD)
    if not held or request.POST.get("token") != held["token"]:
        messages.error(request, gettext("The previewed file is no longer held: choose it again."))
        return HttpResponseRedirect(reverse("admin:import_upload"))
    centre = get_object_or_404(scope(TreatmentCentre.objects.all(), request.user, ""), pk=held["centre"])
    payload = base64.b64decode(held["payload"])
    context = {**site.each_context(request), "title": _("Import a file"), "form": None, "applied": True}
    try:
        report = upload_import(payload, held["format"], centre, source_system=held["source_system"], dry_run=False)
    except FhirImportError as exc:
        context["refusals"] = _refusals(exc)
    else:
        context["report"] = report.as_dict()
        audit_record(
            request,
            "import",
            object_type="upload",
            object_id=held["token"][:16],
            changes={"format": held["format"], "centre": centre.pk, "patient_ids": sorted(report.patient_ids)},
        )
    del request.session[HELD]
    return TemplateResponse(request, "surveillance/admin/import_upload.html", context)


def _job_start(request, centre, format: str, payload: bytes, source_system: str, *, dry_run: bool) -> ImportJob:
    requested_by = f"user:{request.user.get_username()}"
    args = {"format": format, "payload": payload, "source_system": source_system, "dry_run": dry_run}
    return tasks.import_job_submit(centre, requested_by=requested_by, **args)


class SameFileForm(forms.Form):
    file = forms.FileField(label=_("The same file again"))


def import_job_view(site, request, job_id: int):
    """A job's status while it runs (the page refreshes itself), then its report or its refusals; a finished dry
    run offers to apply the same file."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    job = get_object_or_404(scope(ImportJob.objects.select_related("centre"), request.user, "centre"), pk=job_id)
    expected = request.session.get(HELD_JOBS, {}).get(str(job.pk))
    can_apply = job.dry_run and job.status == ImportJobStatus.DONE and expected is not None
    form = SameFileForm(request.POST or None, request.FILES or None) if can_apply else None
    if form is not None and request.method == "POST" and form.is_valid():
        payload = form.cleaned_data["file"].read()
        if _digest(payload) != expected:
            form.add_error("file", _("This is not the file that was previewed: choose that one, or preview this one."))
        else:
            real = _job_start(request, job.centre, job.format, payload, job.source_system, dry_run=False)
            held = request.session.get(HELD_JOBS, {})
            held.pop(str(job.pk), None)
            request.session[HELD_JOBS] = held
            return HttpResponseRedirect(reverse("admin:import_job", args=[real.pk]))
    result = job.result or {}
    context = {
        **site.each_context(request),
        "title": _("Import job %(id)d") % {"id": job.pk},
        "job": job,
        "running": job.status in (ImportJobStatus.QUEUED, ImportJobStatus.RUNNING),
        "report": result if job.status == ImportJobStatus.DONE else None,
        "refusals": [i.get("diagnostics", "") for i in result.get("issue", [])],
        "form": form,
    }
    return TemplateResponse(
        request, "surveillance/admin/import_job.html", context, status=400 if form is not None and form.errors else 200
    )
