"""The Celery app: configured from Django settings (``CELERY_`` prefix); each wing with tasks has a ``tasks`` module."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("cartwatch")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["surveillance.reminders", "surveillance.integrations", "surveillance.imports"])
