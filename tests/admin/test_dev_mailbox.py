"""The development mailbox: what the embedded default wrote to files, readable by a superuser in the admin."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage
from django.urls import reverse

from surveillance.admin.dev_mailbox import FILE_BACKEND
from surveillance.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def file_mail(settings, tmp_path):
    settings.EMAIL_BACKEND = FILE_BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path)
    for n in (1, 2):
        EmailMessage(f"Reminder number {n}", f"Body of message {n}.", "cw@example.org", ["p@example.org"]).send()
    return tmp_path


def test_it_lists_the_written_emails_newest_first_and_opens_one(login, administrator, file_mail):
    client = login(administrator)
    html = client.get(reverse("admin:dev_mailbox")).content.decode()
    assert html.index("Reminder number 2") < html.index("Reminder number 1")
    assert 'id="dev-mailbox"' in client.get(reverse("admin:index")).content.decode()
    key = next(f.name for f in file_mail.iterdir())
    opened = client.get(reverse("admin:dev_mailbox"), {"open": f"{key}:0"}).content.decode()
    assert 'id="opened-mail"' in opened and "Body of message" in opened
    assert AuditEntry.objects.filter(action="dev_mailbox", actor=administrator).count() == 2


def test_it_is_for_superusers_only(login, coordinator_a, file_mail):
    assert login(coordinator_a).get(reverse("admin:dev_mailbox")).status_code == 403


def test_it_does_not_exist_when_mail_goes_to_a_server(login, administrator, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert login(administrator).get(reverse("admin:dev_mailbox")).status_code == 404
    assert 'id="dev-mailbox"' not in login(administrator).get(reverse("admin:index")).content.decode()
