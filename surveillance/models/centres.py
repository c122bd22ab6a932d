"""Treatment centres and which staff belong to them (the tenancy boundary)."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


def validate_time_zone(value: str) -> None:
    """Reject a zone name the tz database does not know, so send times can always be computed."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        # the value is not quoted back: a patient's field may hold anything a client sent
        raise ValidationError("not a known IANA time zone name (e.g. Europe/Madrid)") from exc


class TreatmentCentre(models.Model):
    """A clinic that infuses CAR-T and follows its patients; every patient belongs to exactly one."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    care_team_email = models.EmailField(help_text="Where window-open notices and escalations go.")
    # What a patient needs to book a visit: every patient message, calendar entry and letter carries them.
    phone = models.CharField(max_length=32, blank=True, help_text="The number patients call to book a visit.")
    address = models.TextField(blank=True, help_text="Where visits take place (street, city), as patients read it.")
    opening_hours = models.CharField(
        max_length=200, blank=True, help_text="When the booking line answers, e.g. Mon-Fri 8:00-16:00."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def location(self) -> str:
        """The centre as a calendar's LOCATION: its name and, when known, its address on one line."""
        address = ", ".join(line.strip() for line in self.address.splitlines() if line.strip())
        return f"{self.name}, {address}" if address else self.name


class Role(models.TextChoices):
    COORDINATOR = "coordinator", "Coordinator"
    PHYSICIAN = "physician", "Physician"
    AUDITOR = "auditor", "Auditor (read-only)"


class CentreMembership(models.Model):
    """A staff user's role at one centre; a user sees only the patients of centres they belong to."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    centre = models.ForeignKey(TreatmentCentre, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "centre"], name="membership_one_role_per_centre"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} - {self.get_role_display()} at {self.centre}"
