"""Webhooks are registered and their events caused through the API: its fixtures are the API's."""

from tests.api.conftest import _fresh_throttle, api_a, planned_a, token_a  # noqa: F401
