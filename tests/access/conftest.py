"""The access wing is exercised through the admin's sign-in and pages: its fixtures are the admin's."""

from tests.admin.conftest import login, planned, today  # noqa: F401
