"""WSGI entry point (gunicorn in production): API requests that carry a token take a shorter middleware chain."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from surveillance.api.token_requests import RoutingWSGIHandler  # noqa: E402  (needs the apps loaded)

application = RoutingWSGIHandler()
