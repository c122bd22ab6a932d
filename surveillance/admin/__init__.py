"""The clinician admin: every model registered, scoped to the user's centres."""

from surveillance.admin import registrations  # noqa: F401  (registers the ModelAdmins)
