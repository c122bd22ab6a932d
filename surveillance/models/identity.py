"""The identity review worklist: imported Patients that could not be matched safely, waiting for a coordinator."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from surveillance.models.centres import TreatmentCentre
from surveillance.models.patients import Patient
from surveillance.seeds.labels import choice_label


class IdentityReviewStatus(models.TextChoices):
    OPEN = "open", choice_label("identity_review.open")
    LINKED = "linked", choice_label("identity_review.linked")
    CREATED = "created", choice_label("identity_review.created")
    REJECTED = "rejected", choice_label("identity_review.rejected")


class IdentityReview(models.Model):
    """An imported Patient refused because its identity is in doubt: its identifier (or, without one, its id
    taken as MRN) matches a stored patient whose birth date or family name differ.

    Merging on such a match would hand one person's infusions and schedule to another, so the import refuses the
    entry and a coordinator decides. ``record`` keeps what was sent (it is shown to the coordinator and used to
    create the new patient); ``reason`` names the fields that differ, never their values. A LINKED review is also
    an alias: later imports of the same source identity reach ``resolved_patient`` without changing its details.
    """

    centre = models.ForeignKey(TreatmentCentre, on_delete=models.PROTECT, related_name="identity_reviews")
    patient = models.ForeignKey(
        Patient,
        on_delete=models.CASCADE,
        related_name="identity_reviews",
        help_text=_("The stored patient the import would have merged it into."),
    )
    source_system = models.CharField(max_length=255)
    source_id = models.CharField(max_length=128)
    record = models.JSONField(help_text=_("The Patient as imported (names, birth date, identifier, contact)."))
    reason = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=IdentityReviewStatus.choices, default=IdentityReviewStatus.OPEN)
    resolved_patient = models.ForeignKey(
        Patient,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Who it turned out to be."),
    )
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("identity review")
        verbose_name_plural = _("identity reviews")
        ordering = ["created_at", "pk"]
        constraints = [
            # One open review per record: a re-sent export refreshes it.
            models.UniqueConstraint(
                fields=["centre", "source_system", "source_id"],
                condition=models.Q(status="open"),
                name="identity_review_open_unique",
            ),
            # One decision that makes the record an alias of a patient (linked to a stored one, or created): the
            # import's alias look-up, whose condition it states, reads this index.
            models.UniqueConstraint(
                fields=["centre", "source_system", "source_id"],
                condition=models.Q(status__in=["linked", "created"]),
                name="identity_review_alias_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=IdentityReviewStatus.values), name="identity_review_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status="open", resolved_at__isnull=True)
                | (~models.Q(status="open") & models.Q(resolved_at__isnull=False)),
                name="identity_review_resolution_dated",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["open", "rejected"], resolved_patient__isnull=True)
                | models.Q(status__in=["linked", "created"], resolved_patient__isnull=False),
                name="identity_review_resolution_names_patient",
            ),
        ]
        indexes = [models.Index(fields=["centre", "status"], name="identity_review_worklist_idx")]

    def __str__(self) -> str:
        # The record holds names and a birth date: the string form (logs, admin messages) shows neither.
        return f"Identity review {self.pk} ({self.get_status_display()})"
