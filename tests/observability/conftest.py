"""Metrics are read after admin and API requests: their fixtures."""

from tests.admin.conftest import login  # noqa: F401
from tests.api.conftest import planned_a  # noqa: F401
