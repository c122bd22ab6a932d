"""Treatment centres and which staff belong to them (the tenancy boundary)."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

import holidays
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from surveillance.scheduling.clinic_calendar import ClinicCalendar

#: How long a process may go on using a centre's closures after they changed (the admin clears them at once).
CLOSURES_CACHE_SECONDS = 300


@functools.lru_cache(maxsize=256)
def _calendar(country: str, subdivision: str, weekdays: tuple[int, ...], closures: frozenset) -> ClinicCalendar:
    return ClinicCalendar(country=country, subdivision=subdivision, closed_weekdays=weekdays, closures=closures)


def validate_country(value: str) -> None:
    """A country the holiday calendar knows, so that its public holidays can be avoided."""
    if value and value not in holidays.list_supported_countries():
        raise ValidationError("not a country code the holiday calendar knows (ISO 3166, e.g. US, ES)")


def default_closed_weekdays() -> list[int]:
    """Open every day until the centre says otherwise: a new setting must not move the visits already planned."""
    return []


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
    care_team_email = models.EmailField(help_text=_("Where window-open notices and escalations go."))
    # What a patient needs to book a visit: every patient message, calendar entry and letter carries them.
    phone = models.CharField(max_length=32, blank=True, help_text=_("The number patients call to book a visit."))
    address = models.TextField(blank=True, help_text=_("Where visits take place (street, city), as patients read it."))
    opening_hours = models.CharField(
        max_length=200, blank=True, help_text=_("When the booking line answers, e.g. Mon-Fri 8:00-16:00.")
    )
    # The clinic calendar: visits fall due on open days only (scheduling.clinic_calendar).
    country = models.CharField(
        max_length=2,
        blank=True,
        validators=[validate_country],
        help_text=_("ISO 3166 code for public holidays, e.g. US."),
    )
    subdivision = models.CharField(
        max_length=8, blank=True, help_text=_("State or region code for regional holidays, e.g. NY or MD (Madrid).")
    )
    closed_weekdays = models.JSONField(
        default=default_closed_weekdays, blank=True, help_text=_("Days of the week the clinic is closed (0 = Monday).")
    )
    ehr_site_identifiers = models.TextField(
        blank=True,
        help_text=(
            _(
                "How the EHR names this centre on its encounters (its Organization or Location): one per line, as "
                "system|value or as the value or resource id alone. Encounters elsewhere never complete a visit here."
            )
        ),
    )
    # The care team's language: its emails and weekly digest are written in it (patients have their own).
    language = models.CharField(
        max_length=8,
        choices=settings.LANGUAGES,
        default="en",
        help_text=_("The language of the care team's emails and weekly digest."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    #: The closures this instance read (``calendar``).
    _closures: frozenset[dt.date] | None = None

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(subdivision__gt="", country=""), name="centre_region_needs_country"
            ),
            models.CheckConstraint(
                condition=models.Q(language__in=[code for code, _name in settings.LANGUAGES]),
                name="centre_language_known",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.subdivision and self.subdivision not in holidays.list_supported_countries().get(self.country, []):
            raise ValidationError({"subdivision": "not a region of the centre's country known to the holiday calendar"})
        bad = [
            d for d in self.closed_weekdays or [] if not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6
        ]
        if bad or not isinstance(self.closed_weekdays, list):
            raise ValidationError({"closed_weekdays": "a list of days of the week, 0 (Monday) to 6 (Sunday)"})

    def calendar(self) -> ClinicCalendar:
        """The days this clinic is open, for planning and for what messages say.

        Every message rendered asks for it, so the closures are read through the cache (for a few minutes), once
        per instance (the dispatcher gives the reminders of a batch one instance per centre), and equal calendars
        are one object, whose holiday table is computed once per process."""
        if self._closures is None:
            self._closures = frozenset(
                cache.get_or_set(
                    f"cartwatch:centre-closures:{self.pk}",
                    lambda: sorted(self.closures.values_list("day", flat=True)),
                    CLOSURES_CACHE_SECONDS,
                )
            )
        return _calendar(self.country, self.subdivision, tuple(self.closed_weekdays or ()), self._closures)

    def closures_changed(self) -> None:
        """Forget the cached closures (after the admin changed them)."""
        self._closures = None
        cache.delete(f"cartwatch:centre-closures:{self.pk}")

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def ehr_identifiers(self) -> frozenset[str]:
        return frozenset(line.strip() for line in self.ehr_site_identifiers.splitlines() if line.strip())

    def location(self) -> str:
        """The centre as a calendar's LOCATION: its name and, when known, its address on one line."""
        address = ", ".join(line.strip() for line in self.address.splitlines() if line.strip())
        return f"{self.name}, {address}" if address else self.name


class Role(models.TextChoices):
    COORDINATOR = "coordinator", _("Coordinator")
    PHYSICIAN = "physician", _("Physician")
    AUDITOR = "auditor", _("Auditor (read-only)")


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


class CentreClosure(models.Model):
    """A day the clinic itself is closed (a staff day, a move): no visit falls due on it."""

    centre = models.ForeignKey(TreatmentCentre, on_delete=models.CASCADE, related_name="closures")
    day = models.DateField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["day"]
        constraints = [models.UniqueConstraint(fields=["centre", "day"], name="closure_one_per_centre_day")]

    def __str__(self) -> str:
        return f"{self.centre} closed on {self.day:%d %b %Y}"
