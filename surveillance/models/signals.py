"""Second-cancer signals raised from EHR data, and the physician review each kind of signal opens.

A signal is one piece of evidence (a result, a diagnosis, an NGS panel) that a rule of the stored signal rules
picked out; a review gathers the signals of one kind for one patient until a physician decides (clinical
reference (g)). The patient is never emailed about a signal: nothing here has a reminder.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from surveillance.models.events import MalignancyEvent, MalignancyType
from surveillance.models.patients import Infusion, Patient
from surveillance.seeds.labels import choice_label


class SignalRuleSet(models.Model):
    """A loaded version of the signal rules file; immutable once loaded (a change is a new version)."""

    code = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=255)
    source = models.TextField(blank=True)
    content = models.JSONField(help_text=_("The rules file as loaded; parsed by surveillance.signals.rules."))
    content_hash = models.CharField(max_length=64)
    loaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code", "-version"]
        constraints = [models.UniqueConstraint(fields=["code", "version"], name="signal_ruleset_code_version")]

    def __str__(self) -> str:
        return f"{self.code} v{self.version}"


class SignalReviewStatus(models.TextChoices):
    OPEN = "open", choice_label("signal_review.open")
    WORKUP = "workup_ordered", choice_label("signal_review.workup_ordered")
    CONFIRMED = "confirmed", choice_label("signal_review.confirmed")
    DISMISSED = "dismissed", choice_label("signal_review.dismissed")


#: A review in one of these takes the later signals of its kind: the physician has not closed it.
UNRESOLVED_STATUSES = (SignalReviewStatus.OPEN, SignalReviewStatus.WORKUP)


class WorkupItem(models.TextChoices):
    """The work-up clinical reference (b) item 4 names for a signal."""

    BONE_MARROW = "bone_marrow", _("Bone marrow with cytogenetics and NGS")
    T_CELL_CLONALITY = "t_cell_clonality", _("Peripheral-blood T-cell flow cytometry and TCR clonality")
    BIOPSY = "biopsy", _("Biopsy (lymph node or skin infiltrate)")


class SignalReviewQuerySet(models.QuerySet):
    def unresolved(self) -> SignalReviewQuerySet:
        return self.filter(status__in=UNRESOLVED_STATUSES)

    def escalation_due(self, opened_before: dt.datetime) -> SignalReviewQuerySet:
        """Reviews nobody has acted on since before ``opened_before`` and not yet escalated."""
        return self.filter(status=SignalReviewStatus.OPEN, escalated_at__isnull=True, opened_at__lt=opened_before)


class SignalReview(models.Model):
    """A physician's review of one kind of signal for one patient: confirm, order the work-up, or dismiss."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="signal_reviews")
    infusion = models.ForeignKey(Infusion, on_delete=models.CASCADE, related_name="signal_reviews")
    kind = models.CharField(max_length=40)
    label = models.CharField(max_length=120)
    priority = models.PositiveSmallIntegerField(help_text=_("1 = most urgent (the rules file's 'highest')."))
    suggested_type = models.CharField(max_length=20, choices=MalignancyType.choices, blank=True)
    status = models.CharField(max_length=16, choices=SignalReviewStatus.choices, default=SignalReviewStatus.OPEN)
    opened_at = models.DateTimeField()
    first_observed_on = models.DateField()
    last_observed_on = models.DateField()
    escalated_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.CharField(max_length=500, blank=True)
    workup = models.JSONField(default=list, blank=True, help_text=_("WorkupItem codes ordered."))
    malignancy_event = models.ForeignKey(
        MalignancyEvent, null=True, blank=True, on_delete=models.PROTECT, related_name="signal_reviews"
    )

    objects = SignalReviewQuerySet.as_manager()

    class Meta:
        verbose_name = _("signal review")
        verbose_name_plural = _("signal reviews")
        ordering = ["priority", "opened_at"]
        constraints = [
            # One unresolved review per patient and kind: a later signal of the kind joins it.
            models.UniqueConstraint(
                fields=["patient", "kind"],
                condition=models.Q(status__in=UNRESOLVED_STATUSES),
                name="signal_review_one_unresolved_per_kind",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=SignalReviewStatus.values), name="signal_review_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status=SignalReviewStatus.OPEN) | models.Q(decided_at__isnull=False),
                name="signal_review_decision_dated",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=SignalReviewStatus.DISMISSED) | ~models.Q(reason=""),
                name="signal_review_dismissal_reasoned",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=SignalReviewStatus.CONFIRMED) | models.Q(malignancy_event__isnull=False),
                name="signal_review_confirmation_has_event",
            ),
        ]
        indexes = [
            # the physician's worklist: unresolved reviews, most urgent first
            models.Index(
                fields=["priority", "opened_at"],
                condition=models.Q(status__in=UNRESOLVED_STATUSES),
                name="signal_review_worklist_idx",
            ),
            # signal_reviews_escalate: open reviews not yet escalated, by age
            models.Index(
                fields=["opened_at"],
                condition=models.Q(status=SignalReviewStatus.OPEN, escalated_at__isnull=True),
                name="signal_review_escalate_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.get_status_display()})"


class Signal(models.Model):
    """One piece of evidence a rule picked out; the same evidence is recorded once per patient and kind."""

    review = models.ForeignKey(SignalReview, on_delete=models.CASCADE, related_name="signals")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="signals")
    kind = models.CharField(max_length=40)
    evidence_key = models.CharField(max_length=255, help_text=_("The source record (e.g. Observation/123)."))
    code = models.CharField(max_length=64, help_text=_("LOINC, ICD-10 or SNOMED code, or the gene."))
    observed_on = models.DateField()
    day = models.IntegerField(help_text=_("Days after the infusion."))
    grade = models.PositiveSmallIntegerField(null=True, blank=True, help_text=_("CTCAE v5.0 grade, for counts."))
    summary = models.CharField(max_length=255)
    source = models.CharField(max_length=64, help_text=_("Where the records came from (e.g. fhir)."))
    ruleset = models.ForeignKey(SignalRuleSet, on_delete=models.PROTECT, related_name="signals")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["observed_on", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["patient", "kind", "evidence_key"], name="signal_one_per_evidence"),
        ]

    def __str__(self) -> str:
        return self.summary
