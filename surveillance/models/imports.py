"""Import jobs: an EHR upload too large to import within one request, stored and imported by a worker.

The upload is kept in the database rather than in a file, because the web and worker roles do not share a disk;
it is emptied once the job has finished (nothing of the patients' data stays longer than the import needs it).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from surveillance.models.centres import TreatmentCentre
from surveillance.seeds.labels import choice_label


class ImportJobStatus(models.TextChoices):
    QUEUED = "queued", choice_label("import_job.queued")
    RUNNING = "running", choice_label("import_job.running")
    DONE = "done", choice_label("import_job.done")
    FAILED = "failed", choice_label("import_job.failed")


FINISHED_STATUSES = (ImportJobStatus.DONE, ImportJobStatus.FAILED)


class ImportFormat(models.TextChoices):
    BUNDLE = "bundle", _("FHIR Bundle")
    NDJSON = "ndjson", _("FHIR Bulk Data NDJSON")
    CSV = "csv", _("Clinic CSV")


class ImportJob(models.Model):
    """One upload to import in the background, claimed by compare-and-set with a lease (as the reminder outbox).

    NDJSON is imported in batches, each committed together with ``lines_done`` (the last line it covered) and
    ``progress`` (the report of every batch committed so far), so a job whose worker died resumes after the last
    committed line and its report counts each line once. A Bundle or a CSV is atomic: the import and the job's
    completion commit together, so an interrupted one left nothing and simply runs again.
    """

    centre = models.ForeignKey(TreatmentCentre, on_delete=models.PROTECT, related_name="import_jobs")
    format = models.CharField(max_length=10, choices=ImportFormat.choices)
    source_system = models.CharField(max_length=255)
    dry_run = models.BooleanField(default=False)
    requested_by = models.CharField(max_length=150, help_text=_("The token's or user's audit label."))
    payload = models.BinaryField(help_text=_("The upload as sent; emptied when the job has finished."))
    payload_bytes = models.PositiveBigIntegerField()
    lines_total = models.PositiveIntegerField(null=True, blank=True, help_text=_("NDJSON: lines in the upload."))
    status = models.CharField(max_length=10, choices=ImportJobStatus.choices, default=ImportJobStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lines_done = models.PositiveIntegerField(
        default=0, help_text=_("NDJSON: the last line of the last batch committed.")
    )
    progress = models.JSONField(default=dict, blank=True, help_text=_("The report of the batches committed so far."))
    result = models.JSONField(null=True, blank=True, help_text=_("The report (done) or OperationOutcome (failed)."))
    result_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text=_("What the status URL answers."))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=ImportJobStatus.values), name="import_job_status_valid"
            ),
            models.CheckConstraint(condition=models.Q(format__in=ImportFormat.values), name="import_job_format_valid"),
            models.CheckConstraint(
                condition=~models.Q(status=ImportJobStatus.RUNNING) | models.Q(lease_expires_at__isnull=False),
                name="import_job_running_has_lease",
            ),
            models.CheckConstraint(
                condition=~models.Q(status__in=FINISHED_STATUSES)
                | models.Q(result__isnull=False, result_status__isnull=False, finished_at__isnull=False),
                name="import_job_finished_has_result",
            ),
        ]
        indexes = [
            # the import worker's claim query: queued jobs, oldest first
            models.Index(fields=["created_at"], condition=models.Q(status="queued"), name="import_job_claim_idx"),
            # lease recovery: jobs still running after their worker died
            models.Index(
                fields=["lease_expires_at"], condition=models.Q(status="running"), name="import_job_lease_recovery_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"Import job {self.pk} ({self.format}) {self.status}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class ImportJobPatient(models.Model):
    """A patient an import job created or updated: who fetching the job's report has data on, for the audit trail.

    A row per patient, added with each batch, rather than a list in ``ImportJob.progress``: that list was read,
    sorted and written back whole with every batch, so a registry's import did work that grew with the square of
    its size (a million patients: a list of a million ids rewritten four thousand times).
    """

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="patients")
    patient = models.ForeignKey("surveillance.Patient", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "patient"], name="import_job_patient_once")]

    def __str__(self) -> str:
        return f"Import job {self.job_id}: patient {self.patient_id}"
