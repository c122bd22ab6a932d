"""Patients, their CAR-T infusions and the risk factors that pick the surveillance variant."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from surveillance.models.centres import TreatmentCentre, validate_time_zone
from surveillance.models.products import CarTProduct
from surveillance.scheduling.engine import EARLIEST_INFUSION
from surveillance.seeds.labels import choice_label


class PatientStatus(models.TextChoices):
    ACTIVE = "active", choice_label("patient.active")
    LOST = "lost_to_follow_up", choice_label("patient.lost_to_follow_up")
    DECEASED = "deceased", choice_label("patient.deceased")
    WITHDRAWN = "withdrawn", choice_label("patient.withdrawn")
    TRANSFERRED = "transferred", choice_label("patient.transferred")


#: Statuses that take a patient off every worklist and stop every reminder.
CLOSED_STATUSES = (PatientStatus.DECEASED, PatientStatus.WITHDRAWN, PatientStatus.TRANSFERRED)


class LadderStage(models.TextChoices):
    """How far an active patient has slipped: consecutive missed visits move them up the ladder."""

    ON_TRACK = "on_track", choice_label("ladder.on_track")
    OVERDUE = "overdue", choice_label("ladder.overdue")
    TRACING = "tracing", choice_label("ladder.tracing")
    LOST = "lost", choice_label("ladder.lost")


class Sex(models.TextChoices):
    FEMALE = "female", _("Female")
    MALE = "male", _("Male")
    OTHER = "other", _("Other")
    UNKNOWN = "unknown", _("Unknown")


class PatientQuerySet(models.QuerySet):
    def under_follow_up(self) -> PatientQuerySet:
        """Patients who should still be on worklists (not deceased, withdrawn or transferred)."""
        return self.exclude(status__in=CLOSED_STATUSES)


class Patient(models.Model):
    """A person followed after CAR-T. Their MRN is unique within their centre."""

    centre = models.ForeignKey(TreatmentCentre, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField(_("MRN"), max_length=64)
    identifier_system = models.CharField(
        max_length=255, blank=True, help_text=_("The system (namespace) of the MRN, when the EHR sent one.")
    )
    given_name = models.CharField(max_length=100, blank=True)
    family_name = models.CharField(max_length=100, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=8, choices=Sex.choices, default=Sex.UNKNOWN)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True, help_text=_("E.164, e.g. +12025550123."))
    preferred_language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")
    time_zone = models.CharField(
        max_length=64, blank=True, validators=[validate_time_zone], help_text=_("Blank: the centre's time zone.")
    )
    contact_consent = models.BooleanField(default=True, help_text=_("Consents to reminders by email."))
    sms_consent = models.BooleanField(
        default=False, help_text=_("Consents to reminders by SMS (cleared when the patient texts STOP).")
    )
    preferred_channel = models.CharField(
        max_length=8,
        choices=[("email", _("Email")), ("sms", _("SMS"))],
        default="email",
        help_text=_("Tried first; the other consented channel, then a letter or call, if it cannot be used."),
    )
    reminders_opted_out_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Unsubscribed from routine reminders (care-team escalations continue)."),
    )
    status = models.CharField(max_length=20, choices=PatientStatus.choices, default=PatientStatus.ACTIVE)
    status_date = models.DateField(null=True, blank=True)
    status_reason = models.CharField(max_length=255, blank=True)
    ladder_stage = models.CharField(max_length=10, choices=LadderStage.choices, default=LadderStage.ON_TRACK)
    source_system = models.CharField(max_length=255, blank=True, help_text=_("EHR the record was imported from."))
    source_id = models.CharField(max_length=128, blank=True, help_text=_("The record's id in that EHR."))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PatientQuerySet.as_manager()

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        ordering = ["family_name", "given_name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["centre", "mrn"], name="patient_mrn_unique_per_centre"),
            models.UniqueConstraint(
                fields=["centre", "source_system", "source_id"],
                condition=~models.Q(source_id=""),
                name="patient_source_identity_unique",
            ),
            models.CheckConstraint(condition=models.Q(status__in=PatientStatus.values), name="patient_status_valid"),
            models.CheckConstraint(
                condition=models.Q(preferred_channel__in=("email", "sms")), name="patient_preferred_channel_valid"
            ),
            models.CheckConstraint(condition=~models.Q(mrn=""), name="patient_mrn_not_blank"),
            models.CheckConstraint(
                condition=models.Q(status=PatientStatus.ACTIVE) | models.Q(status_date__isnull=False),
                name="patient_status_change_dated",
            ),
        ]
        indexes = [
            # the ladder worklist: active patients who are slipping
            models.Index(fields=["centre", "ladder_stage"], name="patient_ladder_worklist_idx"),
            models.Index(fields=["family_name", "given_name"], name="patient_name_search_idx"),
        ]

    def __str__(self) -> str:
        # Names are PHI: string forms show up in logs and admin messages, so use the MRN and the primary key.
        return gettext("Patient %(pk)s (MRN %(mrn)s)") % {"pk": self.pk, "mrn": self.mrn}

    @property
    def display_name(self) -> str:
        return f"{self.family_name}, {self.given_name}".strip(", ")

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone) if self.time_zone else self.centre.tz

    @property
    def under_follow_up(self) -> bool:
        return self.status not in CLOSED_STATUSES

    def accepts_routine_reminders(self) -> bool:
        """Routine patient reminders need consent, an address, an open follow-up and no opt-out."""
        return (
            self.under_follow_up and self.contact_consent and bool(self.email) and self.reminders_opted_out_at is None
        )

    def age_on(self, day: dt.date) -> int | None:
        if self.birth_date is None:
            return None
        before_birthday = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - before_birthday


class Infusion(models.Model):
    """One CAR-T infusion. It anchors a schedule; a re-infusion is a new Infusion with a schedule of its own."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="infusions")
    product = models.ForeignKey(
        CarTProduct,
        on_delete=models.PROTECT,
        related_name="infusions",
        null=True,
        blank=True,
        help_text=_("Blank: to confirm (the EHR recorded the administration without naming the product)."),
    )
    infusion_date = models.DateField()
    indication = models.CharField(max_length=255, blank=True)
    lot_number = models.CharField(max_length=64, blank=True)
    prior_lines = models.PositiveSmallIntegerField(null=True, blank=True, help_text=_("Prior lines of therapy."))
    protocol = models.ForeignKey(
        "surveillance.Protocol", on_delete=models.PROTECT, related_name="infusions", null=True, blank=True
    )
    superseded_by = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="supersedes",
        help_text=_("A later infusion (re-infusion) that restarted the schedule."),
    )
    source_system = models.CharField(max_length=255, blank=True)
    source_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("infusion")
        verbose_name_plural = _("infusions")
        ordering = ["patient", "infusion_date", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "source_system", "source_id"],
                condition=~models.Q(source_id=""),
                name="infusion_source_identity_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(infusion_date__gte=EARLIEST_INFUSION), name="infusion_date_plausible"
            ),
        ]
        indexes = [
            # the worklist of infusions whose product a physician must name (imported from a bare CAR-T procedure)
            models.Index(fields=["patient"], condition=models.Q(product__isnull=True), name="infusion_to_confirm_idx"),
        ]

    def __str__(self) -> str:
        return gettext("Infusion %(pk)s (%(product)s, %(day)s)") % {
            "pk": self.pk,
            "product": self.product_id,
            "day": self.infusion_date,
        }

    @property
    def age_at_infusion(self) -> int | None:
        return self.patient.age_on(self.infusion_date)


