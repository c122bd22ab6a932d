"""The embedded default's mail backend: messages go to files, the console gets one line per hand-over."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.mail.backends import filebased

logger = logging.getLogger("surveillance.mail")


class SummaryFileEmailBackend(filebased.EmailBackend):
    """Django's file backend (``EMAIL_FILE_PATH``, under ``var/mail/``) that logs how many messages went into which
    file. Printing whole messages buried `make run`'s console; the line names no recipient and no subject."""

    def send_messages(self, email_messages: Sequence) -> int:
        sent = super().send_messages(email_messages)
        if sent:
            logger.info("%s email(s) written to %s", sent, self._get_filename())
        return sent
