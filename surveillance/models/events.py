"""Secondary malignancies after CAR-T and the reporting steps each one opens (clinical reference (e))."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from surveillance.models.patients import Infusion
from surveillance.seeds.labels import choice_label


class MalignancyType(models.TextChoices):
    T_CELL_LYMPHOMA = "t_cell_lymphoma", _("T-cell lymphoma")
    MDS_AML = "mds_aml", _("MDS/AML")
    OTHER_HAEMATOLOGIC = "other_haematologic", _("Other haematologic")
    SOLID = "solid", _("Solid tumour")
    NMSC = "nmsc", _("Non-melanoma skin cancer")


class TransgeneStatus(models.TextChoices):
    NOT_REQUESTED = "not_requested", choice_label("transgene.not_requested")
    KIT_REQUESTED = "kit_requested", choice_label("transgene.kit_requested")
    SAMPLE_SENT = "sample_sent", choice_label("transgene.sample_sent")
    POSITIVE = "positive", choice_label("transgene.positive")
    NEGATIVE = "negative", choice_label("transgene.negative")
    NOT_TESTABLE = "not_testable", choice_label("transgene.not_testable")


class MalignancyEvent(models.Model):
    """A suspected or confirmed new malignancy after an infusion."""

    infusion = models.ForeignKey(Infusion, on_delete=models.PROTECT, related_name="malignancy_events")
    diagnosis_date = models.DateField()
    malignancy_type = models.CharField(max_length=20, choices=MalignancyType.choices)
    confirmed = models.BooleanField(default=True, help_text=_("False while only suspected."))
    description = models.CharField(max_length=255, blank=True)
    transgene_status = models.CharField(
        max_length=16, choices=TransgeneStatus.choices, default=TransgeneStatus.NOT_REQUESTED
    )
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("malignancy event")
        verbose_name_plural = _("malignancy events")
        ordering = ["-diagnosis_date"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(malignancy_type__in=MalignancyType.values), name="malignancy_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(transgene_status__in=TransgeneStatus.values),
                name="malignancy_transgene_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_malignancy_type_display()} on {self.diagnosis_date}"


class ReportingStepKind(models.TextChoices):
    MANUFACTURER = "manufacturer", _("Contact the manufacturer (sample kit, CAR-transgene testing)")
    MEDWATCH = "medwatch", _("FDA MedWatch report")
    REGISTRY = "registry", _("Registry follow-up form (CIBMTR / EBMT)")
    SAMPLE_SHIPMENT = "sample_shipment", _("Ship tumour and blood samples")


class ReportingStep(models.Model):
    """One obligation opened by a malignancy event, with its due date and who closed it, when."""

    event = models.ForeignKey(MalignancyEvent, on_delete=models.CASCADE, related_name="reporting_steps")
    kind = models.CharField(max_length=16, choices=ReportingStepKind.choices)
    due_date = models.DateField()
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reference = models.CharField(max_length=128, blank=True, help_text=_("E.g. the MedWatch report number."))
    notes = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = _("reporting step")
        verbose_name_plural = _("reporting steps")
        ordering = ["event", "due_date", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["event", "kind"], name="reporting_step_one_per_kind"),
            models.CheckConstraint(
                condition=models.Q(completed_at__isnull=True) | models.Q(completed_by__isnull=False),
                name="reporting_step_completion_attributed",
            ),
        ]
        indexes = [
            # the "reports to file" worklist: open steps by due date
            models.Index(fields=["due_date"], condition=models.Q(completed_at__isnull=True), name="step_open_due_idx"),
        ]

    def __str__(self) -> str:
        return self.get_kind_display()
