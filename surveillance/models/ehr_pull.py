"""EHR connections pulled with FHIR Bulk Data ``$export`` (SMART Backend Services), and the runs that pull them.

A connection says where a centre's EHR is and how this service proves who it is: a client id registered with the
EHR and a private key. The key itself is not stored here: ``private_key_ref`` names an environment variable or a
file holding it (a PEM or a JWK), so a database dump or backup never carries a credential that lets its holder
read the whole EHR. The public half is registered with the EHR (usually as a JWKS).

A run is one export, from its kick-off to the last file imported. Its row says how far it got, so that a run
interrupted anywhere (a server error, a dropped connection, a dead worker) resumes where it stopped: the same
status URL is polled again, files already imported are not fetched again, and a file half imported goes on after
its last committed line. Only when every file is imported does the connection's ``since`` move to the export's
``transactionTime``, the ``_since`` of the next pull.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from surveillance.addresses import loopback_host
from surveillance.models.centres import TreatmentCentre
from surveillance.seeds.labels import choice_label

#: What an export asks for, in the order its files are imported: Patients before what refers to them, infusions
#: (Procedure, MedicationAdministration, MedicationRequest) before the results and diagnoses read against them.
BULK_RESOURCE_TYPES = (
    "Patient",
    "Procedure",
    "MedicationAdministration",
    "MedicationRequest",
    "Observation",
    "Condition",
    "DiagnosticReport",
    "Encounter",
    "Appointment",
)
DEFAULT_RESOURCE_TYPES = [name for name in BULK_RESOURCE_TYPES if name != "MedicationRequest"]


def default_resource_types() -> list[str]:
    return list(DEFAULT_RESOURCE_TYPES)


class SigningAlgorithm(models.TextChoices):
    """The client-assertion signatures SMART Backend Services requires servers to accept."""

    RS384 = "RS384", _("RS384 (RSA)")
    ES384 = "ES384", _("ES384 (elliptic curve P-384)")


class EhrConnection(models.Model):
    """One EHR's FHIR server that this service pulls a centre's data from, on the beat schedule."""

    centre = models.ForeignKey(TreatmentCentre, on_delete=models.PROTECT, related_name="ehr_connections")
    name = models.CharField(max_length=100, help_text=_("How staff call this EHR, e.g. 'Epic production'."))
    fhir_base_url = models.URLField(
        _("FHIR base URL"), max_length=500, help_text=_("e.g. https://ehr.example.org/fhir/R4 (https, or loopback).")
    )
    group_id = models.CharField(
        max_length=64,
        blank=True,
        help_text=_(
            "Export this Group's patients ([base]/Group/[id]/$export); empty: every patient ([base]/Patient/$export)."
        ),
    )
    token_url = models.URLField(_("token URL"), max_length=500, help_text=_("The EHR's OAuth 2.0 token endpoint."))
    client_id = models.CharField(max_length=255, help_text=_("The client id the EHR registered for this service."))
    private_key_ref = models.CharField(
        _("private key"),
        max_length=500,
        help_text=_(
            "Where the signing key is, never the key itself: env:VARIABLE_NAME, or the absolute path of a "
            "PEM or JWK file."
        ),
    )
    key_id = models.CharField(
        _("key id (kid)"), max_length=255, help_text=_("The kid of the public key the EHR holds.")
    )
    algorithm = models.CharField(max_length=5, choices=SigningAlgorithm.choices, default=SigningAlgorithm.RS384)
    scopes = models.CharField(max_length=1000, default="system/*.read", help_text=_("Space-separated SMART scopes."))
    resource_types = models.JSONField(
        default=default_resource_types, help_text=_("The resource types asked for (_type).")
    )
    enabled = models.BooleanField(default=True, help_text=_("Pulled on the schedule."))
    since = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "The transactionTime of the last complete pull: the next pull asks for changes since then "
            "(_since). Empty: everything."
        ),
    )
    last_pulled_at = models.DateTimeField(null=True, blank=True, help_text=_("When the last complete pull finished."))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("EHR connection")
        ordering = ["centre__code", "name"]
        constraints = [
            models.UniqueConstraint(fields=["centre", "name"], name="ehr_connection_name_unique_per_centre"),
            models.CheckConstraint(
                condition=models.Q(algorithm__in=SigningAlgorithm.values), name="ehr_connection_algorithm_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.centre.code})"

    @property
    def source_system(self) -> str:
        """The server the pulled resources come from: their ids are unique there (``imports.identity``)."""
        return self.fhir_base_url.rstrip("/")

    def clean(self) -> None:
        """Refuse a connection that could never pull, or would send its bearer token in clear text."""
        problems: dict[str, str] = {}
        for field in ("fhir_base_url", "token_url"):
            url = urlsplit(getattr(self, field) or "")
            if url.scheme != "https" and not (url.scheme == "http" and loopback_host(url.hostname or "")):
                problems[field] = "must be https (plain http only to this machine, e.g. a local proxy)"
        if self.group_id and not FHIR_ID.fullmatch(self.group_id):
            problems["group_id"] = "a FHIR id: 1 to 64 letters, digits, '-' or '.'"
        ref = self.private_key_ref or ""
        if not (ENV_REF.fullmatch(ref) or (ref.startswith("/") and len(ref) > 1)):
            problems["private_key_ref"] = "env:VARIABLE_NAME, or the absolute path of a PEM or JWK file"
        types = self.resource_types
        if not isinstance(types, list) or not types or not set(types) <= set(BULK_RESOURCE_TYPES):
            problems["resource_types"] = f"a list of: {', '.join(BULK_RESOURCE_TYPES)}"
        elif "Patient" not in types:
            problems["resource_types"] = "must include Patient: the other resources are about patients"
        if not (self.scopes or "").split():
            problems["scopes"] = "at least one scope, e.g. system/*.read"
        if problems:
            raise ValidationError(problems)


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
ENV_REF = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]*")


class PullStatus(models.TextChoices):
    RUNNING = "running", choice_label("ehr_pull.running")
    WAITING = "waiting", choice_label("ehr_pull.waiting")
    FAILED = "failed", choice_label("ehr_pull.failed")
    DONE = "done", choice_label("ehr_pull.done")


OPEN_PULL_STATUSES = (PullStatus.RUNNING, PullStatus.WAITING, PullStatus.FAILED)


class EhrPullRun(models.Model):
    """One Bulk Data export of a connection, from kick-off to the last file imported.

    ``files`` lists the manifest's output files in import order, each with ``lines_done`` (the last line of its
    last committed batch) and ``done``; ``report`` is the import report of every batch committed so far. Both are
    updated in the same transaction as the batch they describe, so they never claim more (or less) than the
    database holds. A worker claims a run by compare-and-set (``running`` with a lease); a connection has at most
    one open run, so two beats never pull the same connection at once.
    """

    connection = models.ForeignKey(EhrConnection, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=PullStatus.choices, default=PullStatus.RUNNING)
    since = models.DateTimeField(null=True, blank=True, help_text=_("The _since this export asked for."))
    kickoff_url = models.URLField(_("kick-off URL"), max_length=2000, blank=True)
    status_url = models.URLField(
        _("status URL"),
        max_length=2000,
        blank=True,
        help_text=_("Where the export's progress is polled (Content-Location)."),
    )
    server_progress = models.CharField(max_length=200, blank=True, help_text=_("The EHR's last X-Progress."))
    next_poll_at = models.DateTimeField(null=True, blank=True, help_text=_("Waiting: the EHR's Retry-After."))
    manifest = models.JSONField(null=True, blank=True, help_text=_("The completed export's manifest."))
    transaction_time = models.DateTimeField(null=True, blank=True)
    files = models.JSONField(default=list, blank=True, help_text=_("Output files in import order, with progress."))
    report = models.JSONField(default=dict, blank=True, help_text=_("The import report of what was committed so far."))
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text=_("Why the last attempt failed (no patient data)."))
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("EHR pull run")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=PullStatus.values), name="ehr_pull_run_status_valid"),
            models.CheckConstraint(
                condition=~models.Q(status=PullStatus.RUNNING) | models.Q(lease_expires_at__isnull=False),
                name="ehr_pull_run_running_has_lease",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=PullStatus.DONE)
                | models.Q(finished_at__isnull=False, transaction_time__isnull=False),
                name="ehr_pull_run_done_has_transaction_time",
            ),
            # At most one open run per connection: two beats opening a run at once, the second is refused. Its
            # index also serves the claim's query (a connection's open run) and the health probe's (failing ones).
            models.UniqueConstraint(
                fields=["connection"],
                condition=models.Q(status__in=["running", "waiting", "failed"]),
                name="ehr_pull_run_one_open_per_connection",
            ),
        ]

    def __str__(self) -> str:
        return f"Pull {self.pk} ({self.get_status_display().lower()})"

    @property
    def files_done(self) -> int:
        return sum(1 for item in self.files if item.get("done"))

    @property
    def progress_text(self) -> str:
        """What a person reads in the admin: files imported of the manifest's, else the EHR's own progress."""
        if self.manifest is not None:
            return gettext("%(done)s of %(files)s files imported (%(lines)s lines)") % {
                "done": self.files_done,
                "files": len(self.files),
                "lines": self.report.get("lines", 0),
            }
        if self.status_url:
            return gettext("export running on the EHR: %(progress)s") % {
                "progress": self.server_progress or gettext("no progress given")
            }
        return gettext("not started")
