"""Visits built directly with an open window, as the reminder tests build them."""

from tests.reminders.conftest import open_visit  # noqa: F401
