"""The development mailbox: the emails the embedded default wrote to files under ``var/mail/``, readable in the
admin, so that someone trying the service with `make run` sees what patients and care teams would receive.

It exists only while mail goes to files (``EMAIL_BACKEND`` is the embedded default's): with a real mail server
there is nothing to show and the page answers 404. Only superusers open it, and each opening is audited: the
messages name (demo) patients.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _

from surveillance.access.audit import audit_record

FILE_BACKEND = "config.mail.SummaryFileEmailBackend"
#: Django's file backend separates the messages of one connection by this line.
SEPARATOR = b"\n" + b"-" * 79 + b"\n"
#: The newest messages shown: a demo cohort's first minutes write a few hundred.
SHOWN = 100


@dataclass(frozen=True)
class Mail:
    key: str  # "file name:index", to open one message
    date: str
    to: str
    subject: str
    body: str
    attachments: list[str]


def mailbox_enabled() -> bool:
    return settings.EMAIL_BACKEND == FILE_BACKEND


def _read(path: Path) -> list[Mail]:
    mails = []
    for index, raw in enumerate(chunk for chunk in path.read_bytes().split(SEPARATOR) if chunk.strip()):
        message = email.message_from_bytes(raw.lstrip(b"\n"), policy=email.policy.default)
        part = message.get_body(preferencelist=("plain", "html"))
        mails.append(
            Mail(
                key=f"{path.name}:{index}",
                date=str(message["Date"] or ""),
                to=str(message["To"] or ""),
                subject=str(message["Subject"] or ""),
                body=part.get_content() if part is not None else "",
                attachments=[p.get_filename() or p.get_content_type() for p in message.iter_attachments()],
            )
        )
    return mails


def mailbox_messages(folder: Path, limit: int = SHOWN) -> list[Mail]:
    """The newest ``limit`` messages, newest first (files by modification time, messages in a file in order)."""
    if not folder.is_dir():
        return []
    found: list[Mail] = []
    for path in sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True):
        found.extend(reversed(_read(path)))
        if len(found) >= limit:
            break
    return found[:limit]


def dev_mailbox_view(admin_site, request):
    if not mailbox_enabled():
        raise Http404("mail goes to a mail server, not to files")
    if not request.user.is_superuser:
        raise PermissionDenied
    mails = mailbox_messages(Path(settings.EMAIL_FILE_PATH))
    chosen = request.GET.get("open", "")
    opened = next((mail for mail in mails if mail.key == chosen), None)
    audit_record(request, "dev_mailbox", object_type="mailbox", object_id=chosen[:64])
    context = {
        **admin_site.each_context(request),
        "title": _("Development mailbox"),
        "mails": mails,
        "opened": opened,
        "folder": settings.EMAIL_FILE_PATH,
    }
    return TemplateResponse(request, "surveillance/admin/dev_mailbox.html", context)
