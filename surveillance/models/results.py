"""A visit's results, stored as results: one row per assessment, and per analyte for a blood count.

Written only by ``care.results.results_record``, from the admin's record-visit form, the API and an EHR import
alike. A row says where it came from (a person; the EHR, with the source record's id; or an integration posting
through the API, named as the audit trail names it) because they are not equal: what a person recorded is never
replaced by machine data, whether the EHR's or an integration's.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from surveillance.models.visits import FollowUpVisit


class ResultSource(models.TextChoices):
    PERSON = "person", _("Recorded by a person")
    EHR = "ehr", _("From the EHR")
    INTEGRATION = "integration", _("From an integration (an API token)")


class ResultOutcome(models.TextChoices):
    NORMAL = "normal", _("Done, nothing abnormal")
    ABNORMAL = "abnormal", _("Done, abnormal")
    NOT_DONE = "not_done", _("Not done")


class VisitResult(models.Model):
    """The result of one assessment a visit asks for (``analyte`` empty), or of one analyte of a blood-count
    assessment (``analyte`` a code of ``seeds/analytes.yaml``, with its value, unit and reference range)."""

    visit = models.ForeignKey(FollowUpVisit, on_delete=models.CASCADE, related_name="assessment_results")
    assessment = models.CharField(max_length=64)
    analyte = models.CharField(max_length=32, blank=True)
    loinc = models.CharField(max_length=16, blank=True)
    value = models.FloatField(null=True, blank=True)
    unit = models.CharField(max_length=32, blank=True)
    reference_low = models.FloatField(null=True, blank=True)
    reference_high = models.FloatField(null=True, blank=True)
    # For an analyte: the interpretation (blank when neither the laboratory nor a range says); otherwise required.
    outcome = models.CharField(max_length=10, choices=ResultOutcome.choices, blank=True)
    effective_on = models.DateField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=ResultSource.choices)
    source_id = models.CharField(max_length=255, blank=True, help_text=_("The EHR record it came from."))
    note = models.CharField(max_length=500, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recorded_by_label = models.CharField(
        max_length=128,
        blank=True,
        help_text=_("Who recorded it when no staff user did, in the audit trail's words (an API token: token:<name>)."),
    )
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["visit", "assessment", "analyte"]
        constraints = [
            models.UniqueConstraint(fields=["visit", "assessment", "analyte"], name="result_one_per_analyte"),
            models.CheckConstraint(condition=Q(source__in=ResultSource.values), name="result_source_valid"),
            models.CheckConstraint(
                condition=Q(outcome="") | Q(outcome__in=ResultOutcome.values), name="result_outcome_valid"
            ),
            # an assessment's own row says how it went; an analyte's row carries a measured value in a unit,
            # unless it was not done
            models.CheckConstraint(
                condition=(
                    Q(analyte="", value__isnull=True, unit="", reference_low__isnull=True)
                    & Q(reference_high__isnull=True)
                    & ~Q(outcome="")
                )
                | (~Q(analyte="") & Q(outcome=ResultOutcome.NOT_DONE, value__isnull=True))
                | (~Q(analyte="") & Q(value__isnull=False) & ~Q(unit="") & ~Q(outcome=ResultOutcome.NOT_DONE)),
                name="result_lab_has_value_and_unit",
            ),
            models.CheckConstraint(
                condition=Q(reference_low__isnull=True)
                | Q(reference_high__isnull=True)
                | Q(reference_low__lte=F("reference_high")),
                name="result_range_ordered",
            ),
            models.CheckConstraint(
                condition=~Q(source=ResultSource.EHR) | ~Q(source_id=""), name="result_ehr_names_its_record"
            ),
            models.CheckConstraint(
                condition=~Q(source=ResultSource.INTEGRATION) | ~Q(recorded_by_label=""),
                name="result_integration_named",
            ),
        ]

    def __str__(self) -> str:
        what = f"{self.assessment}/{self.analyte}" if self.analyte else self.assessment
        return f"{what}: {self.value if self.value is not None else self.outcome}"