class RiskFlagCode(models.TextChoices):
    CLONAL_HAEMATOPOIESIS = "clonal_haematopoiesis", _("Clonal haematopoiesis (CH/CHIP)")
    PRIOR_AUTO_HCT = "prior_auto_hct", _("Prior autologous transplant")
    ALKYLATOR_EXPOSURE = "alkylator_exposure", _("Heavy alkylator exposure")
    RADIATION_EXPOSURE = "radiation_exposure", _("Prior TBI / radiation")
    PROLONGED_CYTOPENIA = "prolonged_cytopenia", _("Late / prolonged cytopenia or CCUS")
    EBV_POSITIVE = "ebv_positive", _("EBV-positive lymphoma or EBV reactivation")


class FlagSource(models.TextChoices):
    NGS_REPORT = "ngs_report", _("NGS report")
    TREATMENT_HISTORY = "treatment_history", _("Treatment history")
    LAB_RESULT = "lab_result", _("Lab result")
    PATHOLOGY = "pathology", _("Pathology")
    CLINICIAN = "clinician", _("Clinician assessment")
    EHR_IMPORT = "ehr_import", _("EHR import")


class RiskFlag(models.Model):
    """A risk factor for second cancers, with where it came from and when, so a re-plan can be justified."""

    infusion = models.ForeignKey(Infusion, on_delete=models.CASCADE, related_name="risk_flags")
    code = models.CharField(max_length=32, choices=RiskFlagCode.choices)
    present = models.BooleanField(default=True)
    detail = models.CharField(max_length=255, blank=True, help_text=_("E.g. CH genes and VAF: DNMT3A 4%, TET2 2%."))
    findings = models.JSONField(
        default=list,
        blank=True,
        help_text=_(
            'Structured NGS findings, e.g. [{"gene": "DNMT3A", "vaf_percent": 4.0}], for a later review of '
            "the clone's growth."
        ),
    )
    source = models.CharField(max_length=20, choices=FlagSource.choices)
    source_reference = models.CharField(max_length=255, blank=True)
    observed_on = models.DateField()
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("risk flag")
        verbose_name_plural = _("risk flags")
        ordering = ["infusion", "code"]
        constraints = [
            models.UniqueConstraint(fields=["infusion", "code"], name="risk_flag_one_per_code"),
            models.CheckConstraint(condition=models.Q(code__in=RiskFlagCode.values), name="risk_flag_code_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_code_display()} ({'present' if self.present else 'absent'})"


class ContactMethod(models.TextChoices):
    PHONE = "phone", _("Phone")
    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")
    LETTER = "letter", _("Letter")
    REFERRING_PHYSICIAN = "referring", _("Referring physician")
    OTHER = "other", _("Other")


class ContactAttempt(models.Model):
    """A coordinator's attempt to reach a patient who is slipping out of follow-up."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="contact_attempts")
    attempted_at = models.DateTimeField()
    method = models.CharField(max_length=16, choices=ContactMethod.choices)
    reached = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        verbose_name = _("contact attempt")
        verbose_name_plural = _("contact attempts")
        ordering = ["-attempted_at"]

    def __str__(self) -> str:
        return f"{self.get_method_display()} on {self.attempted_at:%Y-%m-%d}"
